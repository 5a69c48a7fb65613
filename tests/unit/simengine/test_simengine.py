"""The known-capacity engine's rules in virtual time, worked by hand, and its truth."""

from __future__ import annotations

import pytest

from serve_bench.simengine.params import EngineParams
from serve_bench.simengine.simulate import closed_loop, open_loop, steady_rate
from serve_bench.simengine.truth import capacity_truth

pytestmark = pytest.mark.unit


def gaps(r):
    return [b - a for a, b in zip(r.chunk_times_s, r.chunk_times_s[1:])]


def test_one_user_gets_a_token_a_step_after_waiting_for_the_next_boundary():
    recs = closed_loop(EngineParams(step_ms=10, per_seq_ms=1), users=1, requests=3, prompt_tokens=8, output_tokens=4)
    first, *later = recs
    # the engine is stepping already (empty 10 ms steps, the next one half done): 5 ms, then one 11 ms step
    assert first.first_token_s - first.send_s == pytest.approx(0.016, abs=1e-6)
    assert gaps(first) == pytest.approx([0.011] * 3, abs=1e-6)
    for r in later:  # re-sent just after the boundary that ended the last answer: an empty 10 ms step first
        assert r.first_token_s - r.send_s == pytest.approx(0.021, abs=2e-6)
        assert gaps(r) == pytest.approx([0.011] * 3, abs=1e-6)


def test_users_share_steps_and_the_closed_loop_rate_is_the_cycle():
    # 8 users in lock-step: a cycle is an empty step (10 ms) + 4 steps of 10 + 8 ms; 8 requests per cycle
    recs = closed_loop(EngineParams(step_ms=10, per_seq_ms=1), users=8, requests=800, prompt_tokens=8,
                       output_tokens=4)
    assert all(gaps(r) == pytest.approx([0.018] * 3, abs=1e-6) for r in recs[80:])  # after the start-up
    assert steady_rate(recs) == pytest.approx(8 / (0.010 + 4 * 0.018), rel=1e-3)


def test_fewer_slots_than_users_queue_in_whole_cycles():
    # 4 slots, 8 users: two groups of 4 take turns; each request waits out the other group's 4 steps of
    # 10 + 4 ms, then its own prefill step: TTFT 5 × 14 ms
    recs = closed_loop(EngineParams(step_ms=10, per_seq_ms=1, max_num_seqs=4), users=8, requests=400,
                       prompt_tokens=8, output_tokens=4)
    assert all(gaps(r) == pytest.approx([0.014] * 3, abs=1e-6) for r in recs)
    assert {round(r.first_token_s - r.send_s, 5) for r in recs[40:]} == {0.07}


def test_prefill_costs_the_step_it_joins_and_the_budget_splits_admission():
    p = EngineParams(step_ms=10, per_seq_ms=0, per_prefill_token_ms=0.01, max_prefill_tokens=1000)
    recs = open_loop(p, rate_rps=1e6, requests=2, prompt_tokens=800, output_tokens=2, arrivals="constant")
    a, b = recs
    # the next boundary in 5 ms, then a step of 10 + 800 × 0.01 ms alone: b's 800 tokens would pass the
    # 1,000-token budget, so it waits for that step's end and is prefilled in the next
    assert a.first_token_s - a.send_s == pytest.approx(0.005 + 0.018, abs=1e-5)
    assert b.first_token_s - b.send_s == pytest.approx(0.005 + 0.018 + 0.018, abs=1e-5)


def test_jitter_is_seeded():
    kw = dict(users=4, requests=60, prompt_tokens=8, output_tokens=8)
    same = [closed_loop(EngineParams(jitter=0.3, seed=5), **kw) for _ in range(2)]
    other = closed_loop(EngineParams(jitter=0.3, seed=6), **kw)
    assert [r.chunk_times_s for r in same[0]] == [r.chunk_times_s for r in same[1]]
    assert [r.chunk_times_s for r in other] != [r.chunk_times_s for r in same[0]]
    assert len({round(g, 9) for r in other for g in gaps(r)}) > 10  # steps differ


def test_capacity_truth_of_a_decode_bound_engine():
    # lock-step users: every answer's gaps are 10 + N ms, so p99 TPOT ≤ 40 ms up to exactly N = 30; the p95
    # score (attainment ≥ 95%) crosses just after; a cycle is 32 steps of 10 + N ms and one empty 10 ms step
    truth = capacity_truth(EngineParams(step_ms=10, per_seq_ms=1), slos_ms={"tpot_ms": 40}, percentile=99,
                           min_attainment=0.95, prompt_tokens=64, output_tokens=32, max_users=40,
                           requests_per_point=800)
    # every answer alike: the 95th percentile of the scores crosses 1 where p99 TPOT crosses 40 ms (they agree)
    assert truth["load"] == pytest.approx(30.0, abs=1e-4)
    assert truth["boundaries"] == pytest.approx({"p99 tpot_ms": 30.0, "slo_attainment": 30.0}, abs=1e-4)
    assert truth["rate_rps"] == pytest.approx(30 / (31 * 0.040 + 0.040 + 0.010), rel=0.01)
