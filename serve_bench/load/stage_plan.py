"""Turn a validated stage into what the runners need: users, request budget, schedule, clocks.

Shared by the single-process runner, the distributed master and its workers,
so every process derives the same plan (the same seeded schedule) from the
same stage and profile.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from serve_bench.load.balance import DEFAULT_BALANCE, Balancer
from serve_bench.load.liveness import refused
from serve_bench.load.stage_state import RecordSink, StageConfig, StageState
from serve_bench.workload.datasets import expand
from serve_bench.workload.profiles import ConcurrencyStage, LoadProfile, RampStage, RateStage, ReplayStage, Warmup
from serve_bench.workload.prompts import PromptSet
from serve_bench.workload.schedule import build_schedule
from serve_bench.workload.traces import load_trace

# Users are created at this rate (users/s) or faster: all of a stage's users within about a second. Creating
# them costs no measurement: they wait at the start barrier, connected, until the last one is ready.
SPAWN_RATE = 100.0
# Open loop: from the barrier's release to the first scheduled send, time for every user to take its slot.
OPEN_LOOP_LEAD_S = 0.05
# A stage bounded by time alone has this many requests per user built before it starts; a feed process
# builds the rest while it runs (prompt_feed.py).
PREBUILT_ROUNDS = 4


@dataclass
class StagePlan:
    name: str
    kind: str
    users: int                      # the most users the stage runs
    start_users: int                # spawned first
    ramp: tuple[int, float] | None  # then (end users, users per second)
    requests: int | None            # closed loop: total sends, warm-up included
    duration_s: float | None        # measured part (after warm-up)
    warmup: Warmup
    offsets_s: list[float] | None   # open loop: send offsets from the schedule start
    target: dict[str, Any]

    @property
    def open_loop(self) -> bool:
        return self.offsets_s is not None

    @property
    def spawn_rate(self) -> float:
        return max(SPAWN_RATE, float(self.start_users))

    @property
    def steady_users(self) -> int | None:
        """Closed loop: the users whose joint activity bounds the steady window (metrics.steady_window);
        None for a ramp (no steady state) and open loop (its window comes from the schedule)."""
        return self.users if self.kind == "concurrency" else None


def plan_stage(stage: ConcurrencyStage | RateStage | RampStage | ReplayStage, profile: LoadProfile,
               seed: int) -> StagePlan:
    name = stage.name or stage.default_name()
    warmup = stage.warmup or profile.warmup
    common: dict[str, Any] = {"name": name, "kind": stage.kind, "warmup": warmup, "duration_s": stage.duration_s}
    if isinstance(stage, ReplayStage):
        return _plan_replay(stage, profile, warmup, common)
    if isinstance(stage, ConcurrencyStage):
        total = stage.requests + warmup.requests if stage.requests is not None else None
        return StagePlan(users=stage.users, start_users=stage.users, ramp=None, requests=total, offsets_s=None,
                         target={"users": stage.users, "requests": stage.requests, "duration_s": stage.duration_s},
                         **common)
    if isinstance(stage, RampStage):
        rate = abs(stage.end_users - stage.start_users) / stage.duration_s
        ramp = (stage.end_users, rate) if stage.end_users != stage.start_users else None
        return StagePlan(users=max(stage.start_users, stage.end_users), start_users=stage.start_users, ramp=ramp,
                         requests=None, offsets_s=None,
                         target={"start_users": stage.start_users, "end_users": stage.end_users,
                                 "duration_s": stage.duration_s}, **common)
    total = stage.requests + warmup.requests if stage.requests is not None else None
    span = stage.duration_s + warmup.duration_s if stage.duration_s is not None else None
    offsets = build_schedule(stage.arrivals, stage.rate_rps, requests=total, duration_s=span,
                             seed=seed + zlib.crc32(name.encode()), burstiness=stage.burstiness)
    users = max(1, min(stage.max_concurrency, len(offsets)))
    return StagePlan(users=users, start_users=users, ramp=None, requests=None, offsets_s=offsets,
                     target={"rate_rps": stage.rate_rps, "arrivals": stage.arrivals, "burstiness": stage.burstiness,
                             "max_concurrency": stage.max_concurrency, "requests": stage.requests,
                             "duration_s": stage.duration_s, "scheduled": len(offsets)}, **common)


def _plan_replay(stage: ReplayStage, profile: LoadProfile, warmup: Warmup, common: dict[str, Any]) -> StagePlan:
    """A trace's send times, scaled by the stage's speed; request i is the trace's row i."""
    source: Any = profile.prompts
    trace = load_trace(expand(source.path), source.format)
    offsets = trace.offsets_s(stage.speed)
    if stage.requests is not None:
        offsets = offsets[:stage.requests + warmup.requests]
    if stage.duration_s is not None:
        offsets = [t for t in offsets if t < stage.duration_s + warmup.duration_s]
    users = max(1, min(stage.max_concurrency, len(offsets)))
    return StagePlan(users=users, start_users=users, ramp=None, requests=None, offsets_s=offsets,
                     target={"trace": str(trace.path), "format": source.format, "speed": stage.speed,
                             "max_concurrency": stage.max_concurrency, "requests": stage.requests,
                             "duration_s": stage.duration_s, "scheduled": len(offsets),
                             "trace_rows": len(trace)}, **common)


def new_state(plan: StagePlan, profile: LoadProfile, *, model: str, prompts: PromptSet, sink: RecordSink,
              endpoints: Sequence[str] = (), balance: str = DEFAULT_BALANCE, prompt_offset: int = 0,
              worker_index: int = 0, api_key: str | None = None) -> StageState:
    """A stage's state in one load-generator process; ``endpoints``: the base URLs requests are spread over
    (none: the user class's host, with no balancer to find it dead)."""
    config = StageConfig(stage=plan.name, api=profile.api, model=model, max_tokens=profile.output_tokens,
                         ignore_eos=profile.ignore_eos, timeout_s=profile.timeout_s, prompts=prompts,
                         sink=sink, worker_id=f"w{worker_index}", profile=profile.name,
                         requests=plan.requests, warmup_requests=plan.warmup.requests,
                         prompt_offset=prompt_offset, api_key=api_key,
                         endpoints=tuple(u.rstrip("/") for u in endpoints), balance=balance,
                         extra_body=profile.sampling.body())
    # a few refusals in a row (fewer with fewer users), then a fresh connection refused: that endpoint is dead
    balancer = Balancer(config.endpoints, balance, is_refused=refused,
                        threshold=max(1, min(plan.users, 3))) if config.endpoints else None
    return StageState(config, balancer=balancer)


def start_clock(state: StageState, plan: StagePlan, t0_s: float) -> None:
    """Fix the stage's wall-clock times: t0 is the first scheduled send (open loop) or all users spawned."""
    state.turns.clock_start_s = t0_s
    state.turns.warmup_end_s = t0_s + plan.warmup.duration_s if plan.warmup.duration_s else None
    if plan.offsets_s is not None:
        state.turns.schedule_s = [t0_s + t for t in plan.offsets_s]
    elif plan.duration_s is not None:
        state.turns.deadline_s = t0_s + plan.warmup.duration_s + plan.duration_s


def known_requests(plan: StagePlan) -> int | None:
    """How many requests the stage sends, when that is known before it starts (a request budget, or a
    schedule); None for a stage bounded by time alone, whose prompts are fed while it runs."""
    if plan.offsets_s is not None:
        return len(plan.offsets_s)
    return plan.requests
