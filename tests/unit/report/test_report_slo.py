"""The highest load within the SLOs on stages with known latencies: the interpolated boundary, the
binding constraint, attainment as a quantile, the joint bootstrap and its widening for small samples, and
the censored cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from report_fixtures import stage

from serve_bench.report.resample import weighted_quantile
from serve_bench.report.slo import ABOVE, ATTAINMENT, BELOW, WITHIN, slo_capacity

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
    # the rate by Little's law: requests in flight over a request's life, each a quarter of the way from 4 to 8
    (r4, n4), (r8, n8) = [(s.request_rate_rps, s.concurrency) for s in stages[2:4]]
    life = n4 / r4 + 0.25 * (n8 / r8 - n4 / r4)
    assert cap.rate_rps == pytest.approx((n4 + 0.25 * (n8 - n4)) / life)
    [c] = cap.constraints
    assert c.values == pytest.approx([100, 200, 400, 800, 1600]) and c.boundary_load == pytest.approx(5.0)
    assert cap.samples == [40] * 5 and cap.stages == ["c1", "c2", "c4", "c8", "c16"]
    # identical requests, but only 40 of them: a p99 wants 1,000, and the true p99 may lie above the largest
    # of 40 samples (0.99^40 = 67% of the time), so the interval is not the point: it reaches below the lowest load
    assert c.needed == 1000 and any("wants about 1,000" in n for n in cap.notes)
    assert cap.ci_censored == "lower" and cap.ci_load[0] < 5.0
    # a p90 wants 100 independent blocks (requests in flight together are one): 1,200 requests at 4 and 8 users
    # are 300 and 150 waves, and identical requests then leave nothing to resample
    many = slo_capacity(curve(lambda load: 0.1 * load, n=1200), {"ttft_ms": 500}, percentile=90,
                        min_attainment=None, resamples=200)
    assert many.load == pytest.approx(5.0) and many.ci_load == pytest.approx((5.0, 5.0))
    assert not any("c4" in n or "c8" in n for n in many.notes if "wants about" in n)


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
    # a failed request scores ∞: the 95th percentile of the scores is unbounded at c2, so the crossing is not
    # placed by a straight line through two shares (1.25 users) but at the last stage known to meet it
    assert cap.load == pytest.approx(1.0)


def test_attainment_is_the_quantile_of_the_requests_scores_so_equivalent_constraints_agree():
    # TPOT spread over requests: 4% of them 1.3x the rest. One limit: p99 TPOT ≤ L is the stronger constraint;
    # attainment ≥ 95% is "p95 TPOT ≤ L", met further along the curve, and must not bind before it
    loads = (8, 16, 24, 32, 40)
    stages = [stage(f"c{u}", u, [0.05] * 1000, tpot_s=[0.001 * (10 + u) * (1.3 if i % 25 == 0 else 1.0)
                                                       for i in range(1000)]) for u in loads]
    cap = slo_capacity(stages, {"tpot_ms": 40}, min_attainment=0.95, resamples=200)
    by_name = {c.name: c for c in cap.constraints}
    # p99 TPOT = 1.3 (10 + u) ms: 40 ms at u = 20.8 (linear in u, so interpolation is exact between 16 and 24)
    assert cap.binding == "p99 tpot_ms" and cap.load == pytest.approx(40 / 1.3 - 10, abs=0.05)
    # the p95 of the scores (TPOT / 40 ms): (10 + u) / 40 ≤ 1 up to u = 30
    assert by_name[ATTAINMENT].boundary_load == pytest.approx(30.0, abs=0.05)
    assert "p99 tpot_ms is crossed first" in cap.why_binding and "slo_attainment at 30" in cap.why_binding


def test_a_stage_without_samples_for_a_constraint_never_moves_its_boundary():
    # ITL is every gap between chunks: one-token answers have none. The 2-user stage has only such answers.
    stages = [stage("c1", 1, [0.1] * 1200, tpot_s=0.010), stage("c2", 2, [0.1] * 1200, output_tokens=1),
              stage("c4", 4, [0.1] * 1200, tpot_s=0.030), stage("c8", 8, [0.1] * 1200, tpot_s=0.050)]
    cap = slo_capacity(stages, {"itl_ms": 40}, min_attainment=None, resamples=100)
    [c] = cap.constraints
    assert c.values[1] is None and c.samples[1] == 0
    # 30 ms at 4 users, 50 at 8: 40 ms at 6 users; the empty stage is neither a miss nor a pass
    assert cap.load == pytest.approx(6.0) and cap.status == WITHIN


def test_one_draw_feeds_every_constraint_and_the_rate():
    rng = np.random.default_rng(3)
    stages = curve(lambda load: 0.05 * load, loads=(1, 2, 4, 8), n=1500, rng=rng)
    cap = slo_capacity(stages, {"ttft_ms": 400, "e2el_ms": 2000}, min_attainment=0.9, resamples=300)
    lo, hi = cap.ci_rate_rps
    assert lo < cap.rate_rps < hi  # the rate is resampled too: the interval has width
    again = slo_capacity(stages, {"ttft_ms": 400, "e2el_ms": 2000}, min_attainment=0.9, resamples=300)
    assert again.ci_rate_rps == cap.ci_rate_rps and again.ci_load == cap.ci_load


def test_every_stage_within_is_a_lower_bound_and_the_lowest_missing_is_no_answer():
    fast = curve(lambda load: 0.01, n=1200)  # enough requests for a p99: no widening
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


def test_weighted_quantile_of_a_draw_is_the_percentile_of_the_drawn_requests():
    rng = np.random.default_rng(1)
    values = np.sort(rng.lognormal(0, 1, 300))
    counts = rng.multinomial(300, np.full(300, 1 / 300), size=50)
    for q in (0.5, 0.9, 0.99):
        fast = weighted_quantile(values, counts, q, False, None)
        slow = [np.percentile(np.repeat(values, c), q * 100) for c in counts]
        assert fast == pytest.approx(slow, rel=1e-12)
    # widened: a draw between the K-th and (K + 1)-th values, K ~ Binomial(n, q); unbounded when K = n
    wide = weighted_quantile(values, np.ones((20_000, 300), dtype=np.int64), 0.99, True, np.random.default_rng(2))
    assert np.mean(wide > 1e200) == pytest.approx(0.99 ** 300, abs=0.01)
    finite = wide[wide < 1e200]
    assert finite.min() >= values[0] and finite.max() <= values[-1]
    # P(true p99 ≤ the 297th value) = P(K < 297): the draws below it are that share
    from scipy.stats import binom

    assert np.mean(wide <= values[296]) == pytest.approx(binom.cdf(296, 300, 0.99), abs=0.01)


def test_flagged_stages_stay_off_the_curve():
    ok = stage("c1", 1, [0.1] * 10)
    bad = stage("c2", 2, [5.0] * 10, generator_saturated=True)
    assert ok.usable and not bad.usable and bad.excluded_because == "load generator saturated"


def test_open_loop_stages_are_on_a_rate_axis_and_latency_counts_from_the_intended_send():
    from report_fixtures import records, stage_file

    from serve_bench.report.inputs import stage_data

    curve_ = []
    for rate in (1.0, 2.0, 4.0):
        recs = records(f"r{rate:g}", 4, [0.1] * 20)
        for r in recs:  # each request left 50 ms × rate after its scheduled time
            r.intended_send_s = r.send_s - 0.05 * rate
        res = {"stage": f"r{rate:g}", "profile": "p", "index": 1, "kind": "rate", "warmup_end_s": None,
               "target": {"rate_rps": rate, "arrivals": "poisson"}, "started_s": 0.0, "ended_s": 1.0}
        curve_.append(stage_data(stage_file(**res), recs))
    assert [s.load_axis for s in curve_] == ["rate"] * 3 and curve_[0].load_text == "1 req/s poisson"
    cap = slo_capacity(curve_, {"ttft_ms": 250}, min_attainment=None, resamples=100)
    # TTFT from the intended send: 100 ms + 50 ms × rate = 150, 200, 300 ms: 250 ms is crossed at 3 req/s
    assert cap.axis == "rate" and cap.load == pytest.approx(3.0)
    ramp = stage_data(stage_file(stage="ramp", kind="ramp", target={"start_users": 1, "end_users": 8}),
                      records("ramp", 2, [0.1] * 4))
    assert not ramp.usable and ramp.excluded_because == "no single load level (a ramp)"


def test_the_interval_spans_the_bend_a_straight_line_between_stages_misses():
    # TTFT 10 ms × load²: 500 ms is crossed at √50 = 7.07 users; a straight line from 4 users (160 ms) to 8
    # (640 ms) crosses at 6.83, and identical requests leave a bootstrap nothing to move
    stages = curve(lambda load: 0.01 * load * load, n=1200)
    cap = slo_capacity(stages, {"ttft_ms": 500}, percentile=90, min_attainment=None, resamples=200)
    assert cap.load == pytest.approx(4 + 340 / 480 * 4)
    [c] = cap.constraints
    assert c.curved_load == pytest.approx(50 ** 0.5)
    assert cap.ci_load == pytest.approx((cap.load, 50 ** 0.5))
    assert any("a curve through three stages crosses at 7.07" in n for n in cap.notes)
    # a straight curve: both crossings agree and nothing is said
    straight = slo_capacity(curve(lambda load: 0.1 * load, n=1200), {"ttft_ms": 500}, percentile=90,
                            min_attainment=None, resamples=200)
    assert straight.constraints[0].curved_load == pytest.approx(5.0)
    assert not any("three stages" in n for n in straight.notes)
