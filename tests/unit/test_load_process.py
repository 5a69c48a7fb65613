"""The load generator in its own process: what the orchestrator gets back, and what it never imports."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap

import psutil
import pytest

from serve_bench.errors import ConfigError, LoadError
from serve_bench.load.process import RecordTail, run_profile
from serve_bench.measure.records import read_records
from serve_bench.simengine.params import EngineParams
from serve_bench.simengine.server import read_log, running
from serve_bench.workload.profiles import profile_from_data

pytestmark = pytest.mark.system


def profile(tmp_path, stages, **extra):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": "tok " * 8}) + "\n" for _ in range(8)))
    return profile_from_data({"name": "p", "api": "chat", "input_tokens": 8, "output_tokens": 4, "ignore_eos": True,
                              "timeout_s": 30, "prompts": {"kind": "jsonl", "path": str(prompts)}, "stages": stages,
                              **extra})


def test_stages_come_back_and_every_record_is_in_the_file_and_seen_as_it_lands(tmp_path):
    prof = profile(tmp_path, [{"kind": "concurrency", "name": "c2", "users": 2, "requests": 6},
                              {"kind": "concurrency", "name": "c3", "users": 3, "requests": 9}])
    records = tmp_path / "run" / "records.jsonl"
    records.parent.mkdir()
    records.write_text("")  # a second profile of the same checkpoint appends after the first's
    seen, stages = [], []
    with running(EngineParams(step_ms=5, per_seq_ms=1), log_path=tmp_path / "engine.jsonl") as (url, _):
        results = run_profile(prof, url=url, model="m", records_path=records, log_path=tmp_path / "load.log",
                              on_record=seen.append, on_stage=lambda r: stages.append((r.stage, len(seen))))
    assert [r.stage for r in results] == ["c2", "c3"] and [r.records for r in results] == [6, 9]
    # each stage's records were all read back before its result was handed on
    assert stages == [("c2", 6), ("c3", 15)]
    on_disk = read_records(records)
    assert [r.request_id for r in on_disk] == [r.request_id for r in seen] and all(r.ok for r in on_disk)
    assert len(read_log(tmp_path / "engine.jsonl")) == len(on_disk) == 15


def test_a_bad_input_found_by_the_load_process_is_the_same_error_here(tmp_path):
    prof = profile(tmp_path, [{"kind": "concurrency", "name": "c1", "users": 1, "requests": 1}],
                   prompts={"kind": "synthetic"})
    with pytest.raises(ConfigError, match="synthetic prompts need the model's tokenizer"):
        run_profile(prof, url="http://127.0.0.1:9", model="m", records_path=tmp_path / "r.jsonl",
                    log_path=tmp_path / "load.log")


def test_a_load_process_that_dies_is_a_load_error_with_its_log(tmp_path):
    prof = profile(tmp_path, [{"kind": "concurrency", "name": "c1", "users": 1, "duration_s": 30}])
    with running(EngineParams(step_ms=5), log_path=tmp_path / "engine.jsonl") as (url, _):
        def kill_it(record):
            for child in psutil.Process().children():
                with contextlib.suppress(psutil.Error):  # killed already: a zombie until it is reaped
                    if "serve_bench.load.driver" in " ".join(child.cmdline()):
                        child.kill()

        with pytest.raises(LoadError, match="load process exited with code -9"):
            run_profile(prof, url=url, model="m", records_path=tmp_path / "r.jsonl", log_path=tmp_path / "load.log",
                        on_record=kill_it)


def test_the_orchestrator_never_loads_gevent_and_ctrl_c_keeps_records_and_leaves_no_process(tmp_path):
    prof = profile(tmp_path, [{"kind": "concurrency", "name": "long", "users": 2, "duration_s": 60}])
    (tmp_path / "profile.json").write_text(prof.model_dump_json())
    with running(EngineParams(step_ms=5), log_path=tmp_path / "engine.jsonl") as (url, _):
        code = textwrap.dedent(f"""
            import sys, time
            from pathlib import Path
            from serve_bench.load.process import run_profile
            from serve_bench.workload.profiles import LoadProfile
            prof = LoadProfile.model_validate_json(Path({str(tmp_path / 'profile.json')!r}).read_text())
            seen = []
            def on_record(r):
                seen.append(r)
                if len(seen) == 5:
                    print("RUNNING", flush=True)
            try:
                run_profile(prof, url={url!r}, model="m", records_path=Path({str(tmp_path / 'r.jsonl')!r}),
                            log_path=Path({str(tmp_path / 'load.log')!r}), on_record=on_record)
            except KeyboardInterrupt:
                print("INTERRUPTED", len(seen), "gevent" in sys.modules, "locust" in sys.modules, flush=True)
                sys.exit(130)
        """)
        # the default SIGINT, as a terminal gives: a suite started in the background inherits it ignored
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        assert proc.stdout.readline().strip() == "RUNNING"
        parent = psutil.Process(proc.pid)
        children = parent.children(recursive=True)
        assert any("serve_bench.load.driver" in " ".join(c.cmdline()) for c in children)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 130
    word, seen, gevent_loaded, locust_loaded = out.split()[-4:]
    assert word == "INTERRUPTED" and (gevent_loaded, locust_loaded) == ("False", "False")
    kept = read_records(tmp_path / "r.jsonl")
    assert len(kept) >= int(seen) >= 5
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]


def test_the_tail_reads_whole_lines_only(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text("")
    tail = RecordTail(path)
    line = json.dumps({"request_id": "a", "stage": "s", "worker_id": "w0/u0", "send_s": 1.0, "max_tokens": 1,
                            "status": 200, "ok": True})
    with open(path, "a") as f:
        f.write(line[:20])
    assert tail.read() == []
    with open(path, "a") as f:
        f.write(line[20:] + "\n")
    (record,) = tail.read()
    assert record.request_id == "a" and tail.read() == []


def test_the_orchestrating_modules_import_neither_gevent_nor_locust():
    code = ("import sys\n"
            "import serve_bench.cli.main, serve_bench.cli.run_cmd, serve_bench.cli.selfcheck_cmd\n"
            "import serve_bench.cli.views, serve_bench.pipeline, serve_bench.selfcheck\n"
            "import serve_bench.observe.observer, serve_bench.report.build\n"
            "import serve_bench.load.process, serve_bench.evaluate\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('gevent', 'locust')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_clock_is_wall_clock_and_monotonic_and_a_child_can_share_it() -> None:
    # fresh interpreters: this one's wall clock may have stepped since its anchor was taken
    code = ("import time; from serve_bench.measure.clock import now_s, anchor_env; a, b = now_s(), now_s(); "
            "print(b >= a, abs(a - time.time()) < 1.0, anchor_env()['SERVE_BENCH_CLOCK_ANCHOR'])")
    ordered, close, anchor = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                            check=True).stdout.split()
    assert (ordered, close) == ("True", "True")
    wall, perf = (float(x) for x in anchor.split(","))
    stepped = f"{wall - 1000.0!r},{perf!r}"  # a parent whose wall clock read 1000 s less
    code = "import time; from serve_bench.measure.clock import now_s; print(now_s() - time.time())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "SERVE_BENCH_CLOCK_ANCHOR": stepped}).stdout
    assert float(out) == pytest.approx(-1000.0, abs=1.0)
