"""The vLLM server's own view: its ``/metrics`` scraped during every stage, and reconciled with the client's.

The time series goes to the run directory (``server_metrics/NN-<stage>.jsonl``,
one line per scrape: time and every ``vllm:`` sample). Reconciliation uses the
exact scrapes at the stage's boundaries: the server's counters must have
moved by what the client sent (warm-up included, since the server saw it),
and its histograms give a median TTFT and queueing to set beside the client's.
Server and client TTFT differ by design (the server counts from the request's
arrival, the client from its send, network and HTTP included); the
difference is reported, not hidden.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from serve_bench import auth
from serve_bench.measure import metrics as m
from serve_bench.measure.clock import now_s
from serve_bench.measure.records import RequestRecord
from serve_bench.processes import lower_thread_priority

SCRAPE_INTERVAL_S = 2.0
Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]  # name -> labels -> value


def fetch(url: str, key: str | None, timeout_s: float = 10.0) -> str | None:
    try:
        resp = requests.get(f"{url.rstrip('/')}/metrics", headers=auth.headers(key), timeout=timeout_s)
    except requests.RequestException:
        return None
    return resp.text if resp.status_code == 200 else None


Text = str | None  # one server's /metrics text; None: it could not be read


def parse(text: Text | Sequence[Text]) -> Samples:
    """Every ``vllm:`` sample, by name and sorted labels; a fleet's texts (a sequence, one per endpoint) summed
    sample by sample: counters and histograms of the replicas add up to the fleet's."""
    if text is None or isinstance(text, str):
        return _parse_one(text)
    out: Samples = {}
    for one in text:
        for name, series in _parse_one(one).items():
            into = out.setdefault(name, {})
            for labels, value in series.items():
                into[labels] = into.get(labels, 0.0) + value
    return out


def _parse_one(text: Text) -> Samples:
    out: Samples = {}
    if not text:
        return out
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.startswith("vllm:"):
                out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def _total(samples: Samples, name: str) -> float | None:
    series = samples.get(name)
    return sum(series.values()) if series else None


def _delta(before: Samples, after: Samples, name: str) -> float | None:
    a, b = _total(before, name), _total(after, name)
    return None if a is None or b is None else b - a


def _bucket_delta(before: Samples, after: Samples, name: str) -> list[tuple[float, float]]:
    """(upper bound, cumulative count) of a histogram's increase, summed over its other labels."""
    sums: dict[float, float] = {}
    for labels, value in after.get(name + "_bucket", {}).items():
        le = float(dict(labels)["le"])
        sums[le] = sums.get(le, 0.0) + value - before.get(name + "_bucket", {}).get(labels, 0.0)
    return sorted(sums.items())


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Prometheus's histogram_quantile: linear interpolation inside the bucket holding the q-th observation."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if math.isinf(le):
                return lower
            return lower + (le - lower) * ((rank - below) / (count - below) if count > below else 0.0)
        lower, below = le, count
    return None


def reconcile(before_text: Text | Sequence[Text], after_text: Text | Sequence[Text], records: Sequence[RequestRecord],
              warmup_end_s: float | None = None, endpoints: Sequence[str] = ()) -> dict[str, Any]:
    """Client against server over one stage: counts, tokens, median TTFT, queueing. A fleet (``endpoints``, and
    one text per endpoint on each side) is reconciled as one server (its counters summed) and, for requests,
    endpoint by endpoint (``by_endpoint``)."""
    before, after = parse(before_text), parse(after_text)
    if not after:
        return {"available": False, "reason": "the server's /metrics had no vllm: metrics"}
    if endpoints:
        return {**_reconcile(before, after, records, warmup_end_s),
                "by_endpoint": _by_endpoint(before_text, after_text, records, endpoints)}  # type: ignore[arg-type]
    return _reconcile(before, after, records, warmup_end_s)


def _by_endpoint(before: Sequence[Text], after: Sequence[Text], records: Sequence[RequestRecord],
                 endpoints: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for url, b, a in zip(endpoints, before, after):
        server = _delta(parse(b), parse(a), "vllm:request_success_total") if a else None
        client = float(sum(1 for r in records if r.endpoint == url and m.completed(r)))
        out[url] = {"requests": {"client": client, "server": server,
                                 "difference": None if server is None else client - server},
                    "scraped": a is not None}
    return out


def _reconcile(before: Samples, after: Samples, records: Sequence[RequestRecord],
               warmup_end_s: float | None) -> dict[str, Any]:
    done = [r for r in records if m.completed(r)]
    measured = m.measured_records(done, warmup_end_s)
    client = {
        "requests": float(len(done)),
        "prompt_tokens": float(sum(r.prompt_tokens or 0 for r in done)),
        "generation_tokens": float(sum(r.output_tokens or 0 for r in done)),
    }
    server = {
        "requests": _delta(before, after, "vllm:request_success_total"),
        "prompt_tokens": _delta(before, after, "vllm:prompt_tokens_total"),
        "generation_tokens": _delta(before, after, "vllm:generation_tokens_total"),
    }
    out: dict[str, Any] = {"available": True}
    for key in client:
        c, s = client[key], server[key]
        out[key] = {"client": c, "server": s, "difference": None if s is None else c - s}
    client_ttft = m.percentile([t for r in measured if (t := m.ttft_s(r)) is not None], 50)
    # the server's histogram covers every request of the stage, warm-up included
    server_ttft = histogram_quantile(0.5, _bucket_delta(before, after, "vllm:time_to_first_token_seconds"))
    out["median_ttft_ms"] = {
        "client": None if client_ttft is None else client_ttft * 1000.0,
        "server": None if server_ttft is None else server_ttft * 1000.0,
        "difference": None if client_ttft is None or server_ttft is None else (client_ttft - server_ttft) * 1000.0,
        "note": "server: arrival to first token, from its histogram's buckets (linear within a bucket); "
                "client: send to first content chunk",
    }
    queue = _bucket_delta(before, after, "vllm:request_queue_time_seconds")
    q_sum = _delta(before, after, "vllm:request_queue_time_seconds_sum")
    q_count = _delta(before, after, "vllm:request_queue_time_seconds_count")
    p50 = histogram_quantile(0.5, queue)
    out["prefix_cache"] = prefix_cache(before, after)
    out["server_queue_time_ms"] = {
        "mean": q_sum / q_count * 1000.0 if q_sum is not None and q_count else None,
        "p50": None if p50 is None else p50 * 1000.0,
        "p99": None if (p99 := histogram_quantile(0.99, queue)) is None else p99 * 1000.0,
    }
    return out


def prefix_cache(before: Samples, after: Samples) -> dict[str, Any]:
    """The server's prefix-cache hit rate over a stage: Δ vllm:prefix_cache_hits_total / Δ …queries_total
    (tokens; None when the server has no such counters or answered no query)."""
    hits = _delta(before, after, "vllm:prefix_cache_hits_total")
    queries = _delta(before, after, "vllm:prefix_cache_queries_total")
    return {"hit_rate": hits / queries if hits is not None and queries else None, "hits_tokens": hits,
            "queries_tokens": queries}


class ServerScraper:
    """Scrapes the server every ``interval_s`` while a stage runs, appending to a JSONL file (a thread of the
    orchestrating process: the load generator's sending loop is in another process)."""

    def __init__(self, url: str | Sequence[str], key: str | None, path: Path,
                 interval_s: float = SCRAPE_INTERVAL_S) -> None:
        """``url``: the server, or a fleet's endpoints (then every line names its ``endpoint``)."""
        self.urls = [url] if isinstance(url, str) else list(url)
        self.key, self.path, self.interval_s = key, path, interval_s
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.scrapes = 0

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="server-metrics-scraper", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        lower_thread_priority()
        with open(self.path, "a", encoding="utf-8") as out:
            fleet = len(self.urls) > 1
            while not self._stop.is_set():
                t = now_s()
                for url in self.urls:
                    samples = parse(fetch(url, self.key, timeout_s=self.interval_s / len(self.urls)))
                    if samples:
                        flat = {f"{name}{_labels(labels)}": v for name, series in samples.items()
                                for labels, v in series.items()}
                        line = {"t": t, **({"endpoint": url} if fleet else {}), "samples": flat}
                        out.write(json.dumps(line) + "\n")
                        out.flush()
                        self.scrapes += 1
                self._stop.wait(max(0.0, self.interval_s - (now_s() - t)))

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=self.interval_s + 5.0)  # at most one fetch's timeout
            self._thread = None


def _labels(labels: tuple[tuple[str, str], ...]) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in labels) + "}" if labels else ""
