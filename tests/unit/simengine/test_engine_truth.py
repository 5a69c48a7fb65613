"""The engine's SLO capacity, against the closed form of its lock-step closed loop."""

from __future__ import annotations

import pytest

from serve_bench.simengine.params import EngineParams
from serve_bench.simengine.truth import capacity_truth

pytestmark = pytest.mark.unit

ENGINE = EngineParams(step_ms=10, per_seq_ms=1)


def test_capacity_truth_of_a_decode_bound_engine():
    # N users, 32 tokens each, settle into two groups (see test_simengine): user 0 decodes only in steps of
    # all N (10 + N ms), so its TPOT is 10 + N; the others' last step is without it, TPOT 10 + N − 1/31.
    # User 0's requests are 1/N of all, more than 1%: p99 TPOT = 10 + N ms, ≤ 40 up to N = 30 and 41 at 31,
    # the boundary exactly 30. For attainment ≥ 95% the p95 score is the others' (1/N < 5%): (10 + N − 1/31)/40
    # ≤ 1 up to N = 30 + 1/31, so TPOT binds. The rate at 30: 30 / ((32 + 1)·10 + 32·30·1 ms) = 30 / 1.29 s.
    truth = capacity_truth(ENGINE, slos_ms={"tpot_ms": 40}, percentile=99, min_attainment=0.95, prompt_tokens=64,
                           output_tokens=32, max_users=40)
    assert truth["status"] == "within" and truth["binding"] == "p99 tpot_ms"
    assert truth["load"] == pytest.approx(30.0, abs=1e-6)
    assert truth["boundaries"] == pytest.approx({"p99 tpot_ms": 30.0, "slo_attainment": 30 + 1 / 31}, abs=1e-6)
    assert truth["rate_rps"] == pytest.approx(30 / 1.29, rel=1e-9)
    rows = {row["users"]: row for row in truth["table"]}
    assert rows[29]["values"]["p99 tpot_ms"] == pytest.approx(39.0, abs=1e-6)
    assert rows[29]["values"]["slo_attainment"] == pytest.approx((39 - 1 / 31) / 40, abs=1e-9)
    assert rows[29]["rate_rps"] == pytest.approx(29 / (0.33 + 0.032 * 29), rel=1e-9)
    assert max(rows) == 31  # every constraint has missed: no need to go further


def test_capacity_truth_above_and_below_the_axis():
    kw = dict(slos_ms={"tpot_ms": 40, "itl_ms": 40}, prompt_tokens=64, output_tokens=8, requests_per_point=200)
    above = capacity_truth(ENGINE, max_users=4, **kw)
    assert above["status"] == "above" and above["load"] is None and len(above["table"]) == 4
    # one user's steps are 11 ms: a 5 ms TPOT is out of reach
    below = capacity_truth(ENGINE, max_users=4, **{**kw, "slos_ms": {"tpot_ms": 5}})
    assert below["status"] == "below" and below["binding"] == "p99 tpot_ms" and below["rate_rps"] is None


def test_the_pooled_itl_and_ttft_constraints():
    # one user: TTFT = 11 ms; N ≥ 2 users: the others' TTFT is (10 + 1) + (10 + N) ms less the 1 µs think time
    # (they wait out user 0's prefill step, then their own), so a 30 ms p99 TTFT holds at N = 9 (29.999 ms) and
    # misses at 10 (30.999): the boundary is 9.001.
    # Without an attainment constraint, only the percentiles count.
    truth = capacity_truth(ENGINE, slos_ms={"ttft_ms": 30, "itl_ms": 100}, min_attainment=None, prompt_tokens=8,
                           output_tokens=4, max_users=12, requests_per_point=400)
    assert set(truth["limits"]) == {"p99 ttft_ms", "p99 itl_ms"}
    assert truth["binding"] == "p99 ttft_ms" and truth["load"] == pytest.approx(9.001, abs=1e-6)
    with pytest.raises(ValueError, match="unknown SLO metric"):
        capacity_truth(ENGINE, slos_ms={"latency": 1}, prompt_tokens=8, output_tokens=4, max_users=2)
