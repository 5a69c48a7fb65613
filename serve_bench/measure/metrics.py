"""Every metric definition serve-bench publishes, in one place.

Per request (seconds, from :class:`RequestRecord` timestamps):

    ttft     first content token − send
    e2el     last content token − send
    tpot     (e2el − ttft) / (output tokens − 1)      only when output tokens > 1
    ntpot    e2el / output tokens
    itl      every gap between consecutive content chunks, pooled over requests
    send lag actual send − intended send               open loop only

Open loop also reports ttft and e2el measured from the intended send time
(``*_from_intended``), so a load generator that falls behind cannot hide the
queueing it causes (coordinated omission).

Per stage:

    duration                 last response − first send (measured requests only)
    request/output/total token throughput   completed requests or tokens / duration
    goodput                  requests meeting every SLO / duration
    slo_attainment           good / attempted; failed requests count as not good
    mean_in_flight           Σ (end − send) / duration: requests in flight on average (Little's law)

Steady state, beside the ``vllm bench serve`` figures above (whose duration
includes the stage's start and its drain, when fewer than all users are busy):

    steady window            closed loop: from the moment the last of the N users has sent its first
                             measured request to the moment the first user has finished its last one
                             (every user busy throughout); open loop: from the first scheduled send plus
                             one median e2el (the pipeline filled, by Little's law) to the last scheduled
                             send; a ramp has none
    steady_output_throughput output tokens arriving in the window / its length; each request's tokens
                             (from usage) are spread evenly over its content chunks' arrival times
    steady_request_throughput completed requests in the window / its length, each counted by the share of its
                             life (send to end) inside the window: exact for any arrival pattern, where counting
                             whole completions is biased whenever users finish in lock-step waves
    steady_mean_in_flight    requests in flight on average over the window

SLOs. A limit on a per-request metric (``ttft_ms``, ``tpot_ms``, ``e2el_ms``, ``ntpot_ms``, ``max_itl_ms``:
the request's largest gap between content chunks) judges each request: goodput and attainment count the
requests meeting every such limit. ``itl_ms`` is a limit on the pooled gaps (vLLM's ITL) at the SLO
percentile: a property of a stage, not of one request, so it never makes a request bad.

Token counts come from the server's ``usage``. Percentiles are numpy's
``linear`` interpolation (the default, also what vLLM bench serve uses); each
metric's sample count is reported beside it. Summary field names follow
``vllm bench serve`` (``mean_ttft_ms``, ``p99_ttft_ms``, ``p99.9_ttft_ms``…).
Records flagged ``warmup`` (or sent before ``warmup_end_s``) are left out.
A statistic with no samples is ``None`` ("not measured"), never zero.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from serve_bench.measure.records import RequestRecord

PERCENTILES: tuple[float, ...] = (50, 90, 95, 99, 99.9)
PERCENTILE_METHOD = "linear"
# limits that judge each request (goodput, attainment); itl_ms limits the pooled gaps' percentile of a stage
PER_REQUEST_SLO_METRICS = ("ttft_ms", "tpot_ms", "e2el_ms", "ntpot_ms", "max_itl_ms")
SLO_METRICS = ("ttft_ms", "tpot_ms", "itl_ms", "e2el_ms", "ntpot_ms", "max_itl_ms")


# -- per request ------------------------------------------------------------------------------------------------

def ttft_s(r: RequestRecord, *, from_intended: bool = False) -> float | None:
    start = _start(r, from_intended)
    return None if r.first_token_s is None or start is None else r.first_token_s - start


def e2el_s(r: RequestRecord, *, from_intended: bool = False) -> float | None:
    start = _start(r, from_intended)
    return None if r.last_token_s is None or start is None else r.last_token_s - start


def tpot_s(r: RequestRecord) -> float | None:
    if r.first_token_s is None or r.last_token_s is None or not r.output_tokens or r.output_tokens < 2:
        return None
    return (r.last_token_s - r.first_token_s) / (r.output_tokens - 1)


def ntpot_s(r: RequestRecord) -> float | None:
    e2el = e2el_s(r)
    return None if e2el is None or not r.output_tokens else e2el / r.output_tokens


def itls_s(r: RequestRecord) -> list[float]:
    t = r.chunk_times_s
    return [b - a for a, b in zip(t, t[1:])]


def send_lag_s(r: RequestRecord) -> float | None:
    return None if r.intended_send_s is None else r.send_s - r.intended_send_s


def _start(r: RequestRecord, from_intended: bool) -> float | None:
    return r.intended_send_s if from_intended else r.send_s


def completed(r: RequestRecord) -> bool:
    """A request counts as completed when it succeeded and streamed at least one content token."""
    return r.ok and r.first_token_s is not None and r.last_token_s is not None


# -- statistics -------------------------------------------------------------------------------------------------

def percentile(values: Sequence[float], p: float) -> float | None:
    """The p-th percentile by linear interpolation between closest ranks (numpy's default)."""
    if not len(values):
        return None
    return float(np.percentile(np.asarray(values, dtype=float), p, method=PERCENTILE_METHOD))


def percentile_label(p: float) -> str:
    """vLLM's spelling: 99 -> '99', 99.9 -> '99.9'."""
    return str(int(p)) if int(p) == p else str(p)


def describe_lengths(values: Sequence[float]) -> dict[str, float | int | None]:
    """mean, p50, p90, min, max and n of token lengths (percentiles as :func:`percentile`)."""
    if not len(values):
        return {"mean": None, "p50": None, "p90": None, "min": None, "max": None, "n": 0}
    return {"mean": float(np.mean(values)), "p50": percentile(values, 50), "p90": percentile(values, 90),
            "min": int(min(values)), "max": int(max(values)), "n": len(values)}


def describe_ms(name: str, values_s: Sequence[float], percentiles: Iterable[float] = PERCENTILES) -> dict[str, Any]:
    """mean_/median_/std_/pNN_ ``name``_ms and n_``name`` for values given in seconds."""
    ms = np.asarray(values_s, dtype=float) * 1000.0
    empty = ms.size == 0
    out: dict[str, Any] = {
        f"mean_{name}_ms": None if empty else float(ms.mean()),
        f"median_{name}_ms": None if empty else float(np.median(ms)),
        f"std_{name}_ms": None if empty else float(ms.std()),
    }
    for p in percentiles:
        out[f"p{percentile_label(p)}_{name}_ms"] = percentile(ms, p)  # type: ignore[arg-type]
    out[f"n_{name}"] = int(ms.size)
    return out


def is_good(r: RequestRecord, slos_ms: Mapping[str, float]) -> bool:
    """Meets every per-request SLO (``itl_ms`` is a stage's, not a request's). Errors are not good. Open-loop
    ttft/e2el are taken from the intended send time."""
    if not completed(r):
        return False
    intended = r.intended_send_s is not None
    measured = {
        "ttft_ms": ttft_s(r, from_intended=intended),
        "e2el_ms": e2el_s(r, from_intended=intended),
        "tpot_ms": tpot_s(r),
        "ntpot_ms": ntpot_s(r),
        "max_itl_ms": max(itls_s(r), default=None),
    }
    for key, limit_ms in per_request_slos(slos_ms).items():
        value = measured[key]
        if key in ("tpot_ms", "max_itl_ms") and value is None:
            value = 0.0  # one output token: no decode phase (as vLLM treats it)
        if value is None or value * 1000.0 > limit_ms:
            return False
    return True


def per_request_slos(slos_ms: Mapping[str, float]) -> dict[str, float]:
    """The limits that judge each request (all but the pooled ``itl_ms``)."""
    return {k: v for k, v in slos_ms.items() if k in PER_REQUEST_SLO_METRICS}


def request_arrays(done: Sequence[RequestRecord]) -> dict[str, np.ndarray]:
    """The per-request definitions above for many completed requests at once, vectorised (the live
    exporter's batches): ``ttft``/``e2el`` from the intended send in open loop (as :func:`is_good` and the
    headlines), ``tpot`` (requests with > 1 token), ``ntpot``, ``send_lag`` (open loop only), ``itl`` (every
    gap, pooled, in request order), ``gaps_per_request`` (to resample them by request) and ``max_itl`` per
    request (0 with one chunk). A test holds them equal to the scalar ones."""
    k = len(done)
    send = np.fromiter((r.send_s for r in done), float, k)
    scheduled = np.fromiter((r.intended_send_s is not None for r in done), bool, k)
    start = np.fromiter((r.send_s if r.intended_send_s is None else r.intended_send_s for r in done), float, k)
    first = np.fromiter((r.first_token_s for r in done), float, k)
    last = np.fromiter((r.last_token_s for r in done), float, k)
    out = np.fromiter((r.output_tokens or 0 for r in done), float, k)
    lengths = np.fromiter((len(r.chunk_times_s) for r in done), np.int64, k)
    flat = np.fromiter((t for r in done for t in r.chunk_times_s), float, int(lengths.sum()))
    gaps = np.diff(flat)
    ends = np.cumsum(lengths)
    inside = np.ones(gaps.size, dtype=bool)
    inside[ends[:-1][ends[:-1] <= gaps.size] - 1] = False  # a gap from one request's last chunk to the next's first
    max_itl = np.zeros(k)
    for i in np.nonzero(lengths > 1)[0]:  # few requests per batch: a loop over them, not their chunks
        max_itl[i] = gaps[ends[i] - lengths[i]:ends[i] - 1].max()
    multi = out > 1
    return {"ttft": first - start, "e2el": last - start, "tpot": (last - first)[multi] / (out[multi] - 1),
            "tpot_all": np.where(multi, (last - first) / np.maximum(out - 1, 1), 0.0),
            "ntpot": np.where(out > 0, (last - send) / np.maximum(out, 1), np.inf),
            "send_lag": (send - start)[scheduled], "itl": gaps[inside], "max_itl": max_itl,
            "gaps_per_request": np.maximum(lengths - 1, 0), "out": out}


def good_mask(arrays: Mapping[str, np.ndarray], slos_ms: Mapping[str, float]) -> np.ndarray:
    """:func:`is_good` for the completed requests of :func:`request_arrays`."""
    return slo_scores(arrays, slos_ms) <= 1.0


def slo_scores(arrays: Mapping[str, np.ndarray], slos_ms: Mapping[str, float]) -> np.ndarray:
    """Per completed request of :func:`request_arrays`: its worst value / limit over the per-request SLOs
    (≤ 1: good; 0 when there is none). Attainment ≥ q is then exactly "the q-quantile of the scores ≤ 1", a
    quantity that moves smoothly with load where the share of good requests jumps."""
    values = {"ttft_ms": arrays["ttft"], "e2el_ms": arrays["e2el"], "tpot_ms": arrays["tpot_all"],
              "ntpot_ms": arrays["ntpot"], "max_itl_ms": arrays["max_itl"]}
    score = np.zeros(arrays["ttft"].size)
    for key, limit_ms in per_request_slos(slos_ms).items():
        score = np.maximum(score, values[key] * 1000.0 / limit_ms)
    return score


def measured_records(records: Iterable[RequestRecord], warmup_end_s: float | None = None) -> list[RequestRecord]:
    """Records that count: not flagged warm-up, and (if given) sent at or after ``warmup_end_s``."""
    kept = []
    for r in records:
        if r.warmup:
            continue
        sent = r.intended_send_s if r.intended_send_s is not None else r.send_s
        if warmup_end_s is not None and sent < warmup_end_s:
            continue
        kept.append(r)
    return kept


def _end(r: RequestRecord) -> float:
    return r.end_s if r.end_s is not None else (r.last_token_s if r.last_token_s is not None else r.send_s)


def life_s(r: RequestRecord) -> float:
    """Send to end: how long the request held a slot of the load (Little's law's time in the system)."""
    return _end(r) - r.send_s


def window_shares(recs: Sequence[RequestRecord], start_s: float, end_s: float) -> np.ndarray:
    """Per record, the share of its life (send to end) inside [start_s, end_s]: summed, the requests served in
    the window, whatever the arrival pattern (a request half inside counts one half)."""
    send = np.fromiter((r.send_s for r in recs), float, len(recs))
    life = np.fromiter((life_s(r) for r in recs), float, len(recs))
    end = send + life
    inside = np.clip(np.minimum(end, end_s) - np.maximum(send, start_s), 0.0, None)
    return np.where(life > 0, inside / np.where(life > 0, life, 1.0), ((send >= start_s) & (send <= end_s)) * 1.0)


def steady_window(recs: Sequence[RequestRecord], users: int | None) -> tuple[float, float, str] | None:
    """The steady window (start, end, basis) of a stage's measured records; None when it has none."""
    scheduled = sorted(r.intended_send_s for r in recs if r.intended_send_s is not None)
    if scheduled:
        e2els = _vals(e2el_s(r) for r in recs if completed(r))
        if not e2els:
            return None
        start, end = scheduled[0] + float(np.median(e2els)), scheduled[-1]
        basis = "schedule running, from the first send plus one median e2el to the last send"
    elif users:
        first: dict[str, float] = {}
        last: dict[str, float] = {}
        for r in recs:
            first[r.worker_id] = min(first.get(r.worker_id, r.send_s), r.send_s)
            last[r.worker_id] = max(last.get(r.worker_id, _end(r)), _end(r))
        if len(first) < users:
            return None  # some users never sent a measured request: never all busy at once
        start, end = max(first.values()), min(last.values())
        basis = f"all {users} users busy"
    else:
        return None
    return (start, end, basis) if end > start else None


def steady_state(recs: Sequence[RequestRecord], users: int | None) -> dict[str, Any]:
    window = steady_window(recs, users)
    if window is None:
        return {"steady_window_start_s": None, "steady_window_end_s": None, "steady_duration": None,
                "steady_basis": None, "steady_output_throughput": None, "steady_request_throughput": None,
                "steady_mean_in_flight": None}
    a, b, basis = window
    length = b - a
    tokens = 0.0
    busy = 0.0
    for r in recs:
        busy += max(0.0, min(_end(r), b) - max(r.send_s, a))
        if not completed(r):
            continue
        times = r.chunk_times_s
        inside = bisect.bisect_right(times, b) - bisect.bisect_left(times, a)
        if inside and r.output_tokens:
            tokens += r.output_tokens * inside / len(times)
    return {"steady_window_start_s": a, "steady_window_end_s": b, "steady_duration": length, "steady_basis": basis,
            "steady_output_throughput": tokens / length,
            "steady_request_throughput": float(window_shares([r for r in recs if completed(r)], a, b).sum()) / length,
            "steady_mean_in_flight": busy / length}


def summarize(records: Iterable[RequestRecord], *, warmup_end_s: float | None = None,
              slos_ms: Mapping[str, float] | None = None,
              percentiles: Sequence[float] = PERCENTILES, users: int | None = None) -> dict[str, Any]:
    """One stage's summary, with ``vllm bench serve`` field names plus serve-bench's extras.

    ``users``: a closed-loop stage's concurrency, which bounds its steady window (None: a ramp)."""
    if slos_ms:
        unknown = set(slos_ms) - set(SLO_METRICS)
        if unknown:
            raise ValueError(f"unknown SLO metric(s) {sorted(unknown)}; valid: {list(SLO_METRICS)}")
    all_records = list(records)
    recs = measured_records(all_records, warmup_end_s)
    done = [r for r in recs if completed(r)]
    open_loop = [r for r in recs if r.intended_send_s is not None]

    first_send = min((r.send_s for r in recs), default=None)
    ends = [t for r in recs for t in (r.end_s, r.last_token_s) if t is not None]
    last_response = max(ends, default=None)
    duration = (last_response - first_send) if first_send is not None and last_response is not None else None
    rate_ok = duration is not None and duration > 0

    total_in = sum(r.prompt_tokens or 0 for r in done)
    total_out = sum(r.output_tokens or 0 for r in done)

    def per_second(x: float) -> float | None:
        return x / duration if rate_ok else None  # type: ignore[operator]

    out: dict[str, Any] = {
        "percentile_method": PERCENTILE_METHOD,
        "attempted": len(recs),
        "completed": len(done),
        "failed": len(recs) - len(done),
        "warmup_excluded": len(all_records) - len(recs),
        "duration": duration,
        "first_send_s": first_send,
        "last_response_s": last_response,
        "total_input_tokens": total_in,
        "total_output_tokens": total_out,
        "request_throughput": per_second(len(done)),
        "output_throughput": per_second(total_out),
        "total_token_throughput": per_second(total_in + total_out),
        "mean_in_flight": per_second(sum(_end(r) - r.send_s for r in recs)),
        "open_loop": bool(open_loop),
        # open loop leads with latency from the intended send (MLPerf LoadGen): no coordinated omission
        "latency_from": "intended send" if open_loop else "send",
    }
    out |= steady_state(recs, users)
    out |= describe_ms("ttft", _vals(ttft_s(r) for r in done), percentiles)
    out |= describe_ms("tpot", _vals(tpot_s(r) for r in done), percentiles)
    out |= describe_ms("itl", [g for r in done for g in itls_s(r)], percentiles)
    out |= describe_ms("e2el", _vals(e2el_s(r) for r in done), percentiles)
    out |= describe_ms("ntpot", _vals(ntpot_s(r) for r in done), percentiles)
    if open_loop:
        done_open = [r for r in done if r.intended_send_s is not None]
        out |= describe_ms("ttft_from_intended", _vals(ttft_s(r, from_intended=True) for r in done_open), percentiles)
        out |= describe_ms("e2el_from_intended", _vals(e2el_s(r, from_intended=True) for r in done_open), percentiles)
        out |= describe_ms("send_lag", _vals(send_lag_s(r) for r in open_loop), percentiles)
        out["max_send_lag_ms"] = max((send_lag_s(r) or 0.0) * 1000.0 for r in open_loop)
    if slos_ms:
        good = sum(1 for r in recs if is_good(r, slos_ms))
        out["slos_ms"] = dict(slos_ms)
        out["good"] = good
        out["request_goodput"] = per_second(good)
        out["slo_attainment"] = good / len(recs) if recs else None
    else:
        out["request_goodput"] = None
    errors: dict[str, int] = {}
    for r in recs:
        if not completed(r):
            key = r.error or f"HTTP {r.status}"
            errors[key[:200]] = errors.get(key[:200], 0) + 1
    out["errors"] = errors
    out |= length_summary(recs)
    if any(r.turn_index is not None for r in recs):
        out["turns"] = turn_summary(recs, percentiles)
    return out


def length_summary(recs: Sequence[RequestRecord]) -> dict[str, Any]:
    """Requested against realised token lengths (mean, p50, p90, min, max, n): requested over the attempted
    requests (the plan), realised over the completed ones (the server's usage). ``output_exact``: every
    completed request got exactly the answer length it asked for (as ``ignore_eos`` makes it)."""
    done = [r for r in recs if completed(r)]
    asked_out = [r.requested_output_tokens or r.max_tokens for r in done]
    got_out = [r.output_tokens for r in done if r.output_tokens is not None]
    return {
        "requested_input_tokens": describe_lengths(_vals(r.requested_input_tokens for r in recs)),
        "realised_input_tokens": describe_lengths(_vals(r.prompt_tokens for r in done)),
        "requested_output_tokens": describe_lengths([r.requested_output_tokens or r.max_tokens for r in recs]),
        "realised_output_tokens": describe_lengths(got_out),
        "output_exact": bool(done) and len(got_out) == len(done) and all(
            r.output_tokens == a for r, a in zip(done, asked_out)),
        "prefixed_requests": sum(1 for r in recs if r.prefix_id is not None),
    }


def turn_summary(recs: Sequence[RequestRecord], percentiles: Sequence[float] = PERCENTILES) -> dict[str, Any]:
    """Multi-turn: first turns apart from later ones (whose prompts carry the history): TTFT, e2el and
    prompt tokens of each."""
    out: dict[str, Any] = {"conversations": len({r.conversation_id for r in recs if r.conversation_id})}
    for name, part in (("first", [r for r in recs if not r.turn_index]), ("later", [r for r in recs if r.turn_index])):
        done = [r for r in part if completed(r)]
        out[name] = {"attempted": len(part), "completed": len(done),
                     "prompt_tokens": describe_lengths(_vals(r.prompt_tokens for r in done)),
                     **describe_ms("ttft", _vals(ttft_s(r) for r in done), percentiles),
                     **describe_ms("e2el", _vals(e2el_s(r) for r in done), percentiles)}
    return out


def _vals(values: Iterable[float | None]) -> list[float]:
    return [v for v in values if v is not None]
