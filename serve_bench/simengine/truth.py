"""The SLO capacity of the engine under a closed loop, exactly: for every whole number of users a long
virtual-time simulation (:mod:`simulate`, clients with no delay of their own), its per-request latencies,
and the constraints the report checks, defined as the report defines them (:mod:`serve_bench.report.slo`):

    pQ of each SLO metric ≤ its limit          numpy's linear percentile; itl_ms over every gap, pooled
    attainment ≥ A                              the A-quantile of each request's worst value / limit ≤ 1
                                                (per-request metrics only: ttft, tpot, e2el, ntpot, max_itl)

Each constraint's boundary is the first user count that misses it, linearly interpolated on its value
against the count before; the answer is the lowest boundary, and the steady request rate there, interpolated
between the same two counts."""

from __future__ import annotations

from typing import Any

import numpy as np

from serve_bench.load.balance import DEFAULT_BALANCE
from serve_bench.measure.metrics import per_request_slos, request_arrays, slo_scores
from serve_bench.simengine.params import EngineParams
from serve_bench.simengine.simulate import closed_loop, open_loop_fleet, steady_rate

_ARRAY = {"ttft_ms": "ttft", "tpot_ms": "tpot", "e2el_ms": "e2el", "ntpot_ms": "ntpot", "max_itl_ms": "max_itl",
          "itl_ms": "itl"}


def point(params: EngineParams, users: int, *, slos_ms: dict[str, float], percentile: float,
          min_attainment: float | None, prompt_tokens: int, output_tokens: int, requests: int) -> dict[str, Any]:
    """Constraint values (ms; attainment: the score quantile, limit 1) and the steady rate at ``users``."""
    recs = closed_loop(params, users=users, requests=requests, prompt_tokens=prompt_tokens,
                       output_tokens=output_tokens)
    cutoff = np.quantile([r.send_s for r in recs], 0.1)
    steady = [r for r in recs if r.send_s >= cutoff]
    a = request_arrays(steady)
    values = {f"p{percentile:g} {m}": float(np.percentile(a[_ARRAY[m]] * 1000.0, percentile)) for m in slos_ms}
    if min_attainment is not None and per_request_slos(slos_ms):
        values["slo_attainment"] = float(np.percentile(slo_scores(a, slos_ms), min_attainment * 100.0))
    return {"users": users, "values": values, "rate_rps": steady_rate(recs)}


def capacity_truth(params: EngineParams, *, slos_ms: dict[str, float], percentile: float = 99.0,
                   min_attainment: float | None = 0.95, prompt_tokens: int, output_tokens: int, max_users: int,
                   requests_per_point: int = 4000) -> dict[str, Any]:
    """The highest closed-loop load (users, fractional by interpolation) within the SLOs, what binds, and the
    request rate there; ``table``: every user count's values."""
    table = []
    limits = {f"p{percentile:g} {m}": v for m, v in slos_ms.items()}
    if min_attainment is not None and per_request_slos(slos_ms):
        limits["slo_attainment"] = 1.0
    boundaries: dict[str, float] = {}
    for users in range(1, max_users + 1):
        row = point(params, users, slos_ms=slos_ms, percentile=percentile, min_attainment=min_attainment,
                    prompt_tokens=prompt_tokens, output_tokens=output_tokens, requests=max(requests_per_point,
                                                                                          20 * users))
        table.append(row)
        for name, limit in limits.items():
            if name in boundaries or row["values"][name] <= limit:
                continue
            if users == 1:
                boundaries[name] = 0.0
                continue
            before = table[-2]["values"][name]
            t = (limit - before) / (row["values"][name] - before)
            boundaries[name] = users - 1 + t
        if len(boundaries) == len(limits):
            break
    out: dict[str, Any] = {"engine": params.describe(), "slos_ms": dict(slos_ms), "percentile": percentile,
                           "min_attainment": min_attainment, "boundaries": boundaries, "table": table}
    if not boundaries:
        return {**out, "status": "above", "load": None, "rate_rps": None, "binding": None}
    binding = min(boundaries, key=lambda n: round(boundaries[n], 6))  # equal ones: the first listed
    load = boundaries[binding]
    if load <= 0:
        return {**out, "status": "below", "load": None, "rate_rps": None, "binding": binding}
    users = np.array([r["users"] for r in table], dtype=float)
    rates = np.array([r["rate_rps"] for r in table])
    rate = float(np.interp(load, users, rates))
    return {**out, "status": "within", "load": load, "binding": binding, "rate_rps": rate}


def open_loop_capacity_truth(params: EngineParams, *, replicas: int = 1, slos_ms: dict[str, float],
                             percentile: float = 99.0, min_attainment: float | None = 0.95, prompt_tokens: int,
                             output_tokens: int, policy: str = DEFAULT_BALANCE, low_rps: float, high_rps: float,
                             requests: int = 20000, tolerance: float = 1e-3) -> dict[str, Any]:
    """The highest Poisson rate (requests/s) at which ``replicas`` engines, balanced as the load generator
    balances them, meet every constraint, found by bisection between ``low_rps`` (must meet them) and
    ``high_rps`` (must not). Every rate draws the same arrivals scaled in time (common random numbers: one seed),
    so the constraints move monotonically with the rate and the bisection is exact for that draw; ``requests``
    long makes the draw's own noise small. The first 10% of sends are a warm-up, as in :func:`point`."""
    limits = {f"p{percentile:g} {m}": v for m, v in slos_ms.items()}
    if min_attainment is not None and per_request_slos(slos_ms):
        limits["slo_attainment"] = 1.0

    def worst(rate: float) -> tuple[float, str]:
        recs = open_loop_fleet(params, replicas=replicas, rate_rps=rate, requests=requests,
                               prompt_tokens=prompt_tokens, output_tokens=output_tokens, policy=policy)
        cutoff = np.quantile([r.send_s for r in recs], 0.1)
        a = request_arrays([r for r in recs if r.send_s >= cutoff])
        values = {f"p{percentile:g} {m}": float(np.percentile(a[_ARRAY[m]] * 1000.0, percentile)) for m in slos_ms}
        if "slo_attainment" in limits:
            values["slo_attainment"] = float(np.percentile(slo_scores(a, slos_ms), min_attainment * 100.0))
        name = max(limits, key=lambda n: values[n] / limits[n])
        return values[name] / limits[name], name

    if worst(low_rps)[0] > 1.0 or worst(high_rps)[0] <= 1.0:
        raise ValueError(f"the capacity is not between {low_rps:g} and {high_rps:g} req/s")
    lo, hi = low_rps, high_rps
    while hi - lo > tolerance * lo:
        mid = (lo + hi) / 2.0
        lo, hi = (mid, hi) if worst(mid)[0] <= 1.0 else (lo, mid)
    return {"engine": params.describe(), "replicas": replicas, "policy": policy, "rate_rps": (lo + hi) / 2.0,
            "binding": worst(hi)[1], "requests": requests}
