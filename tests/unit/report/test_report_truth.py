"""The report's capacity arithmetic against the known-capacity engine's exact truth, in virtual time: stages
simulated with clients of no delay of their own, so any error is the report's own (its interpolation, its
rate accounting, its replica count)."""

from __future__ import annotations

import pytest
from report_fixtures import stage_file

from serve_bench.report.capacity import replicas_for
from serve_bench.report.inputs import stage_data
from serve_bench.report.slo import slo_capacity
from serve_bench.simengine.params import EngineParams
from serve_bench.simengine.simulate import closed_loop
from serve_bench.simengine.truth import capacity_truth

pytestmark = pytest.mark.unit


def ladder(params: EngineParams, users: tuple[int, ...], prompt: int, requests: int = 400) -> list:
    out = []
    for n in users:
        recs = closed_loop(params, users=n, requests=requests, prompt_tokens=prompt, output_tokens=32)
        out.append(stage_data(stage_file(stage=f"c{n}", profile="sim", index=n, target={"users": n}), recs))
    return out


@pytest.mark.parametrize("engine, slos, prompt, users", [
    (EngineParams(step_ms=10, per_seq_ms=1), {"tpot_ms": 40.0}, 64, (8, 16, 24, 32, 40, 48)),
    (EngineParams(step_ms=10, per_seq_ms=1, per_prefill_token_ms=0.02), {"ttft_ms": 250.0, "tpot_ms": 40.0}, 1024,
     (4, 8, 12, 16, 20, 24)),
])
def test_the_reports_capacity_and_replicas_match_the_engines_truth(engine, slos, prompt, users):
    truth = capacity_truth(engine, slos_ms=slos, prompt_tokens=prompt, output_tokens=32, max_users=max(users),
                           requests_per_point=800)
    cap = slo_capacity(ladder(engine, users, prompt), slos, resamples=200)
    assert cap.binding == truth["binding"]
    assert cap.load == pytest.approx(truth["load"], rel=0.01)
    assert cap.rate_rps == pytest.approx(truth["rate_rps"], rel=0.01)  # Little's law, not a chord of the rates
    assert replicas_for(100, cap.rate_rps, 0.2) == replicas_for(100, truth["rate_rps"], 0.2)
    lo, hi = cap.ci_load  # it holds the truth (to a thousandth of a user: with no noise, point and truth meet)
    assert lo - 1e-3 <= truth["load"] <= hi + 1e-3 and lo < hi
