"""build_report on constructed run directories: the files, the flags, unfinished runs, accuracy, the CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from report_fixtures import write_run

from serve_bench.cli.main import cli
from serve_bench.errors import ConfigError
from serve_bench.report import build_report, settings_for
from serve_bench.report.figures import pareto_front

pytestmark = pytest.mark.unit


def ladder(scale_s, loads=(1, 2, 4, 8), saturated_at=None):
    return [(f"c{x}", x, [scale_s * x] * 12, {"generator_saturated": x == saturated_at}) for x in loads]


@pytest.fixture
def two_checkpoints(tmp_path):
    return write_run(tmp_path / "run", {
        "base": {"label": "base", "stages": ladder(0.1, saturated_at=8),
                 "accuracy": {"mmlu": (0.42, 0.01)}},
        "base-p40": {"label": "p40", "base": "base", "prune": 0.4, "stages": ladder(0.05),
                     "accuracy": {"mmlu": (0.30, 0.01)}},
    }, study={"report": {"slo_ms": {"ttft_ms": 300}, "min_attainment": None, "bootstrap_resamples": 100}})


def test_report_files_and_what_they_say(two_checkpoints, tmp_path):
    files = build_report([two_checkpoints], tmp_path / "out")
    assert files.directory == tmp_path / "out" and all(p.is_file() for p in files.paths)
    assert sorted(p.name for p in files.pngs) == ["accuracy_vs_throughput.png", "energy_vs_load.png",
                                                  "latency_vs_throughput.png", "percentiles_vs_load.png",
                                                  "timeline.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in files.pngs)
    data = json.loads(files.json.read_text())
    base, p40 = data["checkpoints"]
    # base: TTFT 100 ms × users; 300 ms is crossed between 2 and 4 users (4 users is 400 ms): 3 users.
    # Its 8-user stage is flagged, left off the curve, and marked in the stage table.
    assert base["slo"]["load"] == pytest.approx(3.0) and base["slo"]["binding"] == "p99 ttft_ms"
    assert base["slo"]["stages"] == ["c1", "c2", "c4"]
    [flagged] = [s for s in base["stages"] if s["stage"] == "c8"]
    assert not flagged["used"] and flagged["excluded_because"] == "load generator saturated"
    assert p40["slo"]["load"] == pytest.approx(6.0)  # 50 ms × users: 300 ms at 6
    assert data["slos_ms"] == {"ttft_ms": 300} and data["slo_source"] == "report settings"
    [v] = data["verdicts"]
    assert v.startswith("p40 (40% pruned): ") and "−12.0 points mmlu" in v and "kWh/day not measured" in v
    md = files.markdown.read_text()
    assert "load generator saturated" in md and "not measured" in md and "plots/timeline.png" in md
    html = files.html.read_text()
    # scripts and styles inline: no script, stylesheet, font or image fetched from anywhere
    assert html.count("<script") >= 6 and not re.search(r"<script[^>]*\bsrc=", html)
    assert "<link" not in html and "@import" not in html and "@font-face" not in html and "<img" not in html


def test_a_run_still_going_is_reported_as_such(tmp_path):
    run = write_run(tmp_path / "run", {"base": {"stages": ladder(0.1, loads=(1, 2))}}, status="running")
    files = build_report([run], None, settings_for([run], {"bootstrap_resamples": 100}))
    assert files.directory == run / "report"
    assert "still running" in files.markdown.read_text() and "still running" in files.html.read_text()


def test_flags_override_the_study(two_checkpoints):
    s = settings_for([two_checkpoints], {"capacity": {"rps": 20}, "slo_ms": {"tpot_ms": 80}})
    assert s.capacity.rps == 20 and s.slo_ms == {"tpot_ms": 80} and s.min_attainment is None
    with pytest.raises(ConfigError, match="capacity.headroom"):
        settings_for([two_checkpoints], {"capacity": {"headroom": 1.5}})


def test_bad_input_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="not a serve-bench run directory"):
        build_report([tmp_path], tmp_path / "out")
    (tmp_path / "manifest.json").write_text("{}")
    with pytest.raises(ConfigError, match="no finished stage"):
        build_report([tmp_path], tmp_path / "out")


@pytest.mark.parametrize("overrides, field", [({"capacity": {"rps": float("inf")}}, "capacity.rps"),
                                              ({"capacity": {"gpu_hour_price": float("nan")}}, "gpu_hour_price"),
                                              ({"slo_ms": {"ttft_ms": float("nan")}}, "slo_ms.ttft_ms")])
def test_inf_and_nan_settings_are_refused(two_checkpoints, overrides, field):
    with pytest.raises(ConfigError, match=re.escape(field)):
        settings_for([two_checkpoints], overrides)


def test_unreadable_results_and_unwritable_output_are_clear_errors(two_checkpoints, tmp_path):
    with pytest.raises(ConfigError, match="cannot write the report in /proc"):
        build_report([two_checkpoints], Path("/proc"))  # exists, but takes no files
    [stage] = sorted((two_checkpoints / "base").glob("stages/*.json"))[:1]
    stage.write_text("{")
    with pytest.raises(ConfigError, match=r"stages/01-c1.json: not a readable JSON file"):
        build_report([two_checkpoints], tmp_path / "out")
    (two_checkpoints / "manifest.json").write_text("[]")
    with pytest.raises(ConfigError, match="not a serve-bench manifest"):
        settings_for([two_checkpoints])


def test_cli(two_checkpoints, tmp_path):
    runner = CliRunner()
    ok = runner.invoke(cli, ["report", str(two_checkpoints), "--out", str(tmp_path / "o"), "--rps", "5",
                             "--slo", "ttft_ms=250", "--grid-g-per-kwh", "300"])
    assert ok.exit_code == 0, ok.output
    assert f"report: {tmp_path / 'o' / 'report.html'}" in ok.output and "p40 (40% pruned)" in ok.output
    data = json.loads((tmp_path / "o" / "report.json").read_text())
    assert data["settings"]["capacity"]["rps"] == 5 and data["slos_ms"] == {"ttft_ms": 250}
    for args, message in ((["--slo", "bogus_ms=3"], "unknown SLO 'bogus_ms'"), (["--slo", "ttft_ms"], "NAME=MS"),
                          (["--gpus-per-replica", "0"], "gpus_per_replica")):
        bad = runner.invoke(cli, ["report", str(two_checkpoints), "--out", str(tmp_path / "o"), *args])
        assert bad.exit_code == 2 and message.replace("NAME=MS", "NAME=MILLISECONDS") in bad.output, bad.output
        assert "Traceback" not in bad.output
    missing = runner.invoke(cli, ["report", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "not a serve-bench run directory" in missing.output


def test_pareto_front():
    points = [(1.0, 50.0), (2.0, 45.0), (1.5, 40.0), (3.0, 30.0)]
    assert pareto_front(points) == [(1.0, 50.0), (2.0, 45.0), (3.0, 30.0)]
    assert pareto_front(points, maximise_x=False) == [(1.0, 50.0)]


def test_several_runs_side_by_side(tmp_path):
    a = write_run(tmp_path / "run-a", {"base": {"stages": ladder(0.1, loads=(1, 2, 4))}})
    b = write_run(tmp_path / "run-b", {"base": {"stages": ladder(0.1, loads=(1, 2))},
                                       "p20": {"base": "base", "prune": 0.2, "stages": ladder(0.08, loads=(1, 2))}},
                  status="interrupted")
    with pytest.raises(ConfigError, match="--out"):
        build_report([a, b])
    files = build_report([a, b], tmp_path / "both", settings_for([a], {"bootstrap_resamples": 100}))
    data = json.loads(files.json.read_text())
    assert [c["label"] for c in data["checkpoints"]] == ["run-a:base", "run-b:base", "run-b:p20"]
    assert [r["status_text"] for r in data["runs"]] == ["finished", "interrupted"]
    [v] = data["verdicts"]
    assert v.startswith("run-b:p20 (20% pruned): ") and "run-b:base" in v
    assert "run-b is interrupted" in files.markdown.read_text()


def test_cli_with_several_runs_writes_the_dichotomy_table_across_them(tmp_path):
    a = write_run(tmp_path / "run-a", {"base": {"stages": ladder(0.1, loads=(1, 2))}})
    b = write_run(tmp_path / "run-b", {"p40": {"base": "base", "prune": 0.4, "stages": ladder(0.05, loads=(1, 2))}})
    runner = CliRunner()
    plain = runner.invoke(cli, ["report", str(a), str(b), "--out", str(tmp_path / "o")])
    assert plain.exit_code == 0, plain.output
    assert not (tmp_path / "o" / "dichotomy.md").exists() and "dichotomy" not in plain.output  # nothing evaluated
    for run, value in ((a, 0.42), (b, 0.30)):
        ck = next(p for p in run.iterdir() if (p / "checkpoint.json").is_file())
        (ck / "eval" / "results.json").parent.mkdir(exist_ok=True)
        (ck / "eval" / "results.json").write_text(json.dumps({"tasks": {"arc_challenge": {
            "metric": "acc_norm,none", "value": value, "stderr": 0.01, "higher_is_better": True}}}))
    ok = runner.invoke(cli, ["report", str(a), str(b), "--out", str(tmp_path / "o")])
    assert ok.exit_code == 0, ok.output
    assert f"{tmp_path / 'o' / 'dichotomy.md'} (accuracy across the runs' checkpoints)" in ok.output
    md = (tmp_path / "o" / "dichotomy.md").read_text()
    assert "| run-a:base |" in md and "| run-b:p40 |" in md and "0.300 ± 0.010 (-0.120)" in md


def test_the_run_keeps_one_resolved_slo_and_the_report_judges_by_it(tmp_path):
    from serve_bench.study import DEFAULT_SLO_MS, StudySpec

    default = StudySpec().resolved_slo()  # the default SLO is whole: limits, p90, 90% attainment
    assert (default.slo_ms, default.percentile, default.min_attainment) == (DEFAULT_SLO_MS, 90.0, 0.9)
    assert StudySpec(slo={"tpot_ms": 50}).resolved_slo().percentile == 99.0  # your limits: the report's p99
    assert StudySpec(report={"slo_percentile": 95}).resolved_slo().percentile == 95.0
    with pytest.raises(ValueError, match="one set"):
        StudySpec(slo={"tpot_ms": 50}, report={"slo_ms": {"tpot_ms": 60}})
    run = write_run(tmp_path / "run", {"base": {"stages": ladder(0.1)}},
                    study={"report": {"bootstrap_resamples": 100}})
    manifest = json.loads((run / "manifest.json").read_text())
    kept = StudySpec(slo={"ttft_ms": 300}, report={"slo_percentile": 95, "min_attainment": None}).resolved_slo()
    (run / "manifest.json").write_text(json.dumps({**manifest, "slo": kept.model_dump()}))
    data = json.loads(build_report([run], tmp_path / "a").json.read_text())
    assert data["slos_ms"] == {"ttft_ms": 300} and data["slo_source"] == "the study's slo"
    assert data["settings"]["slo_percentile"] == 95 and data["checkpoints"][0]["slo"]["binding"] == "p95 ttft_ms"
    asked = build_report([run], tmp_path / "b", settings_for([run], {"slo_percentile": 50}))
    data = json.loads(asked.json.read_text())
    assert data["settings"]["slo_percentile"] == 50 and data["checkpoints"][0]["slo"]["binding"] == "p50 ttft_ms"
    assert data["slo_source"].startswith("report settings; the run itself judged goodput by p95 of ttft_ms ≤ 300")
