"""What the run prints off a terminal, and the JSON events, from the pipeline's calls."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from serve_bench.cli.views import FINISHED_HEADER, JsonEvents, PlainView, Tee, count_stages, finished_row

pytestmark = pytest.mark.unit

RESULT = {"stage": "r2", "profile": "p", "generator_saturated": True,
          "summary": {"completed": 10, "failed": 1, "output_throughput": 12.5, "steady_output_throughput": 12.0,
                      "latency_from": "intended send", "median_ttft_ms": 90.0,
                      "median_ttft_from_intended_ms": 120.0, "median_tpot_ms": 30.25, "p99_send_lag_ms": 4.0},
          "energy": {"measured": False, "reason": "no NVML"}}


def test_plain_lines_and_json_events_say_the_same_events() -> None:
    plain, events = io.StringIO(), io.StringIO()
    view = Tee(PlainView(plain), JsonEvents(events))
    view.run_started(Path("/runs/x"))
    view.phase("", "preparing the checkpoints")
    view.checkpoint_started("base", 0, 2)
    view.stage_running("base", "p", "r2", "rate", "2 req/s poisson")
    view.request_done(True)  # not an event for either
    view.stage_done("base", RESULT)
    view.problem("base: the server died")
    lines = plain.getvalue().splitlines()
    assert lines == ["run directory: /runs/x", "preparing the checkpoints", "checkpoint 1/2: base",
                     "base r2: running (2 req/s poisson)",
                     "base r2: 10 ok, 1 failed, 12.5 tok/s (steady 12.0), TTFT p50 120.0 ms from schedule "
                     "(90.0 from send), send lag p99 4.0 ms, TPOT p50 30.25 ms, energy n/m  [generator saturated]",
                     "problem: base: the server died"]
    assert all("\x1b" not in line for line in lines)
    said = [json.loads(line) for line in events.getvalue().splitlines()]
    assert [e["event"] for e in said] == ["run_started", "phase", "checkpoint_started", "stage_running",
                                          "stage_done", "problem"]
    done = said[4]
    assert done["flags"] == ["generator_saturated"] and done["summary"]["median_ttft_from_intended_ms"] == 120.0
    assert all(isinstance(e["t"], float) for e in said)


def test_a_finished_row_lines_up_under_the_header() -> None:
    row = finished_row("p40", RESULT)
    assert row.index("10/1") + len("10/1") == FINISHED_HEADER.index("ok/failed") + len("ok/failed")
    assert "120.0†" in row and "n/m" in row and row.rstrip().endswith("generator saturated")


def test_stages_are_counted_as_they_will_run() -> None:
    assert count_stages(["quick"]) == 3
    assert count_stages(["sweep"]) >= 3  # a sweep: synchronous, max throughput, then its rates
