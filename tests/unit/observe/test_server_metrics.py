"""Reconciling the client's records with the server's counters, from /metrics texts written by hand."""

from __future__ import annotations

import pytest

from serve_bench.measure.records import RequestRecord
from serve_bench.observe.server_metrics import histogram_quantile, parse, reconcile

pytestmark = pytest.mark.unit


def text(success: float, prompt: float, gen: float, ttft_buckets: list[tuple[str, float]], q_sum: float,
         q_count: float) -> str:
    lines = [
        "# TYPE vllm:request_success_total counter",
        f'vllm:request_success_total{{finished_reason="length",model_name="m"}} {success}',
        'vllm:request_success_total{finished_reason="stop",model_name="m"} 0',
        "# TYPE vllm:prompt_tokens_total counter", f'vllm:prompt_tokens_total{{model_name="m"}} {prompt}',
        "# TYPE vllm:generation_tokens_total counter", f'vllm:generation_tokens_total{{model_name="m"}} {gen}',
        "# TYPE vllm:time_to_first_token_seconds histogram",
        *[f'vllm:time_to_first_token_seconds_bucket{{le="{le}",model_name="m"}} {c}' for le, c in ttft_buckets],
        f'vllm:time_to_first_token_seconds_count{{model_name="m"}} {ttft_buckets[-1][1]}',
        'vllm:time_to_first_token_seconds_sum{model_name="m"} 1.0',
        "# TYPE vllm:request_queue_time_seconds histogram",
        f'vllm:request_queue_time_seconds_bucket{{le="0.01",model_name="m"}} {q_count}',
        f'vllm:request_queue_time_seconds_bucket{{le="+Inf",model_name="m"}} {q_count}',
        f'vllm:request_queue_time_seconds_sum{{model_name="m"}} {q_sum}',
        f'vllm:request_queue_time_seconds_count{{model_name="m"}} {q_count}',
        "# TYPE python_gc_objects_collected_total counter", 'python_gc_objects_collected_total{generation="0"} 5',
    ]
    return "\n".join(lines) + "\n"


def rec(i: int, ttft: float, out: int = 4) -> RequestRecord:
    return RequestRecord(request_id=f"s-{i}", stage="s", worker_id="w0/u0", send_s=100.0, first_token_s=100 + ttft,
                         chunk_times_s=[100 + ttft, 101.0], last_token_s=101.0, end_s=101.0, prompt_tokens=10,
                         output_tokens=out, max_tokens=out, status=200, ok=True)


def test_parse_keeps_vllm_samples_only() -> None:
    samples = parse(text(1, 2, 3, [("0.1", 1), ("+Inf", 1)], 0, 0))
    assert all(name.startswith("vllm:") for name in samples)
    assert sum(samples["vllm:request_success_total"].values()) == 1


def test_histogram_quantile_interpolates_like_prometheus() -> None:
    buckets = [(0.1, 2.0), (0.2, 6.0), (float("inf"), 8.0)]
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1 + 0.1 * (4 - 2) / 4)  # rank 4 in (0.1, 0.2]
    assert histogram_quantile(0.99, buckets) == 0.2  # in +Inf: the highest finite bound
    assert histogram_quantile(0.5, []) is None and histogram_quantile(0.5, [(0.1, 0.0)]) is None


def test_reconcile_counts_tokens_and_ttft() -> None:
    before = text(10, 100, 40, [("0.1", 5), ("0.2", 10), ("+Inf", 10)], 0.5, 10)
    after = text(13, 130, 52, [("0.1", 6), ("0.2", 13), ("+Inf", 13)], 0.53, 13)
    records = [rec(0, 0.12), rec(1, 0.15), rec(2, 0.18)]
    out = reconcile(before, after, records)
    assert out["requests"] == {"client": 3, "server": 3, "difference": 0}
    assert out["prompt_tokens"]["server"] == 30 and out["prompt_tokens"]["difference"] == 0
    assert out["generation_tokens"] == {"client": 12, "server": 12, "difference": 0}
    # the stage's 3 TTFTs: 1 in (0, 0.1], 2 in (0.1, 0.2]: median rank 1.5 -> 0.1 + 0.1 * 0.5 / 2
    assert out["median_ttft_ms"]["server"] == pytest.approx(125.0)
    assert out["median_ttft_ms"]["client"] == pytest.approx(150.0)
    assert out["median_ttft_ms"]["difference"] == pytest.approx(25.0)
    assert out["server_queue_time_ms"]["mean"] == pytest.approx(10.0)


def test_a_server_without_vllm_metrics_is_said_so() -> None:
    out = reconcile(None, "# nothing\n", [rec(0, 0.1)])
    assert out["available"] is False and "vllm:" in out["reason"]
