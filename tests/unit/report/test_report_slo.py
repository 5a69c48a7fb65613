"""The highest load within the SLOs on stages with known latencies: the interpolated boundary, the
binding constraint, the bootstrap interval covering the truth, and the censored cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from report_fixtures import stage

from serve_bench.report.slo import ABOVE, ATTAINMENT, BELOW, WITHIN, bootstrap_percentile, slo_capacity

pytestmark = pytest.mark.unit


def curve(ttft_of_load, loads=(1, 2, 4, 8, 16), n=40, rng=None, **kw):
    out = []
    for load in loads:
        base = ttft_of_load(load)
        ttfts = base * rng.exponential(1.0, n) if rng is not None else [base] * n
        out.append(stage(f"c{load}", load, list(ttfts), **kw))
    return out


def test_boundary_is_interpolated_between_the_last_stage_that_met_the_slo_and_the_first_that_did_not():
    stages = curve(lambda load: 0.1 * load)  # every request's TTFT is 100 ms × load: p99 too
    cap = slo_capacity(stages, {"ttft_ms": 500}, min_attainment=None, resamples=200)
    # 400 ms at 4 users meets 500 ms, 800 ms at 8 does not: 4 + (500 − 400) / (800 − 400) × 4 = 5 users
    assert cap.status == WITHIN and cap.binding == "p99 ttft_ms"
    assert cap.load == pytest.approx(5.0)
    r4, r8 = stages[2].request_rate_rps, stages[3].request_rate_rps
    assert cap.rate_rps == pytest.approx(r4 + 0.25 * (r8 - r4))
    [c] = cap.constraints
    assert c.values == pytest.approx([100, 200, 400, 800, 1600]) and c.boundary_load == pytest.approx(5.0)
    assert cap.samples == [40] * 5 and cap.stages == ["c1", "c2", "c4", "c8", "c16"]
    # identical requests: nothing to resample, the interval is the point
    assert cap.ci_load == pytest.approx((5.0, 5.0))


def test_the_tighter_constraint_binds():
    # TTFT 10 ms × load, TPOT 20 ms × load
    stages = [stage(f"c{load}", load, [0.01 * load] * 40, tpot_s=0.02 * load) for load in (1, 2, 4, 8, 16)]
    cap = slo_capacity(stages, {"ttft_ms": 500, "tpot_ms": 100}, min_attainment=None, resamples=100)
    # TTFT 10 ms × load never reaches 500 ms; TPOT 20 ms × load crosses 100 ms at 5 users
    assert cap.binding == "p99 tpot_ms" and cap.load == pytest.approx(5.0)
    by_name = {c.name: c for c in cap.constraints}
    assert by_name["p99 ttft_ms"].status == ABOVE and by_name["p99 tpot_ms"].status == WITHIN


def test_attainment_counts_failed_requests_as_not_good():
    good = [stage("c1", 1, [0.1] * 20), stage("c2", 2, [0.1] * 20, failed=5)]
    cap = slo_capacity(good, {"ttft_ms": 500}, min_attainment=0.95, resamples=100)
    att = next(c for c in cap.constraints if c.name == ATTAINMENT)
    assert att.values == pytest.approx([1.0, 20 / 25])
    assert cap.binding == ATTAINMENT and cap.status == WITHIN
    assert cap.load == pytest.approx(1 + (0.95 - 1.0) / (0.8 - 1.0))  # 1.25 users


def test_every_stage_within_is_a_lower_bound_and_the_lowest_missing_is_no_answer():
    fast = curve(lambda load: 0.01)
    cap = slo_capacity(fast, {"ttft_ms": 500}, resamples=100)
    assert cap.status == ABOVE and cap.load == 16 and cap.binding is None
    assert cap.ci_censored == "upper" and any("closest" in n for n in cap.notes)
    slow = curve(lambda load: 2.0)
    cap = slo_capacity(slow, {"ttft_ms": 500}, resamples=100)
    assert cap.status == BELOW and cap.load is None and cap.rate_rps is None and cap.ci_censored == "lower"


def test_bootstrap_interval_covers_the_true_boundary():
    # TTFT ~ exponential with mean 50 ms × load: true p99 = 50 ms × load × ln(100), linear in load, so the
    # boundary for a 1000 ms limit is exactly 1000 / (50 ln 100) = 4.34 users
    truth = 1000 / (50 * math.log(100))
    cap = slo_capacity(curve(lambda load: 0.05 * load, loads=(1, 2, 3, 4, 5, 6, 8), n=1500,
                             rng=np.random.default_rng(7)),
                       {"ttft_ms": 1000}, min_attainment=None, resamples=1000, seed=0)
    lo, hi = cap.ci_load
    assert lo < truth < hi and hi - lo < 1.5
    assert cap.load == pytest.approx(truth, abs=0.5)
    again = slo_capacity(curve(lambda load: 0.05 * load, loads=(1, 2, 3, 4, 5, 6, 8), n=1500,
                               rng=np.random.default_rng(7)),
                         {"ttft_ms": 1000}, min_attainment=None, resamples=1000, seed=0)
    assert again.ci_load == cap.ci_load  # fixed seed: the same interval


def test_fast_bootstrap_percentile_matches_resampling_the_requests():
    rng = np.random.default_rng(1)
    values = rng.lognormal(0, 1, 300)
    fast = bootstrap_percentile(values, 99, 20_000, np.random.default_rng(2))
    slow = np.percentile(values[np.random.default_rng(3).integers(0, 300, (20_000, 300))], 99, axis=1)
    assert np.quantile(fast, [0.025, 0.5, 0.975]) == pytest.approx(np.quantile(slow, [0.025, 0.5, 0.975]), rel=0.05)
    fast = bootstrap_percentile(values, 50, 20_000, np.random.default_rng(2))
    slow = np.percentile(values[np.random.default_rng(3).integers(0, 300, (20_000, 300))], 50, axis=1)
    assert np.quantile(fast, [0.025, 0.5, 0.975]) == pytest.approx(np.quantile(slow, [0.025, 0.5, 0.975]), rel=0.05)


def test_flagged_stages_stay_off_the_curve():
    ok = stage("c1", 1, [0.1] * 10)
    bad = stage("c2", 2, [5.0] * 10, generator_saturated=True)
    assert ok.usable and not bad.usable and bad.excluded_because == "load generator saturated"


def test_open_loop_stages_are_on_a_rate_axis_and_latency_counts_from_the_intended_send():
    from report_fixtures import records

    from serve_bench.report.inputs import stage_data

    curve_ = []
    for rate in (1.0, 2.0, 4.0):
        recs = records(f"r{rate:g}", 4, [0.1] * 20)
        for r in recs:  # each request left 50 ms × rate after its scheduled time
            r.intended_send_s = r.send_s - 0.05 * rate
        res = {"stage": f"r{rate:g}", "profile": "p", "index": 1, "kind": "rate", "warmup_end_s": None,
               "target": {"rate_rps": rate, "arrivals": "poisson"}, "started_s": 0.0, "ended_s": 1.0}
        curve_.append(stage_data(res, recs))
    assert [s.load_axis for s in curve_] == ["rate"] * 3 and curve_[0].load_text == "1 req/s poisson"
    cap = slo_capacity(curve_, {"ttft_ms": 250}, min_attainment=None, resamples=100)
    # TTFT from the intended send: 100 ms + 50 ms × rate = 150, 200, 300 ms: 250 ms is crossed at 3 req/s
    assert cap.axis == "rate" and cap.load == pytest.approx(3.0)
    ramp = stage_data({"stage": "ramp", "kind": "ramp", "target": {"start_users": 1, "end_users": 8}},
                      records("ramp", 2, [0.1] * 4))
    assert not ramp.usable and ramp.excluded_because == "no single load level (a ramp)"
