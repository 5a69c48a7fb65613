"""The report from a real short run on the bundled model (the suite's shared vLLM CPU server), opened
offline in headless Chromium."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from report_browser import find_chromium, open_offline
from shared_data import datasets_dir

from serve_bench.report import build_report, settings_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def real_run(base_server, tmp_path_factory):
    """A short run of the shared server: load, then accuracy on the same server (one small task), then the
    report."""
    tmp_path = tmp_path_factory.mktemp("real-run")
    profile = tmp_path / "steps.yaml"
    profile.write_text(yaml.safe_dump({
        "name": "steps", "api": "chat", "input_tokens": 32, "output_tokens": 8, "ignore_eos": True, "seed": 1,
        "warmup": {"requests": 1}, "timeout_s": 60,
        "stages": [{"kind": "ladder", "of": "concurrency", "values": [1, 2, 4], "requests": 8, "duration_s": 60}]}))
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "serve_bench", "run", "--url", base_server.url, "--profile",
                           str(profile), "--out", str(run), "--quiet", "--tasks", "arc_challenge", "--limit", "8"],
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "SERVE_BENCH_DATA_DIR": str(datasets_dir())})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (run / "manifest.json").exists(), "--out is the run directory itself"
    return run, proc.stdout


def test_report_from_a_real_run(real_run, tmp_path):
    run, stdout = real_run
    # the run ends with its report, under the study's settings (here the defaults)
    assert f"report: {run / 'report' / 'report.html'}" in stdout
    written = json.loads((run / "manifest.json").read_text())["report"]
    assert "report/report.html" in written and all((run / p).is_file() for p in written)
    # generous SLOs: a 2-vCPU host shared with other work still meets them at one user
    files = build_report([run], None, settings_for([run], {"slo_ms": {"ttft_ms": 5000, "tpot_ms": 1000},
                                                           "bootstrap_resamples": 200}))
    assert files.directory == run / "report" and all(p.is_file() for p in files.paths)
    data = json.loads(files.json.read_text())
    [ck] = data["checkpoints"]
    assert [s["stage"] for s in ck["stages"]] == ["c1", "c2", "c4"]
    assert all(s["completed"] == 8 and s["n_ttft"] == 8 for s in ck["stages"])
    assert ck["slo"]["status"] in ("within", "above") and ck["plan"]["answered"]
    assert ck["plan"]["replicas"] >= 1 and ck["plan"]["cost_per_m_output_tokens"] > 0
    assert ck["plan"]["kwh_per_day"] is None or ck["plan"]["kwh_per_day"] > 0  # "not measured" on a CPU host
    assert data["runs"][0]["status"] == "completed"
    md = files.markdown.read_text()
    assert "## Capacity plan" in md and "not evaluated" not in md
    # accuracy, measured on the served model, in the run directory, the dichotomy table and the report
    scores = json.loads((run / "default" / "eval" / "results.json").read_text())
    assert scores["tasks"]["arc_challenge"]["value"] is not None and 0 <= scores["tasks"]["arc_challenge"]["value"] <= 1
    dichotomy = (run / "dichotomy.md").read_text()
    assert "arc_challenge" in dichotomy and "Serving columns: stage c4 (4 users)" in dichotomy
    assert "arc_challenge" in json.dumps(ck["accuracy"])
    chromium = find_chromium()
    assert chromium, "no chromium: scripts/test.sh installs Debian's package"
    page = open_offline(files.html, tmp_path / "shot.png", chromium)
    assert page.requests == [Path(files.html).resolve().as_uri()] and page.console_errors == []
    assert page.plots == 5 and page.tables >= 4


def test_a_plan_validated_on_two_replicas_launched_on_disjoint_cores(real_run, base_model_path, tmp_path):
    """`validate --replicas 2`: two vLLM CPU servers of the checkpoint, one core each, loaded as a fleet with the
    plan's traffic. This 2-core machine's scaling is whatever it is: the mechanism is checked, not the speed."""
    run, _ = real_run
    slo = {"slo_ms": {"ttft_ms": 5000, "tpot_ms": 1000}, "bootstrap_resamples": 200}
    one = build_report([run], tmp_path / "one", settings_for([run], slo))
    capacity = json.loads(one.json.read_text())["checkpoints"][0]["plan"]["capacity_rps"]
    rps = round(1.2 * capacity * 0.8, 3)  # more than one replica serves with 20% headroom: the plan asks for 2
    files = build_report([run], tmp_path / "plan", settings_for([run], {**slo, "capacity": {"rps": rps}}))
    assert json.loads(files.json.read_text())["checkpoints"][0]["plan"]["replicas"] == 2
    out = tmp_path / "v"
    proc = subprocess.run([sys.executable, "-m", "serve_bench", "validate", str(files.directory), "--model",
                           str(base_model_path), "--duration", "12", "--search", "1.0", "--out", str(out), "--quiet"],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode in (0, 9), proc.stdout + proc.stderr
    v = json.loads((out / "validation.json").read_text())
    assert v["launched"] and v["replicas"] == v["planned_replicas"] == 2 and len(v["fleet"]) == 2
    assert (proc.returncode == 0) == v["holds"] and v["plan_stage"]["attempted"] > 0
    [fleet_run] = [p for p in out.iterdir() if p.is_dir()]
    about = json.loads((fleet_run / "default" / "checkpoint.json").read_text())
    replicas = about["replicas"]
    # start-up apart from the stages, from vLLM's own log: the CPU build loads weights and inits its engine
    startup = about["startup"]
    assert startup["ready_s"] > startup["engine_init_s"] > 0 and startup["weights_load_s"] > 0
    cpus = [r["cpus"] for r in replicas]
    assert len(cpus) == 2 and not set(cpus[0]) & set(cpus[1])  # disjoint cores
    for r, own in zip(replicas, cpus):  # vLLM bound its threads where it was told
        assert f"core ids={own}" in Path(r["log"]).read_text()
    served = {e for line in (fleet_run / "default" / "records.jsonl").read_text().splitlines()
              for e in [json.loads(line).get("endpoint")]}
    assert served == set(v["fleet"])  # both replicas served the plan's traffic
    assert "predicted" in proc.stdout and v["predicted_fleet_rps"] > 0
