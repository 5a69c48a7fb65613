"""`serve-bench run` refuses bad input before any server starts: clear message, no traceback."""

import json
import socket
import subprocess
import sys

import pytest
from test_prune_cli import assert_clean_error, sb

pytestmark = pytest.mark.system  # runs `python -m serve_bench` in subprocesses


def test_unknown_profile_lists_the_available_ones(tmp_path):
    proc = sb("run", "--profile", "nonesuch", "--out", str(tmp_path))
    assert_clean_error(proc, 2, "nonesuch", "quick", "ladder")
    assert not any(tmp_path.iterdir()), "nothing may start for a bad profile"


def test_bad_study_field_names_file_and_field(tmp_path):
    study = tmp_path / "study.yaml"
    study.write_text("name: x\nprune: {prune: [0.2], divisor: 100}\nserver: {port: 0}\nbogus: 1\n")
    proc = sb("run", str(study))
    assert_clean_error(proc, 2, f"{study}: prune.divisor", f"{study}: server.port", f"{study}: bogus")


def test_bad_profile_field_names_file_and_field(tmp_path):
    profile = tmp_path / "p.yaml"
    profile.write_text("name: p\ninput_tokens: 8\noutput_tokens: 8\nstages:\n"
                       "  - {kind: rate, rate_rps: -1, requests: 3}\n")
    assert_clean_error(sb("run", "--profile", str(profile), "--out", str(tmp_path / "r")), 2,
                       "p.yaml: stages[0].rate_rps")


def test_invalid_yaml_and_missing_study(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    assert_clean_error(sb("run", str(bad)), 2, "not valid YAML", "line")
    assert_clean_error(sb("run", str(tmp_path / "missing.yaml")), 2, "does not exist")


def test_missing_model(tmp_path):
    proc = sb("run", "--model", str(tmp_path / "no-model"), "--no-prune", "--out", str(tmp_path / "r"))
    assert_clean_error(proc, 3, "does not exist")
    run = tmp_path / "r"
    assert json.loads((run / "manifest.json").read_text())["status"] == "failed"


def test_busy_port(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = sb("run", "--no-prune", "--port", str(port), "--out", str(tmp_path / "r"))
    assert_clean_error(proc, 2, f"port {port}", "already in use")


def test_bad_label_flag(tmp_path):
    assert_clean_error(sb("run", "--label", "nokey", "--out", str(tmp_path)), 2, "--label nokey: expected KEY=VALUE")
    assert_clean_error(sb("run", "--label", "=x", "--out", str(tmp_path)), 2, "expected KEY=VALUE")


def test_bad_slo_flag(tmp_path):
    assert_clean_error(sb("run", "--slo", "ttft_ms", "--out", str(tmp_path)), 2, "NAME=MILLISECONDS")
    assert_clean_error(sb("run", "--slo", "latency=3", "--out", str(tmp_path)), 2, "unknown SLO 'latency'")


def test_url_that_serves_nothing(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert_clean_error(sb("run", "--url", f"http://127.0.0.1:{port}", "--out", str(tmp_path)), 2,
                       "cannot list the models")


def test_run_help_documents_flags():
    out = subprocess.run([sys.executable, "-m", "serve_bench", "run", "--help"], capture_output=True, text=True)
    for flag in ("--model", "--prune", "--profile", "--url", "--workers", "--slo", "--on-server-death"):
        assert flag in out.stdout


def test_unwritable_run_directory():
    assert_clean_error(sb("run", "--no-prune", "--out", "/proc/serve-bench-nope"), 2,
                       "cannot create the run directory")
    assert_clean_error(sb("run", "--no-prune", "--runs-dir", "/proc/serve-bench-nope"), 2,
                       "cannot create the run directory", "--runs-dir")


def test_out_is_never_an_earlier_run(tmp_path):
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "manifest.json").write_text("{}")
    assert_clean_error(sb("run", "--no-prune", "--out", str(earlier)), 2, f"--out {earlier}",
                       "not an empty directory", "--runs-dir")
    assert (earlier / "manifest.json").read_text() == "{}" and len(list(earlier.iterdir())) == 1


CTRL_C_SCRIPT = """
import os, signal, time
from gevent import monkey; monkey.patch_all()
import gevent
from serve_bench.load.driver import deliver_ctrl_c_to_the_run

deliver_ctrl_c_to_the_run(gevent.get_hub())
finished = []

def busy():  # a load user's greenlet in the middle of its Python work when Ctrl-C comes
    os.kill(os.getpid(), signal.SIGINT)
    t = time.perf_counter()
    while time.perf_counter() - t < 0.3:
        pass
    finished.append(True)

g = gevent.spawn(busy)
try:
    gevent.sleep(5)
    print("not interrupted")
except KeyboardInterrupt:
    print("main interrupted; the other greenlet finished:", finished == [True])
"""


def test_ctrl_c_during_another_greenlet_interrupts_the_run_not_that_greenlet():
    out = subprocess.run([sys.executable, "-c", CTRL_C_SCRIPT], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "main interrupted; the other greenlet finished: True", out.stdout + out.stderr


def test_unbalanced_engine_args_and_an_unwritable_eval_out_are_clear_errors(tmp_path):
    assert_clean_error(sb("run", "--dry-run", "--engine-args", "'--dtype bf16", "--out", str(tmp_path)), 2,
                       "--engine-args", "No closing quotation")
    assert_clean_error(sb("eval", "default", "--engine-args", "'x"), 2, "--engine-args", "No closing quotation")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert_clean_error(sb("eval", "--url", "http://127.0.0.1:9", "--out", str(blocker / "x")), 2,
                       f"--out {blocker / 'x'}: cannot create it")


def test_run_at_a_url_evaluates_only_when_asked_and_an_unreachable_hub_is_said_before_any_load(tmp_path):
    from serve_bench.measure.records import read_records
    from serve_bench.rundir import RunDir
    from serve_bench.simengine.params import EngineParams
    from serve_bench.simengine.server import read_log, running

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": "tok " * 8}) + "\n" for _ in range(8)))
    profile = tmp_path / "p.yaml"
    profile.write_text(json.dumps({"name": "p", "api": "chat", "input_tokens": 8, "output_tokens": 4,
                                   "ignore_eos": True, "prompts": {"kind": "jsonl", "path": str(prompts)},
                                   "stages": [{"kind": "concurrency", "name": "c2", "users": 2, "requests": 6}]}))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    # no offline data and a hub that does not answer: this machine's situation, made certain
    env = {"SERVE_BENCH_DATA_DIR": "", "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": f"http://127.0.0.1:{closed}"}
    log = tmp_path / "engine.jsonl"
    with running(EngineParams(step_ms=2), log_path=log, model="m") as (url, _):
        args = ("run", "--url", url, "--tokenizer", "none", "--profile", str(profile), "--metrics-port", "0")
        asked = sb(*args, "--eval", "--out", str(tmp_path / "asked"), env=env)
        assert_clean_error(asked, 7, "Hugging Face hub", f"http://127.0.0.1:{closed}", "--data-dir", "--no-eval")
        assert read_log(log) == [] and not (tmp_path / "asked").exists(), "nothing may be sent or made first"
        plain = sb(*args, "--out", str(tmp_path / "plain"), "--label", "site=lab", "--label", "gpu=none", env=env)
        assert plain.returncode == 0, plain.stderr
    path = tmp_path / "plain"  # --out is the run directory itself
    run = RunDir(path)
    assert run.manifest().study["eval"]["enabled"] is False
    assert run.manifest().study["labels"] == {"site": "lab", "gpu": "none"}
    assert (path / "summary.csv").read_text().startswith("checkpoint,")
    [ck] = run.checkpoints()
    # the load's six requests and nothing else reached the server: no evaluation traffic
    assert len(read_records(run.records_path(ck))) == len(read_log(log)) == 6
    assert not (run.checkpoint_dir(ck) / "eval").exists()
