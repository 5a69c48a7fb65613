"""What the run prints off a terminal, and the JSON events, from the pipeline's calls."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from serve_bench.cli.views import FINISHED_HEADER, JsonEvents, LiveView, PlainView, Tee, count_stages, finished_row
from serve_bench.measure.records import RequestRecord
from serve_bench.observe.energy import NotMeasured
from serve_bench.observe.observer import Observer
from serve_bench.rundir import StageFile
from serve_bench.workload.profiles import Warmup

pytestmark = pytest.mark.unit

RESULT = StageFile(checkpoint="base", stage="r2", profile="p", kind="rate", target={"rate_rps": 2.0}, started_s=0.0,
                   ended_s=1.0, warmup_end_s=None, records=11, generator_saturated=True,
                   summary={"completed": 10, "failed": 1, "output_throughput": 12.5, "steady_output_throughput": 12.0,
                            "latency_from": "intended send", "median_ttft_ms": 90.0,
                            "median_ttft_from_intended_ms": 120.0, "median_tpot_ms": 30.25,
                            "p99_send_lag_ms": 4.0},
                   energy={"measured": False, "reason": "no NVML"})


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
                     "(90.0 from send), send lag p99 4.0 ms, TPOT p50 30.25 ms, energy n/m  [load generator saturated]",
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
    assert "120.0†" in row and "n/m" in row and row.rstrip().endswith("load generator saturated")


def test_stages_are_counted_as_they_will_run() -> None:
    assert count_stages(["quick"]) == 3
    assert count_stages(["sweep"]) >= 3  # a sweep: synchronous, max throughput, then its rates


def test_progress_is_said_in_parts_not_per_tensor() -> None:
    plain, events = io.StringIO(), io.StringIO()
    view = Tee(PlainView(plain), JsonEvents(events))
    for done in range(0, 1001, 10):
        view.progress("", "pruning m (ppm): p20", done, 1000)
    assert plain.getvalue().splitlines() == [f"pruning m (ppm): p20: {p}%" for p in (25, 50, 75, 100)]
    said = [json.loads(line) for line in events.getvalue().splitlines()]
    assert [e["done"] for e in said] == list(range(100, 1001, 100))
    assert {e["event"] for e in said} == {"progress"} and {e["total"] for e in said} == {1000}


def _record(stage: str, i: int, warmup: bool) -> RequestRecord:
    return RequestRecord(request_id=f"{stage}-{i}", stage=stage, profile="p", worker_id="w0/u0", send_s=100.0 + i,
                         first_token_s=100.05 + i, last_token_s=100.5 + i, end_s=100.5 + i, prompt_tokens=8,
                         output_tokens=10, max_tokens=10, status=200, ok=True, warmup=warmup)


def _bars(text: str) -> int:
    return sum("━" in line for line in text.splitlines())


def _drawn(view: LiveView) -> str:
    out = Console(file=io.StringIO(), width=240, color_system=None)
    out.print(view.render())
    return out.file.getvalue()


def test_live_view_says_warm_up_then_measures_and_shows_a_phase_progress_bar() -> None:
    observer = Observer(slos_ms=None, meter=NotMeasured("no GPU here"))
    view = LiveView(Console(file=io.StringIO()), stages_per_checkpoint=1)
    view.observing(observer)
    view.progress("", "pruning m (ppm): p20", 250, 1000)
    shown = _drawn(view)
    # the pruning's bar, a quarter of 60 columns (the study's bar, at 0 stages done, draws blank)
    assert "pruning m (ppm): p20" in shown and _bars(shown) == 1 and "━" * 15 in shown and "━" * 16 not in shown
    observer.live.checkpoint = "base"
    observer.live.begin("p", "c2", "concurrency", {"users": 2, "requests": 4}, lambda: 2, lambda: None,
                        Warmup(requests=2))
    observer.record(_record("c2", 0, warmup=True))
    assert "warm-up 1/2 requests (not measured)" in _drawn(view)
    observer.record(_record("c2", 1, warmup=True))
    observer.record(_record("c2", 2, warmup=False))
    shown = _drawn(view)
    assert "warm-up" not in shown and "1/4 requests" in shown and "ok 1 failed 0" in shown
    observer.live.end()
    view.phase("base", "starting the vLLM server")
    shown = _drawn(view)
    assert "starting the vLLM server" in shown and _bars(shown) == 0  # a new phase: no stale bar
