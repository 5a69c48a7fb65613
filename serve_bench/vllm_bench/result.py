"""`vllm bench serve`'s result JSON from serve-bench's records: every key vLLM writes, with vLLM's meaning
(vllm/benchmarks/serve.py: ``calculate_metrics`` and the result dict), plus ``serve_bench``: the stage's own
summary (intended-send latencies, steady window, send lag, energy) and where the run directory is.

vLLM's definitions, as used here: a request's start is its actual send (``ttft``, ``latencies`` from it, not
from the schedule; the intended-send figures are serve-bench's extras); ``duration`` runs from the first send to
the last response; ``tpot`` is (latency − ttft) / (output tokens − 1) over requests with more than one token;
``itl`` pools every gap between chunks; ``std`` is numpy's population standard deviation; percentiles numpy's
linear ones; ``request_goodput`` counts completed requests within every ``--goodput`` limit, over the duration;
``max_output_tokens_per_s`` is the most output chunks in one whole second of the run, and
``max_concurrent_requests`` the most requests active at some time within one such second (vLLM's, not the most
in flight at one instant). The per-request lists (``ttfts``, ``itls``,
``input_lens`` …) are kept with ``--save-detailed`` only, as vLLM keeps them. Generated texts are not kept by
serve-bench: ``generated_texts`` holds empty strings (the count matches)."""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from serve_bench.measure.records import RequestRecord
from serve_bench.vllm_bench.args import BenchArgs

DETAILED = ("input_lens", "output_lens", "start_times", "ttfts", "itls", "generated_texts", "errors")
GOODPUT_LIMITS = {"ttft_ms": "ttft", "tpot_ms": "tpot", "e2el_ms": "e2el"}


def _ms(values: Sequence[float]) -> np.ndarray:
    return np.asarray(values, dtype=float) * 1000.0


def result_json(a: BenchArgs, records: Sequence[RequestRecord], *, model_id: str, tokenizer_id: str,
                slo_ms: dict[str, float], extras: dict[str, Any]) -> dict[str, Any]:
    records = sorted(records, key=lambda r: r.send_s)
    ok = [r for r in records if r.ok and r.first_token_s is not None and r.last_token_s is not None]
    start = min((r.send_s for r in records), default=0.0)
    end = max((r.end_s or r.last_token_s or r.send_s for r in records), default=start)
    duration = max(end - start, 1e-9)
    ttft = [r.first_token_s - r.send_s for r in ok]  # type: ignore[operator]
    lat = [r.last_token_s - r.send_s for r in ok]  # type: ignore[operator]
    out_lens = [r.output_tokens or 0 for r in ok]
    tpot = [(la - t) / (n - 1) for la, t, n in zip(lat, ttft, out_lens) if n > 1]
    itl = [b - a for r in ok for a, b in zip(r.chunk_times_s, r.chunk_times_s[1:])]
    good = sum(1 for t, la, n in zip(ttft, lat, out_lens) if all(
        (t if k == "ttft" else la if k == "e2el" else ((la - t) / (n - 1) if n > 1 else 0.0)) * 1000.0 <= limit
        for key, limit in slo_ms.items() if (k := GOODPUT_LIMITS.get(key))))
    total_in = sum(r.prompt_tokens or 0 for r in ok)
    total_out = sum(out_lens)
    head: dict[str, Any] = {
        "date": dt.datetime.now().strftime("%Y%m%d-%H%M%S"), "endpoint_type": a.backend, "backend": a.backend,
        "label": a.label, "model_id": model_id, "tokenizer_id": tokenizer_id, "num_prompts": a.num_prompts,
        **a.metadata_items(),
        "request_rate": "inf" if math.isinf(a.request_rate) else a.request_rate, "burstiness": a.burstiness,
        "max_concurrency": a.max_concurrency,
    }
    by_id = {id(r): r for r in ok}
    body: dict[str, Any] = {
        "duration": duration, "completed": len(ok), "failed": len(records) - len(ok),
        "total_input_tokens": total_in, "total_output_tokens": total_out,
        "request_throughput": len(ok) / duration,
        "request_goodput": good / duration if slo_ms else None,
        "output_throughput": total_out / duration, "total_token_throughput": (total_in + total_out) / duration,
        "input_lens": [r.prompt_tokens or 0 for r in records],
        "output_lens": [(r.output_tokens or 0) if id(r) in by_id else 0 for r in records],
        "ttfts": [(r.first_token_s - r.send_s) if id(r) in by_id else 0.0 for r in records],  # type: ignore[operator]
        "itls": [[b - a for a, b in zip(r.chunk_times_s, r.chunk_times_s[1:])] if id(r) in by_id else []
                 for r in records],
        "latencies": [(r.last_token_s - r.send_s) if id(r) in by_id else 0.0 for r in records],  # type: ignore
        "start_times": [r.send_s for r in records],
        "queue_times": [0.0 for _ in records],  # serve-bench's users send when they may: no client-side queue
        "generated_texts": ["" for _ in records],
        "errors": ["" if id(r) in by_id else (r.error or f"HTTP {r.status}") for r in records],
        "max_output_tokens_per_s": _peak_tokens(ok), "max_concurrent_requests": _peak_in_flight(ok),
        "rtfx": 0.0,
    }
    values = {"ttft": ttft, "tpot": tpot, "itl": itl, "e2el": lat}
    for metric in a.percentile_metrics:
        v = _ms(values[metric])
        body[f"mean_{metric}_ms"] = float(np.mean(v)) if v.size else 0.0
        body[f"median_{metric}_ms"] = float(np.median(v)) if v.size else 0.0
        body[f"std_{metric}_ms"] = float(np.std(v)) if v.size else 0.0
        for p in a.metric_percentiles:
            word = str(int(p)) if int(p) == p else str(p)
            body[f"p{word}_{metric}_ms"] = float(np.percentile(v, p)) if v.size else 0.0
    if not a.save_detailed:  # as vLLM: the lists of one value a request only with --save-detailed
        for key in DETAILED:
            body.pop(key)
    return {**head, **body, "serve_bench": extras}


def _peak_tokens(ok: Sequence[RequestRecord]) -> float:
    if not ok:
        return 0.0
    origin = min(r.send_s for r in ok)
    per_second = Counter(int(t - origin) for r in ok for t in r.chunk_times_s)
    return float(max(per_second.values(), default=0))


def _peak_in_flight(ok: Sequence[RequestRecord]) -> int:
    """vLLM's: the most requests active at any time within one whole second of the run (a request counts in
    every second from its send's to its last token's)."""
    if not ok:
        return 0
    origin = min(r.send_s for r in ok)
    per_second: Counter[int] = Counter()
    for r in ok:
        per_second.update(range(int(r.send_s - origin), int(r.last_token_s - origin) + 1))  # type: ignore[operator]
    return max(per_second.values())


def default_filename(a: BenchArgs, model_id: str, date: str) -> str:
    """vLLM's: ``{label or backend}-{rate}qps[-concurrency{N}]-{model's last name part}-{date}.json``."""
    rate = "inf" if math.isinf(a.request_rate) else f"{a.request_rate}"
    concurrency = f"-concurrency{a.max_concurrency}" if a.max_concurrency is not None else ""
    return f"{a.label or a.backend}-{rate}qps{concurrency}-{model_id.split('/')[-1]}-{date}.json"
