"""One clock for every request timestamp.

Timestamps are wall-clock seconds since the epoch, so they line up with
Prometheus scrapes and energy-counter windows, but they are derived from
``perf_counter`` (monotonic, sub-microsecond) and one anchor pair taken once
per process, so the differences between them are as precise as perf_counter
and never jump when NTP adjusts the system clock.
"""

from __future__ import annotations

import os
import time

# A child of serve-bench (the load process, its workers) takes its parent's anchor: perf_counter is the
# system's monotonic clock, shared by every process, so parent and child stamp on one clock even when the
# wall clock steps between their starts (a VM paused, NTP); with anchors of their own, records and the
# orchestrator's energy and scrape times would disagree by the step.
ANCHOR_ENV = "SERVE_BENCH_CLOCK_ANCHOR"


def _anchor() -> tuple[float, float]:
    given = os.environ.get(ANCHOR_ENV, "")
    try:
        wall, perf = (float(x) for x in given.split(","))
    except ValueError:
        return time.time(), time.perf_counter()
    return wall, perf


_ANCHOR_WALL_S, _ANCHOR_PERF_S = _anchor()


def anchor_env() -> dict[str, str]:
    """The environment entry that gives a child process this process's clock."""
    return {ANCHOR_ENV: f"{_ANCHOR_WALL_S!r},{_ANCHOR_PERF_S!r}"}


def now_s() -> float:
    """Wall-clock seconds since the epoch, precise as perf_counter."""
    return _ANCHOR_WALL_S + (time.perf_counter() - _ANCHOR_PERF_S)


def perf_to_wall_s(perf_s: float) -> float:
    """Convert a ``time.perf_counter()`` reading taken in this process to the same wall clock."""
    return _ANCHOR_WALL_S + (perf_s - _ANCHOR_PERF_S)
