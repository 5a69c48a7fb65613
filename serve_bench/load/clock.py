"""One clock for every request timestamp.

Timestamps are wall-clock seconds since the epoch, so they line up with
Prometheus scrapes and energy-counter windows, but they are derived from
``perf_counter`` (monotonic, sub-microsecond) and one anchor pair taken once
per process, so the differences between them are as precise as perf_counter
and never jump when NTP adjusts the system clock.
"""

from __future__ import annotations

import time

_ANCHOR_WALL_S = time.time()
_ANCHOR_PERF_S = time.perf_counter()


def now_s() -> float:
    """Wall-clock seconds since the epoch, precise as perf_counter."""
    return _ANCHOR_WALL_S + (time.perf_counter() - _ANCHOR_PERF_S)


def perf_to_wall_s(perf_s: float) -> float:
    """Convert a ``time.perf_counter()`` reading taken in this process to the same wall clock."""
    return _ANCHOR_WALL_S + (perf_s - _ANCHOR_PERF_S)
