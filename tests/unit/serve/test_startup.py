"""A server's start-up, read from vLLM's own log lines (as vLLM 0.32 writes them): compilation and CUDA graphs
apart from loading, the slowest worker's figure when several log one."""

from __future__ import annotations

import pytest

from serve_bench.serve.startup import describe, read_startup

pytestmark = pytest.mark.unit

CPU_LOG = """\
(Worker pid=17335) INFO 12-07 23:41:51 [default_loader.py:501] Loading weights took 0.56 seconds
(EngineCore pid=17205) INFO [core.py:402] init engine (profile, create kv cache, warmup model) took 2.98 s
(APIServer pid=17156) INFO 12-07 23:41:58 [entry.py:140] Starting vLLM server on http://127.0.0.1:60571
"""
GPU_LOG = """\
(Worker_TP0 pid=1) INFO [default_loader.py:501] Loading weights took 2.10 seconds
(Worker_TP1 pid=2) INFO [default_loader.py:501] Loading weights took 2.40 seconds
(Worker_TP0 pid=1) INFO [gpu_model_runner.py:5150] Model loading took 2.31 GiB memory and 3.251 seconds
(Worker_TP0 pid=1) INFO [monitor.py:34] torch.compile took 17.62 s in total
(Worker_TP0 pid=1) INFO [gpu_model_runner.py:6582] Graph capturing finished in 6 secs, took 0.45 GiB
(EngineCore) INFO init engine (profile, create kv cache, warmup model) took 31.40 s (compilation: 17.62 s)
"""


def test_a_cpu_servers_log_has_loading_and_engine_init_and_no_compilation(tmp_path):
    log = tmp_path / "server.log"
    log.write_text(CPU_LOG)
    got = read_startup(log, 41.2)
    assert got == {"ready_s": 41.2, "weights_load_s": 0.56, "engine_init_s": 2.98}
    assert describe(got) == "ready in 41 s (weights 1 s)"


def test_a_gpu_servers_compilation_and_graphs_apart_the_slowest_worker_counting(tmp_path):
    log = tmp_path / "server.log"
    log.write_text(GPU_LOG)
    got = read_startup(log, 48.0)
    assert got["weights_load_s"] == 2.40 and got["model_load_s"] == 3.251 and got["engine_init_s"] == 31.40
    assert got["compile_s"] == 17.62 and got["graph_capture_s"] == 6.0
    assert describe(got) == "ready in 48 s (compilation 18 s, CUDA graphs 6 s, weights 2 s)"
    assert read_startup(tmp_path / "missing.log") == {"ready_s": None}


def test_the_run_directory_keeps_it_with_the_checkpoint(tmp_path):
    from serve_bench.rundir import RunDir, write_json

    log = tmp_path / "server.log"
    log.write_text(GPU_LOG)
    run = RunDir(tmp_path)
    write_json(run.checkpoint_dir("m") / "checkpoint.json", {"name": "m", "startup": read_startup(log, 48.0)})
    assert run.checkpoint_info("m").startup["compile_s"] == 17.62
