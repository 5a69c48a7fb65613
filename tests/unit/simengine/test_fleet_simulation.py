"""A fleet of engines in virtual time, balanced as the load generator balances it: one replica is the single
engine exactly, round-robin alternates, least-outstanding spreads by what is in flight, and the fleet's SLO
capacity (the truth `serve-bench validate` is checked against) is above the linear N × one replica's: each
replica sees every N-th arrival of the Poisson stream, which is smoother than a Poisson stream of its own."""

from __future__ import annotations

import pytest

from serve_bench.simengine.params import EngineParams
from serve_bench.simengine.simulate import open_loop, open_loop_fleet
from serve_bench.simengine.truth import open_loop_capacity_truth

pytestmark = pytest.mark.unit

ENGINE = EngineParams(step_ms=20, per_seq_ms=2, max_num_seqs=4)
SHAPE = dict(requests=400, prompt_tokens=8, output_tokens=8)


def test_a_fleet_of_one_is_the_engine():
    one = open_loop(ENGINE, rate_rps=12, seed=3, **SHAPE)
    fleet = open_loop_fleet(ENGINE, replicas=1, rate_rps=12, seed=3, **SHAPE)
    assert [r.chunk_times_s for r in fleet] == [r.chunk_times_s for r in one]
    assert {r.endpoint for r in fleet} == {"sim-0"}


def test_round_robin_alternates_and_least_outstanding_spreads_evenly_between_equals():
    rr = open_loop_fleet(ENGINE, replicas=2, rate_rps=20, policy="round-robin", **SHAPE)
    assert [r.endpoint for r in rr[:6]] == ["sim-0", "sim-1"] * 3
    lo = open_loop_fleet(ENGINE, replicas=2, rate_rps=20, **SHAPE)
    counts = [sum(r.endpoint == f"sim-{i}" for r in lo) for i in range(2)]
    assert sum(counts) == 400 and abs(counts[0] - counts[1]) < 40


def test_the_fleets_capacity_truth_is_found_by_bisection_and_beats_linear_scaling():
    kw = dict(slos_ms={"ttft_ms": 300.0}, percentile=90.0, min_attainment=0.9, prompt_tokens=8, output_tokens=8,
              requests=4000, tolerance=5e-3)
    one = open_loop_capacity_truth(ENGINE, replicas=1, low_rps=8, high_rps=18, **kw)
    two = open_loop_capacity_truth(ENGINE, replicas=2, low_rps=20, high_rps=40, **kw)
    assert 12 < one["rate_rps"] < 16 and one["binding"] == "p90 ttft_ms"
    assert two["rate_rps"] > 2 * one["rate_rps"]  # smoother arrivals at each replica
    with pytest.raises(ValueError, match="not between"):
        open_loop_capacity_truth(ENGINE, replicas=1, low_rps=16, high_rps=18, **kw)
