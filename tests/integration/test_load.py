"""The load stage against a real vLLM CPU server on the bundled model, with real Locust.

One server for the module; small stages (a few requests of 16 output tokens).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from serve_bench.load.runner import run_profile, run_stage  # imports Locust (gevent) before the server's clients
from serve_bench.measure.metrics import e2el_s, tpot_s, ttft_s
from serve_bench.measure.records import RecordWriter, RequestRecord, read_records
from serve_bench.serve.server import VllmServer
from serve_bench.workload.profiles import LoadProfile, profile_from_data
from serve_bench.workload.prompts import SyntheticPromptSet

pytestmark = pytest.mark.integration

INPUT_TOKENS = 64
OUTPUT_TOKENS = 16


@pytest.fixture(scope="module")
def model_path(base_model_path: Path) -> Path:
    return base_model_path


@pytest.fixture(scope="module")
def server(base_server: VllmServer) -> VllmServer:
    """The session's shared server (tests/integration/conftest.py)."""
    return base_server


def profile(api: str = "chat", **stages_and_more: object) -> LoadProfile:
    return profile_from_data({"name": "it", "api": api, "input_tokens": INPUT_TOKENS, "output_tokens": OUTPUT_TOKENS,
                              "warmup": {"requests": 1}, "timeout_s": 120, **stages_and_more}, "test")


def check_records(records: list[RequestRecord], input_tokens: int = INPUT_TOKENS) -> None:
    assert records
    for r in records:
        assert r.ok, r.error
        assert r.status == 200 and r.profile == "it"
        assert r.output_tokens == r.max_tokens == OUTPUT_TOKENS  # ignore_eos: exactly the work asked for
        assert r.prompt_tokens == input_tokens  # the synthetic prompt fits the chat template exactly
        assert 0 < ttft_s(r) < e2el_s(r)  # type: ignore[operator]
        assert tpot_s(r) > 0  # type: ignore[operator]
        assert r.send_s < r.chunk_times_s[0] == r.first_token_s
        assert r.chunk_times_s[-1] == r.last_token_s <= r.end_s  # type: ignore[operator]
        assert sorted(r.chunk_times_s) == r.chunk_times_s and len(r.chunk_times_s) <= OUTPUT_TOKENS


def check_throughput(summary: dict, records: list[RequestRecord]) -> None:
    measured = [r for r in records if not r.warmup]
    duration = max(r.end_s for r in measured) - min(r.send_s for r in measured)  # type: ignore[type-var]
    assert summary["completed"] == len(measured)
    assert summary["duration"] == pytest.approx(duration)
    assert summary["total_output_tokens"] == OUTPUT_TOKENS * len(measured)
    assert summary["output_throughput"] == pytest.approx(OUTPUT_TOKENS * len(measured) / duration)
    assert summary["request_throughput"] == pytest.approx(len(measured) / duration)


def test_closed_loop_ladder(server: VllmServer, model_path: Path, tmp_path: Path) -> None:
    prof = profile(stages=[{"kind": "ladder", "of": "concurrency", "values": [1, 4], "requests": 6}])
    path = tmp_path / "records.jsonl"
    with RecordWriter(path) as writer:
        results = run_profile(prof, url=server.url, model="default", model_path=str(model_path), sink=writer)
    records = read_records(path)
    assert [r.stage for r in results] == ["c1", "c4"]
    assert len(records) == 2 * 7  # 6 measured + 1 warm-up per stage, all on disk
    check_records(records)
    for result in results:
        stage_records = [r for r in records if r.stage == result.stage]
        assert sum(r.warmup for r in stage_records) == 1 and result.summary["warmup_excluded"] == 1
        assert all(r.intended_send_s is None for r in stage_records)
        check_throughput(result.summary, stage_records)
        assert result.summary["failed"] == 0 and not result.warnings
        assert result.locust_requests == 7 and result.locust_failures == 0
        assert 0 < result.summary["mean_ttft_ms"] < result.summary["mean_e2el_ms"]
        assert result.summary["n_itl"] > 0 and result.summary["p99.9_itl_ms"] >= result.summary["median_itl_ms"]
    # four users overlap: more requests per second than one
    assert results[1].summary["request_throughput"] > results[0].summary["request_throughput"]
    c4 = [r for r in records if r.stage == "c4"]
    assert len({r.worker_id for r in c4}) == 4


def test_open_loop_stage(server: VllmServer, model_path: Path) -> None:
    prof = profile(stages=[{"kind": "rate", "rate_rps": 3, "arrivals": "poisson", "requests": 8}])
    prompts = SyntheticPromptSet(model_path, "chat", INPUT_TOKENS, seed=5)
    records: list[RequestRecord] = []
    result = run_stage(prof.expanded_stages()[0], url=server.url, model="default", profile=prof, prompts=prompts,
                       sink=records.append, slos_ms={"ttft_ms": 60_000})
    check_records(records)
    assert len(records) == 9 and all(r.intended_send_s is not None for r in records)
    intended = [r.intended_send_s for r in sorted(records, key=lambda r: r.intended_send_s)]  # type: ignore
    assert intended[-1] - intended[0] > 0.5  # spread over time, not a burst
    s = result.summary
    assert s["open_loop"] and s["n_send_lag"] == 8 and s["completed"] == 8
    assert 0 <= s["median_send_lag_ms"] < 100 and not result.generator_saturated
    assert s["mean_ttft_from_intended_ms"] >= s["mean_ttft_ms"] - 1e-6
    assert s["slo_attainment"] == 1.0 and s["request_goodput"] == pytest.approx(s["request_throughput"])
    check_throughput(s, records)


def test_completions_api_and_a_small_sweep(server: VllmServer, model_path: Path) -> None:
    prof = profile(api="completions", stages=[{"kind": "sweep", "rates": 1, "max_users": 4, "requests": 4}])
    records: list[RequestRecord] = []
    results = run_profile(prof, url=server.url, model="default", model_path=str(model_path), sink=records.append)
    assert [r.stage for r in results][:2] == ["sweep-sync", "sweep-throughput"] and len(results) == 3
    lo, hi = (results[i].summary["request_throughput"] for i in (0, 1))
    assert results[2].kind == "rate" and lo < results[2].target["rate_rps"] < hi
    check_records(records)  # completions prompts are exact too


def test_dead_server_stops_the_stage(model_path: Path) -> None:
    from serve_bench.serve.server import free_port

    prof = profile(stages=[{"kind": "concurrency", "users": 2, "duration_s": 30}])
    prompts = SyntheticPromptSet(model_path, "chat", INPUT_TOKENS)
    result = run_stage(prof.expanded_stages()[0], url=f"http://127.0.0.1:{free_port()}", model="default",
                       profile=prof, prompts=prompts)
    assert result.server_died and result.stopped_early and result.ended_s - result.started_s < 5
    assert result.summary["completed"] == 0 and any("connection refused" in e for e in result.summary["errors"])


def test_ramp_stage(server: VllmServer, model_path: Path) -> None:
    prof = profile(stages=[{"kind": "ramp", "start_users": 1, "end_users": 4, "duration_s": 4}])
    records: list[RequestRecord] = []
    result = run_stage(prof.expanded_stages()[0], url=server.url, model="default", profile=prof,
                       model_path=str(model_path), sink=records.append)
    check_records(records)
    first_send = {}
    for r in records:
        first_send.setdefault(r.worker_id, r.send_s)
    assert len(first_send) == 4  # users were added during the stage…
    starts = sorted(first_send.values())
    assert starts[-1] - starts[0] > 1.5  # …over its duration (3 users at 0.75 users/s), not all at once
    assert result.target == {"start_users": 1, "end_users": 4, "duration_s": 4.0}


def test_distributed_stage_with_two_worker_processes(server: VllmServer, model_path: Path, tmp_path: Path) -> None:
    prof = profile(stages=[{"kind": "concurrency", "users": 2, "requests": 6},
                           {"kind": "rate", "rate_rps": 4, "arrivals": "constant", "requests": 6}])
    records: list[RequestRecord] = []
    results = run_profile(prof, url=server.url, model="default", model_path=str(model_path), sink=records.append,
                          workers=2, worker_log_dir=tmp_path)
    check_records(records)
    for result in results:
        mine = [r for r in records if r.stage == result.stage]
        assert sorted(int(r.request_id.rsplit("-", 1)[1]) for r in mine) == list(range(7))  # no index twice
        assert {r.worker_id.split("/")[0] for r in mine} == {"w0", "w1"}
        assert result.workers == 2 and result.summary["completed"] == 6 and not result.stopped_early
        assert result.locust_requests == 7  # Locust's own stats arrived from the workers
    open_loop = [r for r in records if r.intended_send_s is not None]
    lags = sorted(r.send_s - r.intended_send_s for r in open_loop)  # type: ignore[operator]
    assert len(open_loop) == 7 and lags[len(lags) // 2] < 0.1
