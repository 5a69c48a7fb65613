"""The headline figures a comparison tests, and how each is read from a stage's requests.

Per stage: throughput (output tokens and requests per second over the steady window), goodput (requests
per second meeting the run's SLO), TTFT and TPOT at p50 and p99, the pooled inter-token gaps at p99,
E2EL at p99 and energy per output token. Each is computed from the stage's raw records the same way for
the point value and for every bootstrap draw (one draw of the requests feeds them all, as in the
capacity's interval). Per checkpoint: the capacity at the SLO (load and rate per replica), the replicas
for the target traffic, and each evaluated task's accuracy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from serve_bench.measure.metrics import slo_scores
from serve_bench.report.inputs import StageData
from serve_bench.report.resample import draw_counts, evaluate_draws, stage_sample
from serve_bench.report.slo import samples_needed


@dataclass(frozen=True)
class Figure:
    key: str
    title: str
    unit: str
    higher_is_better: bool
    percentile: float | None = None  # a latency percentile: its samples are checked against what it wants


STAGE_FIGURES = (
    Figure("output_throughput", "output throughput", "tok/s", True),
    Figure("request_throughput", "request throughput", "req/s", True),
    Figure("goodput", "goodput", "req/s", True),
    Figure("p50 ttft_ms", "TTFT p50", "ms", False, 50),
    Figure("p99 ttft_ms", "TTFT p99", "ms", False, 99),
    Figure("p50 tpot_ms", "TPOT p50", "ms", False, 50),
    Figure("p99 tpot_ms", "TPOT p99", "ms", False, 99),
    Figure("p99 itl_ms", "ITL p99", "ms", False, 99),
    Figure("p99 e2el_ms", "E2EL p99", "ms", False, 99),
    Figure("energy_per_output_token_j", "energy per output token", "J", False),
)
CAPACITY_FIGURES = (
    Figure("capacity_rate_rps", "capacity (rate per replica at the SLO)", "req/s", True),
    Figure("capacity_load", "capacity (highest load within the SLO)", "load", True),
    Figure("replicas", "replicas for the target traffic", "", False),
)
ACCURACY_UNIT = "score"
_LATENCIES = {f.key: f for f in STAGE_FIGURES if f.percentile is not None}


@dataclass
class StageFigures:
    """One stage's figures: the point values, the bootstrap draws (rows: resamples) where a figure has them,
    and why a figure is not to be tested from this one stage (too few samples for its percentile)."""

    values: dict[str, float | None]
    draws: dict[str, np.ndarray]
    too_few: dict[str, str]


def stage_figures(stage: StageData, slos_ms: Mapping[str, float], resamples: int,
                  rng: np.random.Generator | None) -> StageFigures:
    """The stage's figures, and (``rng`` given) ``resamples`` block-bootstrap draws of each but energy."""
    names = {key: key.split(" ", 1)[1] for key in _LATENCIES}
    quantiles = {key: f.percentile / 100.0 for key, f in _LATENCIES.items()}  # type: ignore[operator]
    sample = stage_sample(stage, names, slos_ms)
    a = stage.arrays
    good = (slo_scores(a, slos_ms) <= 1.0).astype(float) if a and slos_ms else np.ones(sample.done)
    out_tokens = a["out"] if a else np.empty(0)

    def evaluate(counts: np.ndarray) -> dict[str, np.ndarray]:
        values, rate = evaluate_draws(sample, counts, quantiles, dict.fromkeys(names, False), None)
        c = counts[:, :sample.done].astype(float)
        served = c @ sample.share
        with np.errstate(invalid="ignore", divide="ignore"):
            tokens_per_request = (c @ (sample.share * out_tokens)) / served
            good_share = (c @ good) / counts.sum(axis=1)
        return {"output_throughput": rate * tokens_per_request, "request_throughput": rate,
                "goodput": rate * good_share, **values}

    point = {k: _finite(v[0]) for k, v in evaluate(np.ones((1, sample.attempted), dtype=np.int64)).items()}
    point["energy_per_output_token_j"] = stage.energy_per_output_token_j
    draws = evaluate(draw_counts(sample, resamples, rng)) if rng is not None and sample.attempted else {}
    too_few = {}
    for key, f in _LATENCIES.items():
        worth, wanted = sample.effective[key], samples_needed(f.percentile)  # type: ignore[arg-type]
        if worth < wanted:
            too_few[key] = (f"{sample.sorted_values[key].size:,} samples worth {worth:,} independent ones; a "
                            f"p{f.percentile:g} wants about {wanted:,}")
    return StageFigures(point, draws, too_few)


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None
