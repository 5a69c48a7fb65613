"""Distributed mode's own arithmetic (clock offsets) and a worker lost mid-stage."""

from __future__ import annotations

import os
import signal

import gevent
import psutil
import pytest
from test_user import fake_server

from serve_bench.load.runner import run_stage
from serve_bench.load.worker import best_offset, to_master_clock
from serve_bench.measure.records import RequestRecord
from serve_bench.workload.profiles import profile_from_data
from serve_bench.workload.prompt_sources import JsonlPromptSet


@pytest.mark.unit
def test_clock_offset_takes_the_shortest_round_trip() -> None:
    # worker clock = master clock - 5 s; the one-way delays are 1 ms and 1 ms (rtt 2 ms), or 30 ms and 1 ms
    fast = (100.0, 105.001, 105.0012, 100.0022)  # t1, t2, t3, t4
    slow = (200.0, 205.030, 205.0302, 200.0312)
    offset, rtt = best_offset([slow, fast])
    assert offset == pytest.approx(5.0, abs=1e-6) and rtt == pytest.approx(0.002, abs=1e-6)


@pytest.mark.unit
def test_records_move_onto_the_master_clock() -> None:
    r = RequestRecord(request_id="s-0", stage="s", worker_id="w1/u0", intended_send_s=10.0, send_s=10.5,
                      first_token_s=11.0, chunk_times_s=[11.0, 12.0], last_token_s=12.0, end_s=12.1,
                      prompt_tokens=1, output_tokens=2, max_tokens=2, status=200, ok=True)
    moved = RequestRecord.model_validate(to_master_clock(r, 2.0))
    assert (moved.intended_send_s, moved.send_s, moved.first_token_s, moved.last_token_s, moved.end_s) == (
        12.0, 12.5, 13.0, 14.0, 14.1)
    assert moved.chunk_times_s == [13.0, 14.0]


@pytest.mark.system  # starts two worker processes
def test_a_worker_lost_mid_stage_is_named_and_its_records_are_kept(tmp_path) -> None:
    prompts_file = tmp_path / "p.jsonl"
    prompts_file.write_text('{"prompt": "hello"}\n')
    prof = profile_from_data({"name": "lost", "input_tokens": 8, "output_tokens": 3, "timeout_s": 10,
                              "prompts": {"kind": "jsonl", "path": str(prompts_file)},
                              "stages": [{"kind": "concurrency", "users": 4, "duration_s": 8}]})
    records: list[RequestRecord] = []
    killed: list[int] = []

    def kill_one_worker() -> None:
        while not killed:
            gevent.sleep(0.5)
            workers = [p for p in psutil.Process().children(recursive=True)
                       if "serve_bench.load.worker" in " ".join(p.cmdline())]
            sent = {r.worker_id.split("/")[0] for r in records}
            if len(workers) == 2 and sent == {"w0", "w1"}:
                killed.append(workers[0].pid)
                os.kill(workers[0].pid, signal.SIGKILL)

    with fake_server() as url:
        killer = gevent.spawn(kill_one_worker)
        result = run_stage(prof.expanded_stages()[0], url=url, model="ok", profile=prof,
                           prompts=JsonlPromptSet(prompts_file, "chat"), sink=records.append, workers=2,
                           worker_log_dir=tmp_path)
        killer.kill()
    assert killed, "the stage ended before both workers had sent records"
    assert result.stopped_early and len(result.lost_workers) == 1
    assert any("disconnected mid-stage" in w for w in result.warnings)
    assert {r.worker_id.split("/")[0] for r in records} == {"w0", "w1"}  # the lost worker's records are kept
    assert result.ended_s - result.started_s < 8  # not the whole stage: it stopped when the worker was lost
