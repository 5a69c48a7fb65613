"""The start barrier: a stage's clock starts only when every user is connected and waiting.

Locust creates users one by one (and, distributed, worker by worker); each
user opens its connection and checks in (``StageState.counts.users_ready``, or the
workers' reports). Waiting here for all of them means a closed-loop stage of N
users has N requests in flight from its first measured request.
"""

from __future__ import annotations

from collections.abc import Callable

import gevent

from serve_bench.load.stage_plan import StagePlan
from serve_bench.measure.clock import now_s

BARRIER_TIMEOUT_S = 60.0


def await_barrier(ready: Callable[[], int], users: int, plan: StagePlan) -> str | None:
    """Wait until ``users`` users are connected and waiting; after a timeout, start with those there and
    return a note that says so."""
    deadline = now_s() + BARRIER_TIMEOUT_S + users / plan.spawn_rate
    while ready() < users:
        if now_s() > deadline:
            return (f"stage {plan.name}: only {ready()} of {users} users were connected after "
                    f"{BARRIER_TIMEOUT_S:.0f} s; the stage started without the others")
        gevent.sleep(0.01)
    return None
