"""The engine in virtual time, driven by clients with no delay of their own: what a perfect load generator
would record against it. The truth (:mod:`.truth`) and the report's statistical tests run on these.

Closed loop: ``users`` users, user i sends its first request at i µs (so the first one starts the engine's
first step alone and the others join at its end, as simultaneous real clients do) and each sends its next
request ``think_s`` after its previous answer's last token: a tiny positive delay, so the re-sent request
misses the step that starts at that very boundary and joins the one after, as a real client's would. The
loop stops sending after ``requests`` requests in all; the last ones finish.

Open loop: arrivals at a rate (Poisson, or evenly spaced), the first at 0, whatever the backlog.

Times are seconds from 0 plus :data:`EPOCH_S` in the records, so that they look like wall-clock ones.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from serve_bench.load.records import RequestRecord
from serve_bench.simengine.params import EngineParams
from serve_bench.simengine.scheduler import Scheduler, Seq

EPOCH_S = 1.7e9
THINK_S = 1e-6
START_SPREAD_S = 1e-6  # closed loop: user i sends its first request at i × this


@dataclass
class Trace:
    """One simulation, as arrays: request i was sent at ``send_s[i]`` by ``user[i]`` and received its tokens
    at ``tokens_s[i, :]`` (virtual seconds from 0; every request has the same output length)."""

    send_s: np.ndarray
    tokens_s: np.ndarray
    user: np.ndarray
    prompt_tokens: int
    output_tokens: int

    def __len__(self) -> int:
        return int(self.send_s.size)


def closed_loop_trace(params: EngineParams, *, users: int, requests: int, prompt_tokens: int, output_tokens: int,
                      think_s: float = THINK_S) -> Trace:
    """:func:`closed_loop` without the records (the truth's fast path)."""
    if users < 1 or requests < 1:
        raise ValueError("a closed loop needs at least one user and one request")
    if think_s <= 0:
        raise ValueError("think_s must be positive: a re-sent request arrives after the boundary that ended it")
    sched = Scheduler(params, keep_times=True)
    pending = [(i * START_SPREAD_S, i) for i in range(min(users, requests))]  # (send time, user), a heap
    seqs: list[Seq] = []
    while True:
        while pending and (sched.next_s is None or pending[0][0] <= sched.next_s):
            at, user = heapq.heappop(pending)
            n = len(seqs)
            seqs.append(sched.submit(str(n), at, prompt_tokens, output_tokens, user=user, index=n))
        if sched.next_s is None:
            break
        for seq in sched.step().finished:
            if len(seqs) + len(pending) < requests:
                heapq.heappush(pending, (seq.last_token_s + think_s, seq.user))  # type: ignore[operator]
    return _trace(sched, seqs)


def open_loop_trace(params: EngineParams, *, rate_rps: float, requests: int, prompt_tokens: int,
                    output_tokens: int, arrivals: Literal["poisson", "constant"] = "poisson", seed: int = 0) -> Trace:
    """:func:`open_loop` without the records."""
    sched = Scheduler(params, keep_times=True)
    seqs: list[Seq] = []
    times = arrival_times(rate_rps, requests, arrivals, seed)
    i = 0
    while True:
        while i < times.size and (sched.next_s is None or times[i] <= sched.next_s):
            seqs.append(sched.submit(str(i), float(times[i]), prompt_tokens, output_tokens, index=i))
            i += 1
        if sched.next_s is None:
            break
        sched.step()
    return _trace(sched, seqs)


def arrival_times(rate_rps: float, requests: int, arrivals: str, seed: int) -> np.ndarray:
    """Open-loop send times from 0: exponential gaps (Poisson) or 1/rate apart (constant)."""
    if not rate_rps > 0 or requests < 1:
        raise ValueError("an open loop needs a positive rate and at least one request")
    if arrivals == "poisson":
        gaps = np.random.default_rng(seed).exponential(1.0 / rate_rps, requests)
    elif arrivals == "constant":
        gaps = np.full(requests, 1.0 / rate_rps)
    else:
        raise ValueError(f"arrivals must be 'poisson' or 'constant', not {arrivals!r}")
    gaps[0] = 0.0
    return np.cumsum(gaps)


def _trace(sched: Scheduler, seqs: list[Seq]) -> Trace:
    times = np.asarray(sched.times)
    out = seqs[0].output_tokens
    admitted = np.fromiter((s.admitted_k for s in seqs), np.int64, len(seqs))
    tokens = times[admitted[:, None] + 1 + np.arange(out)]  # admitted at k: tokens at k+1 … k+out
    return Trace(send_s=np.fromiter((s.arrival_s for s in seqs), float, len(seqs)), tokens_s=tokens,
                 user=np.fromiter((s.user for s in seqs), np.int64, len(seqs)), prompt_tokens=seqs[0].prompt_tokens,
                 output_tokens=out)


def closed_loop(params: EngineParams, *, users: int, requests: int, prompt_tokens: int, output_tokens: int,
                think_s: float = THINK_S, stage: str = "sim") -> list[RequestRecord]:
    """One record per request (in send order) as a perfect closed-loop client would record it."""
    trace = closed_loop_trace(params, users=users, requests=requests, prompt_tokens=prompt_tokens,
                              output_tokens=output_tokens, think_s=think_s)
    return to_records(trace, stage=stage, intended=False)


def open_loop(params: EngineParams, *, rate_rps: float, requests: int, prompt_tokens: int, output_tokens: int,
              arrivals: Literal["poisson", "constant"] = "poisson", seed: int = 0,
              stage: str = "sim") -> list[RequestRecord]:
    """One record per request, intended send = send = arrival (a client that never falls behind)."""
    trace = open_loop_trace(params, rate_rps=rate_rps, requests=requests, prompt_tokens=prompt_tokens,
                            output_tokens=output_tokens, arrivals=arrivals, seed=seed)
    return to_records(trace, stage=stage, intended=True)


def to_records(trace: Trace, *, stage: str, intended: bool) -> list[RequestRecord]:
    """The trace as :class:`RequestRecord` s, on the :data:`EPOCH_S` clock."""
    send = (trace.send_s + EPOCH_S).tolist()
    tokens = (trace.tokens_s + EPOCH_S).tolist()
    users = trace.user.tolist()
    n, p = trace.output_tokens, trace.prompt_tokens
    # model_construct: the values are right by construction, and validating 20,000 records would double the time
    return [RequestRecord.model_construct(
        request_id=f"{stage}-{i}", stage=stage, profile=None, worker_id=f"sim/u{users[i]}",
        intended_send_s=send[i] if intended else None, send_s=send[i], first_token_s=times[0],
        chunk_times_s=times, last_token_s=times[-1], end_s=times[-1], prompt_tokens=p, output_tokens=n,
        max_tokens=n, status=200, error=None, ok=True, warmup=False, requested_input_tokens=None,
        requested_output_tokens=n, prefix_id=None, conversation_id=None, turn_index=None)
        for i, times in enumerate(tokens)]


def steady_mask(send_s: np.ndarray, last_s: np.ndarray, user: np.ndarray, skip: float = 0.1) -> np.ndarray:
    """The closed loop's steady part: requests sent at or after the ``skip`` quantile of send times (the
    start-up) that finished no later than the first user stopped (after that fewer users load the engine)."""
    cutoff = np.quantile(send_s, skip)
    order = np.argsort(send_s, kind="stable")
    last_of_user: dict[int, int] = {}
    for i in order.tolist():  # each user's last request, by send time
        last_of_user[int(user[i])] = i
    stop = min(last_s[i] for i in last_of_user.values())
    return (send_s >= cutoff) & (last_s <= stop)


def steady_rate_of(send_s: np.ndarray, last_s: np.ndarray, user: np.ndarray, skip: float = 0.1) -> float:
    """:func:`steady_rate` on arrays."""
    keep = steady_mask(send_s, last_s, user, skip)
    rate = 0.0
    for u in np.unique(user):
        ends = np.sort(last_s[keep & (user == u)])
        if ends.size < 2 or ends[-1] <= ends[0]:
            raise ValueError(f"user {u} finished fewer than two requests in the steady part: simulate more requests")
        rate += (ends.size - 1) / (ends[-1] - ends[0])
    return float(rate)


def steady_rate(records: Sequence[RequestRecord], users: int | None = None, *, skip: float = 0.1) -> float:
    """The exact completion rate (requests/s) of a long closed loop after its start-up: the sum over users of
    each one's completions per second between its first and last finish in the steady part (whole cycles
    of its own, so exact when the engine settles into a periodic pattern, unlike a count in a fixed window).
    ``users``, when given, is checked against the records' users."""
    send = np.array([r.send_s for r in records])
    last = np.array([r.last_token_s for r in records], dtype=float)
    names = [r.worker_id for r in records]
    index = {name: i for i, name in enumerate(dict.fromkeys(names))}
    if users is not None and len(index) != users:
        raise ValueError(f"the records come from {len(index)} users, not {users}")
    return steady_rate_of(send, last, np.array([index[n] for n in names]), skip)
