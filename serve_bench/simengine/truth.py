"""The SLO capacity of the engine under a closed loop, exactly: for every whole number of users a long
virtual-time simulation (:mod:`.simulate`, clients with no delay of their own), its per-request latencies
in the design's definitions, and the constraints the report checks (:mod:`serve_bench.report.slo`):

    "pQ m"  ≤ limit        numpy's linear percentile of metric m: ttft_ms, tpot_ms, e2el_ms, ntpot_ms and
                           max_itl_ms per request, itl_ms over every gap of every request, pooled
    slo_attainment ≥ A     the (100·A)-th percentile of each request's score ≤ 1, the score being its worst
                           value / limit over the per-request metrics set (itl_ms, a pooled quantity, is not
                           one), so "a share A of the requests meets every SLO"

The first 10% of requests by send time (the start-up) and those that finished after the first user stopped
sending (the run-down, under fewer users) are left out. Each constraint's boundary is the first user count
whose value misses, interpolated linearly on the value between the count before and it (attainment: the score
quantile against 1); the answer is the lowest boundary, which constraint it is, and the steady request rate
there, interpolated between the same two counts. The latencies are computed here, from the definitions,
rather than with :mod:`serve_bench.load.metrics`: the truth the report is checked against must not share its
code.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from serve_bench.simengine.params import EngineParams
from serve_bench.simengine.simulate import Trace, closed_loop_trace, steady_mask, steady_rate_of

PER_REQUEST = ("ttft_ms", "tpot_ms", "e2el_ms", "ntpot_ms", "max_itl_ms")
POOLED = ("itl_ms",)
ATTAINMENT = "slo_attainment"
WITHIN, ABOVE, BELOW = "within", "above", "below"
START_UP = 0.1  # the share of requests, by send time, left out as start-up
MIN_REQUESTS_PER_USER = 20  # so that every user has whole cycles in the steady part


def latencies_ms(trace: Trace, keep: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per request (``keep``: which ones), the design's metrics in ms; ``itl_ms`` every gap, pooled."""
    send = trace.send_s if keep is None else trace.send_s[keep]
    tokens = trace.tokens_s if keep is None else trace.tokens_s[keep]
    n = trace.output_tokens
    first, last = tokens[:, 0], tokens[:, -1]
    gaps = np.diff(tokens, axis=1) * 1000.0
    e2el = (last - send) * 1000.0
    return {
        "ttft_ms": (first - send) * 1000.0,
        "tpot_ms": (last - first) * 1000.0 / (n - 1) if n > 1 else np.zeros(send.size),
        "e2el_ms": e2el,
        "ntpot_ms": e2el / n,
        "max_itl_ms": gaps.max(axis=1) if n > 1 else np.zeros(send.size),
        "itl_ms": gaps.ravel() if n > 1 else np.zeros(1),  # one token: no gap at all, the pooled value 0
    }


def constraint_limits(slos_ms: dict[str, float], percentile: float, min_attainment: float | None) -> dict[str, float]:
    """Each constraint's name (as the report names them) and its limit (attainment: the score limit 1)."""
    unknown = set(slos_ms) - set(PER_REQUEST) - set(POOLED)
    if unknown:
        raise ValueError(f"unknown SLO metric(s) {sorted(unknown)}; valid: {', '.join(PER_REQUEST + POOLED)}")
    limits = {f"p{percentile:g} {m}": float(v) for m, v in slos_ms.items()}
    if min_attainment is not None and any(m in PER_REQUEST for m in slos_ms):
        limits[ATTAINMENT] = 1.0
    return limits


def point(params: EngineParams, users: int, *, slos_ms: dict[str, float], percentile: float = 99.0,
          min_attainment: float | None = 0.95, prompt_tokens: int, output_tokens: int,
          requests: int = 4000) -> dict[str, Any]:
    """One closed-loop load: each constraint's value (ms; attainment: the score quantile) and the steady
    request rate."""
    limits = constraint_limits(slos_ms, percentile, min_attainment)
    trace = closed_loop_trace(params, users=users, requests=max(requests, MIN_REQUESTS_PER_USER * users),
                              prompt_tokens=prompt_tokens, output_tokens=output_tokens)
    last = trace.tokens_s[:, -1]
    keep = steady_mask(trace.send_s, last, trace.user, START_UP)
    lat = latencies_ms(trace, keep)
    values = {f"p{percentile:g} {m}": float(np.percentile(lat[m], percentile)) for m in slos_ms}
    if ATTAINMENT in limits:
        score = np.zeros(int(keep.sum()))
        for m, limit in slos_ms.items():
            if m in PER_REQUEST:
                score = np.maximum(score, lat[m] / limit)
        values[ATTAINMENT] = float(np.percentile(score, 100.0 * min_attainment))  # type: ignore[operator]
    return {"users": users, "values": values, "rate_rps": steady_rate_of(trace.send_s, last, trace.user, START_UP),
            "requests": int(keep.sum())}


def capacity_truth(params: EngineParams, *, slos_ms: dict[str, float], percentile: float = 99.0,
                   min_attainment: float | None = 0.95, prompt_tokens: int, output_tokens: int, max_users: int,
                   requests_per_point: int = 4000) -> dict[str, Any]:
    """The highest closed-loop load (users, fractional by interpolation) within the SLOs, which constraint
    binds, and the request rate there.

    Returns ``status`` (within: a boundary was found; above: no count up to ``max_users`` misses; below: one
    user already misses), ``load``, ``binding``, ``rate_rps`` (None unless within), ``boundaries`` (every
    constraint's, where one was found), ``limits`` and ``table`` (per user count: values and rate). User
    counts are simulated in turn up to ``max_users``, stopping once every constraint has missed (later ones
    cannot change the answer)."""
    limits = constraint_limits(slos_ms, percentile, min_attainment)
    table: list[dict[str, Any]] = []
    boundaries: dict[str, float] = {}
    for users in range(1, max_users + 1):
        row = point(params, users, slos_ms=slos_ms, percentile=percentile, min_attainment=min_attainment,
                    prompt_tokens=prompt_tokens, output_tokens=output_tokens, requests=requests_per_point)
        table.append(row)
        for name, limit in limits.items():
            if name not in boundaries and row["values"][name] > limit:
                boundaries[name] = _crossing(table, name, limit)
        if len(boundaries) == len(limits):
            break
    out: dict[str, Any] = {"engine": params.describe(), "params": params.model_dump(), "slos_ms": dict(slos_ms),
                           "percentile": percentile, "min_attainment": min_attainment, "prompt_tokens": prompt_tokens,
                           "output_tokens": output_tokens, "limits": limits, "boundaries": boundaries,
                           "table": table}
    if not boundaries:
        return {**out, "status": ABOVE, "load": None, "binding": None, "rate_rps": None}
    binding = min(boundaries, key=lambda name: boundaries[name])  # a tie: the first listed (metrics, then attainment)
    load = boundaries[binding]
    if load < 1.0:  # even one user misses: there is no count before to interpolate from
        return {**out, "status": BELOW, "load": None, "binding": binding, "rate_rps": None}
    lo = int(np.floor(load))
    hi = min(lo + 1, len(table))
    a, b = table[lo - 1]["rate_rps"], table[hi - 1]["rate_rps"]
    rate = a + (b - a) * (load - lo)
    return {**out, "status": WITHIN, "load": load, "binding": binding, "rate_rps": float(rate)}


def _crossing(table: list[dict[str, Any]], name: str, limit: float) -> float:
    """Where the constraint's value crosses its limit between the last two counts of ``table`` (the last one
    misses, the one before does not); 0 when the very first count misses."""
    hi = table[-1]
    if len(table) == 1:
        return 0.0
    lo = table[-2]
    before, after = lo["values"][name], hi["values"][name]
    return lo["users"] + (limit - before) / (after - before)
