"""The engine in virtual time, driven by clients with no delay of their own: what a perfect load generator
would record against it. The truth (:mod:`truth`) and the report's statistical tests run on these."""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence as Seq

import numpy as np

from serve_bench.load.balance import DEFAULT_BALANCE, Balancer
from serve_bench.measure.records import RequestRecord
from serve_bench.simengine.params import EngineParams
from serve_bench.simengine.scheduler import Scheduler, Sequence

EPOCH_S = 1.7e9  # virtual seconds start here, so the records look like wall-clock ones
# A closed-loop user re-sends this long after its answer ended: later than the boundary that ended it (where
# the next step has already started), as any real client is.
THINK_S = 1e-6


def _engine(params: EngineParams) -> Scheduler:
    """A scheduler already stepping (its empty steps' boundaries half a step before 0), as a real engine is
    when a stage starts: users that send within one step of each other join the same first step."""
    sched = Scheduler(params, keep_times=True)
    if params.step_ms > 0:
        sched.boundary_s = -params.step_ms / 2000.0
    return sched


def closed_loop(params: EngineParams, *, users: int, requests: int, prompt_tokens: int, output_tokens: int,
                think_s: float = THINK_S, stage: str = "sim") -> list[RequestRecord]:
    """``users`` users back to back (the i-th sends first at i µs) until ``requests`` have been sent."""
    sched = _engine(params)
    pending = [(i * 1e-6, i) for i in range(min(users, requests))]  # (send time, user)
    heapq.heapify(pending)
    sent = 0
    done: list[Sequence] = []

    def arrive_until(t: float) -> None:
        nonlocal sent
        while pending and pending[0][0] <= t:
            at, user = heapq.heappop(pending)
            sched.submit(Sequence(f"{stage}-{sent}", at, prompt_tokens, output_tokens, user=user, index=sent))
            sent += 1

    while pending or sched.busy:
        if not sched.busy:
            sched.idle_until(pending[0][0])
        arrive_until(sched.boundary_s)  # type: ignore[arg-type]
        _, got = sched.advance()
        for seq in got:
            if seq.finished:
                done.append(seq)
                if sent + len(pending) < requests:
                    heapq.heappush(pending, (seq.last_token_s + think_s, seq.user))  # type: ignore[operator]
    return [_record(s, stage, intended=False) for s in sorted(done, key=lambda s: s.index)]


def open_loop(params: EngineParams, *, rate_rps: float, requests: int, prompt_tokens: int, output_tokens: int,
              arrivals: str = "poisson", seed: int = 0, stage: str = "sim") -> list[RequestRecord]:
    """Requests at ``rate_rps`` (Poisson or evenly spaced), whatever the engine's backlog."""
    gaps = (np.random.default_rng(seed).exponential(1.0 / rate_rps, requests) if arrivals == "poisson"
            else np.full(requests, 1.0 / rate_rps))
    times = np.cumsum(gaps) - gaps[0]
    sched = _engine(params)
    seqs = [Sequence(f"{stage}-{i}", float(t), prompt_tokens, output_tokens, index=i) for i, t in enumerate(times)]
    k = 0
    while k < len(seqs) or sched.busy:
        if not sched.busy:
            sched.idle_until(seqs[k].arrival_s)
        while k < len(seqs) and seqs[k].arrival_s <= sched.boundary_s:  # type: ignore[operator]
            sched.submit(seqs[k])
            k += 1
        sched.advance()
    return [_record(s, stage, intended=True) for s in seqs]


def open_loop_fleet(params: EngineParams, *, replicas: int, rate_rps: float, requests: int, prompt_tokens: int,
                    output_tokens: int, policy: str = DEFAULT_BALANCE, seed: int = 0,
                    stage: str = "sim") -> list[RequestRecord]:
    """Poisson requests at ``rate_rps`` spread over ``replicas`` engines alike by the load generator's own
    balancer (:class:`~serve_bench.load.balance.Balancer`, the same policy and tie-breaking), each request
    counted outstanding from its arrival to its last token. Events in time order: an arrival at or before an
    engine's next boundary is routed and submitted before that boundary is processed, as :func:`open_loop` does
    for one engine."""
    gaps = np.random.default_rng(seed).exponential(1.0 / rate_rps, requests)
    times = np.cumsum(gaps) - gaps[0]
    engines = [_engine(params.model_copy(update={"seed": params.seed * 100 + i})) for i in range(replicas)]
    balancer = Balancer([f"sim-{i}" for i in range(replicas)], policy)
    seqs = [Sequence(f"{stage}-{i}", float(t), prompt_tokens, output_tokens, index=i) for i, t in enumerate(times)]
    owner: dict[int, int] = {}
    k = 0
    while True:
        arrival = seqs[k].arrival_s if k < len(seqs) else math.inf
        boundary, which = min(((e.boundary_s, i) for i, e in enumerate(engines) if e.busy),  # type: ignore[misc]
                              default=(math.inf, -1))
        if arrival == math.inf and which < 0:
            break
        if arrival <= boundary:
            i = balancer.pick()
            assert i is not None
            if not engines[i].busy:
                engines[i].idle_until(arrival)
            engines[i].submit(seqs[k])
            owner[id(seqs[k])] = i
            k += 1
            continue
        _, got = engines[which].advance()
        for seq in got:
            if seq.finished:
                balancer.done(owner[id(seq)], refused=False)
    records = [_record(s, stage, intended=True) for s in seqs]
    return [r.model_copy(update={"endpoint": f"sim-{owner[id(s)]}"}) for r, s in zip(records, seqs)]


def _record(seq: Sequence, stage: str, *, intended: bool) -> RequestRecord:
    times = [EPOCH_S + t for t in seq.times or []]
    send = EPOCH_S + seq.arrival_s
    return RequestRecord(request_id=seq.rid, stage=stage, worker_id=f"sim/u{seq.user}",
                         intended_send_s=send if intended else None, send_s=send, first_token_s=times[0],
                         chunk_times_s=times, last_token_s=times[-1], end_s=times[-1],
                         prompt_tokens=seq.prompt_tokens, output_tokens=seq.output_tokens,
                         max_tokens=seq.output_tokens, requested_output_tokens=seq.output_tokens, status=200, ok=True)


def steady_rate(records: Seq[RequestRecord], skip: float = 0.1) -> float:
    """Requests/s of a long closed loop after its start-up: each user's completions over the time between
    its first and last counted finish (whole cycles, so exact for periodic behaviour), summed over users."""
    by_user: dict[str, list[float]] = {}
    cutoff = np.quantile([r.send_s for r in records], skip)
    for r in records:
        if r.send_s >= cutoff:
            by_user.setdefault(r.worker_id, []).append(r.end_s)  # type: ignore[arg-type]
    rate = 0.0
    for ends in by_user.values():
        if len(ends) > 1:
            rate += (len(ends) - 1) / (max(ends) - min(ends))
    return rate
