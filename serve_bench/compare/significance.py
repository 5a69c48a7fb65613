"""Is the candidate's figure different from the baseline's, and by how much: the ratio candidate / baseline
with its interval and a two-sided p-value, by one of three methods, each saying what noise it covers.

- ``welch``: two or more trials a side. Welch's unequal-variance t-test on the trials' values (scipy), and
  the t interval of the difference in means divided by the baseline's mean. It covers run-to-run noise
  (the host, the server's state, the order), which is the noise a verdict must survive.
- ``bootstrap``: one trial a side. Each side's requests are redrawn in blocks (:mod:`report.resample`);
  the ratio's interval is the percentile interval of the draws' ratios, the p-value a Wald test on the log
  ratio with the draws' standard error (a percentile p-value could never fall below 1 / resamples, which a
  correction for many tests needs). It covers the sampling noise of the requests within the stages only:
  one run cannot tell how far a second would move.
- ``z``: an accuracy from one evaluation a side, with the standard errors lm-eval reports.

Where there are many tests, the gate reads Holm's step-down adjustment of their p-values (family-wise
error at α), so that a comparison of 100 figures does not call five of them regressions by chance.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

WELCH, BOOTSTRAP, Z, NONE = "welch", "bootstrap", "z", "none"


@dataclass
class Test:
    method: str
    ratio: float | None  # candidate / baseline
    ci: tuple[float, float] | None  # of the ratio
    p: float | None  # two-sided, H0: the same
    untested: str | None = None  # why there is no test

    @classmethod
    def none(cls, why: str, ratio: float | None = None) -> Test:
        return cls(NONE, ratio, None, None, why)


def _ratio(candidate: float, baseline: float) -> float | None:
    return candidate / baseline if baseline else None


def welch(baseline: Sequence[float], candidate: Sequence[float], confidence: float = 0.95) -> Test:
    b, c = np.asarray(baseline, float), np.asarray(candidate, float)
    mb, mc = float(b.mean()), float(c.mean())
    ratio = _ratio(mc, mb)
    if b.size < 2 or c.size < 2:
        return Test.none("Welch's test wants two or more trials a side", ratio)
    if not mb:
        return Test.none("the baseline's mean is 0: no ratio")
    vb, vc = b.var(ddof=1) / b.size, c.var(ddof=1) / c.size
    if math.sqrt(vb + vc) <= 1e-9 * max(abs(mb), abs(mc)):  # identical trials on both sides: no spread to test
        return Test(WELCH, ratio, (ratio, ratio), 1.0 if mb == mc else 0.0)  # type: ignore[arg-type]
    res = stats.ttest_ind(c, b, equal_var=False)
    df = (vb + vc) ** 2 / (vb ** 2 / (b.size - 1) + vc ** 2 / (c.size - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * math.sqrt(vb + vc)
    diff = mc - mb
    return Test(WELCH, ratio, ((mb + diff - half) / mb, (mb + diff + half) / mb), float(res.pvalue))


def bootstrap(baseline_point: float, candidate_point: float, baseline_draws: np.ndarray,
              candidate_draws: np.ndarray, confidence: float = 0.95) -> Test:
    ratio = _ratio(candidate_point, baseline_point)
    b, c = np.asarray(baseline_draws, float), np.asarray(candidate_draws, float)
    ok = np.isfinite(b) & np.isfinite(c) & (b > 0) & (c > 0)
    if ratio is None or ratio <= 0 or ok.sum() < 20:
        return Test.none("too few usable resamples (a figure of 0 or none)", ratio)
    logs = np.log(c[ok]) - np.log(b[ok])
    tail = (1 - confidence) / 2
    lo, hi = np.exp(np.quantile(logs, [tail, 1 - tail]))
    se = float(logs.std(ddof=1))
    if se == 0:
        return Test(BOOTSTRAP, ratio, (float(lo), float(hi)), 1.0 if ratio == 1 else 0.0)
    p = float(2 * stats.norm.sf(abs(math.log(ratio)) / se))
    return Test(BOOTSTRAP, ratio, (float(lo), float(hi)), p)


def z_test(baseline: float, baseline_se: float | None, candidate: float, candidate_se: float | None,
           confidence: float = 0.95) -> Test:
    ratio = _ratio(candidate, baseline)
    if baseline_se is None or candidate_se is None:
        return Test.none("no standard error recorded", ratio)
    se = math.hypot(baseline_se, candidate_se)
    if not se or not baseline:
        return Test.none("a standard error of 0", ratio)
    half = float(stats.norm.ppf(0.5 + confidence / 2)) * se
    diff = candidate - baseline
    return Test(Z, ratio, ((baseline + diff - half) / baseline, (baseline + diff + half) / baseline),
                float(2 * stats.norm.sf(abs(diff) / se)))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error), in the order given. Written here: scipy has
    only Benjamini–Hochberg (``false_discovery_control``), and statsmodels is a large dependency for this."""
    p = np.asarray(pvalues, float)
    m = p.size
    if not m:
        return []
    order = np.argsort(p)
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adjusted
    return [float(x) for x in out]
