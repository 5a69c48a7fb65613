"""Records of finished streamed requests with round timings, for the benchmarks that need many of them
without a server (imported by scripts/bench_*.py: run from the repository root, scripts/ is on the path)."""

from __future__ import annotations

from serve_bench.measure.records import RequestRecord


def streamed(i: int, stage: str, send_s: float, *, chunks: int = 64, ttft_s: float = 0.1, itl_s: float = 0.02,
             prompt_tokens: int = 128, users: int = 64, profile: str = "p") -> RequestRecord:
    """Request ``i`` of ``stage``: sent at ``send_s``, first chunk after ``ttft_s``, then one every ``itl_s``."""
    times = [send_s + ttft_s + k * itl_s for k in range(chunks)]
    return RequestRecord(request_id=f"{stage}-{i}", stage=stage, profile=profile, worker_id=f"w0/u{i % users}",
                         send_s=send_s, first_token_s=times[0], chunk_times_s=times, last_token_s=times[-1],
                         end_s=times[-1], prompt_tokens=prompt_tokens, output_tokens=chunks, max_tokens=chunks,
                         status=200, ok=True)
