"""Workloads against the real vLLM CPU server (the session's shared ``base_server``): a length mix reaches
the server exactly as planned (its usage counts), and a shared prefix raises the server's own prefix-cache
hit rate (vllm:prefix_cache_hits_total / vllm:prefix_cache_queries_total)."""

from __future__ import annotations

from typing import Any

import pytest

from serve_bench.load.runner import run_profile  # imports Locust (gevent) before the server's clients
from serve_bench.observe.server_metrics import fetch, parse, prefix_cache
from serve_bench.serve.server import VllmServer
from serve_bench.workload.profiles import profile_from_data

pytestmark = pytest.mark.integration


def run(server: VllmServer, model_path: Any, name: str, **workload: Any) -> tuple[Any, list, dict[str, Any]]:
    prof = profile_from_data({"name": name, "api": "chat", "ignore_eos": True, "warmup": {"requests": 0},
                              "timeout_s": 120, "stages": [{"kind": "concurrency", "users": 2, "requests": 8}],
                              **workload}, "test")
    records: list = []
    before = parse(fetch(server.url, None))
    (result,) = run_profile(prof, url=server.url, model="default", model_path=str(model_path), sink=records.append)
    return result, records, prefix_cache(before, parse(fetch(server.url, None)))


def test_a_length_mix_reaches_the_server_as_planned(base_server: VllmServer, base_model_path: Any) -> None:
    result, records, _ = run(base_server, base_model_path, "mix",
                             input_lengths={"kind": "uniform", "min_tokens": 40, "max_tokens": 160},
                             output_lengths={"kind": "uniform", "min_tokens": 2, "max_tokens": 12})
    assert len(records) == 8 and all(r.ok for r in records), [r.error for r in records]
    for r in records:  # the server's own counts are the planned ones
        assert r.prompt_tokens == r.requested_input_tokens
        assert r.output_tokens == r.requested_output_tokens == r.max_tokens
    assert len({r.prompt_tokens for r in records}) > 3
    s = result.summary
    assert s["output_exact"] and s["requested_input_tokens"] == s["realised_input_tokens"]


def test_a_shared_prefix_raises_the_prefix_cache_hit_rate(base_server: VllmServer, base_model_path: Any) -> None:
    _, unique, cold = run(base_server, base_model_path, "unique", input_tokens=300, output_tokens=2)
    _, shared, warm = run(base_server, base_model_path, "shared", input_tokens=40, output_tokens=2,
                          shared_prefix={"tokens": 300, "count": 1, "share": 1.0})
    assert all(r.ok for r in unique + shared)
    assert all(r.prefix_id == 0 and r.prompt_tokens == r.requested_input_tokens for r in shared)
    if cold["hit_rate"] is None or warm["hit_rate"] is None:
        pytest.fail(f"the server has no prefix-cache counters (prefix caching off?): {cold}, {warm}")
    assert cold["hit_rate"] < 0.2, cold
    assert warm["hit_rate"] > 0.5, warm  # 7 of 8 requests find the 300-token prefix cached


def test_multi_turn_prompts_grow_turn_by_turn_as_the_server_counts(base_server: VllmServer,
                                                                   base_model_path: Any) -> None:
    result, records, _ = run(base_server, base_model_path, "turns", input_tokens=40, output_tokens=8,
                             conversation={"turns": {"kind": "fixed", "tokens": 3}, "think_time_s": 0.1})
    assert len(records) == 24 and all(r.ok for r in records), [r.error for r in records]
    by_conv: dict[str, list] = {}
    for r in records:
        by_conv.setdefault(r.conversation_id, []).append(r)
    assert len(by_conv) == 8
    for turns in by_conv.values():
        turns.sort(key=lambda r: r.turn_index)
        assert [r.turn_index for r in turns] == [0, 1, 2]
        assert turns[0].prompt_tokens == turns[0].requested_input_tokens == 40
        for a, b in zip(turns, turns[1:]):
            # the whole history: the last prompt, its answer, and a new message (plus the template's tokens)
            assert b.prompt_tokens > a.prompt_tokens + a.output_tokens, (a.prompt_tokens, b.prompt_tokens)
    s = result.summary["turns"]
    assert s["first"]["completed"] == 8 and s["later"]["completed"] == 16
    assert s["later"]["prompt_tokens"]["min"] > s["first"]["prompt_tokens"]["max"]
