"""Run-to-run statistics of a repeated run (``run --repeats N``): every headline figure's mean, standard
deviation, coefficient of variation and Student-t interval across the trials, as AIPerf reports them; the
capacity's interval with the within-trial sampling noise (each trial's bootstrap) and the between-trial noise
told apart; stages whose trials disagree beyond a stated CV flagged; and per pruned checkpoint a verdict that
says "not established" when the difference from its base lies inside the noise of the trials.

Each trial is analysed on its own (:func:`analysis.analyse`, the same method as a single run); this module
only puts the trials side by side."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import stats

from serve_bench.compare.significance import welch

if TYPE_CHECKING:  # the analysis builds this module's summary: no import at run time
    from serve_bench.report.analysis import CheckpointReport

# A figure whose trials spread by more than this coefficient of variation is flagged: the host or the server's
# state moved it between trials as much as a verdict would (a 10% difference is what the issue of verdicts that
# flip was about).
UNSTABLE_CV = 0.10
STAGE_FIGURES = (("output_throughput", "output tok/s", "tok/s"), ("request_rate_rps", "req/s", "req/s"),
                 ("p50_ttft_ms", "TTFT p50", "ms"), ("p99_ttft_ms", "TTFT p99", "ms"),
                 ("p50_tpot_ms", "TPOT p50", "ms"), ("p99_tpot_ms", "TPOT p99", "ms"),
                 ("p99_itl_ms", "ITL p99", "ms"), ("p99_e2el_ms", "E2EL p99", "ms"))
METHOD = ("across trials: mean, sample standard deviation, CV = sd / mean, and the Student-t interval "
          "mean ± t(n−1) · sd / √n; it covers run-to-run noise (the host, the server's state, the order) together "
          "with each trial's sampling noise. The capacity's interval takes the larger of the trials' variance "
          "and the mean within-trial bootstrap variance, so three agreeing trials do not shrink it below what "
          "one trial's requests can tell")


@dataclass
class Spread:
    """One figure across trials."""

    figure: str
    unit: str
    values: list[float | None]
    mean: float | None = None
    sd: float | None = None
    cv: float | None = None
    ci: tuple[float, float] | None = None
    note: str = ""

    @property
    def unstable(self) -> bool:
        return self.cv is not None and self.cv > UNSTABLE_CV


def spread(figure: str, unit: str, values: Sequence[float | None], confidence: float = 0.95,
           within_var: float | None = None) -> Spread:
    """The figure's run-to-run statistics; ``within_var``: the mean within-trial (bootstrap) variance, a
    floor for the variance the interval uses."""
    out = Spread(figure, unit, list(values))
    x = np.array([v for v in values if v is not None], dtype=float)
    if not x.size:
        out.note = "not measured"
        return out
    out.mean = float(x.mean())
    if x.size < 2:
        out.note = "one trial: no run-to-run spread"
        return out
    out.sd = float(x.std(ddof=1))
    out.cv = out.sd / abs(out.mean) if out.mean else None
    var = max(out.sd ** 2, within_var or 0.0)
    half = float(stats.t.ppf(0.5 + confidence / 2, x.size - 1)) * math.sqrt(var / x.size)
    out.ci = (out.mean - half, out.mean + half)
    if x.size < 3:
        out.note = "two trials: the t interval is very wide (t = 12.7); three or more are wanted"
    return out


@dataclass
class StageSpread:
    profile: str | None
    stage: str
    figures: list[Spread]


@dataclass
class CheckpointTrials:
    name: str
    label: str
    base: str
    is_base: bool
    capacity_rps: Spread
    load: Spread
    replicas: Spread
    noise: str  # which noise dominates the capacity's interval, in words
    stages: list[StageSpread] = field(default_factory=list)
    verdict: str | None = None


@dataclass
class TrialsSummary:
    trials: int
    runs: list[str]
    method: str
    unstable_cv: float
    checkpoints: list[CheckpointTrials]

    @property
    def verdicts(self) -> list[str]:
        return [c.verdict for c in self.checkpoints if c.verdict]


def summarize_trials(trials: Sequence[Sequence[CheckpointReport]], runs: Sequence[str], rps: float,
                     confidence: float = 0.95) -> TrialsSummary:
    """``trials``: per trial, its checkpoints as the report analysed them alone."""
    names = [c.name for c in trials[0]]
    out: list[CheckpointTrials] = []
    for name in names:
        cks = [next((c for c in t if c.name == name), None) for t in trials]
        first = next(c for c in cks if c is not None)
        rates = [c.slo.rate_rps if c is not None and c.slo is not None else None for c in cks]
        within = [_finite_var(c.slo.draws["rate_rps"]) for c in cks
                  if c is not None and c.slo is not None and c.slo.draws]
        within = [w for w in within if w is not None]
        within_var = float(np.mean(within)) if within else None
        capacity = spread("req/s per replica at the SLO", "req/s", rates, confidence, within_var)
        ck = CheckpointTrials(
            name=name, label=first.label.split(":", 1)[-1], base=first.base, is_base=first.is_base,
            capacity_rps=capacity,
            load=spread("highest load within the SLO", first.axis or "", [c.slo.load if c is not None and c.slo
                                                                          else None for c in cks], confidence),
            replicas=spread(f"replicas for {rps:g} req/s", "", [float(c.plan.replicas) if c is not None and c.plan
                                                                and c.plan.replicas is not None else None
                                                                for c in cks], confidence),
            noise=_dominant(capacity, within_var))
        ck.stages = _stage_spreads(cks, confidence)
        out.append(ck)
    by_name = {c.name: c for c in out}
    for c in out:
        base = by_name.get(c.base)
        if not c.is_base and base is not None:
            c.verdict = trials_verdict(c, base, rps, len(trials))
    return TrialsSummary(len(trials), list(runs), METHOD, UNSTABLE_CV, out)


def _finite_var(draws: np.ndarray) -> float | None:
    finite = draws[np.isfinite(draws)]
    return float(finite.var(ddof=1)) if finite.size > 1 else None


def _dominant(capacity: Spread, within_var: float | None) -> str:
    if capacity.sd is None:
        return "one trial: within-trial sampling noise only"
    between = capacity.sd ** 2
    if within_var is None:
        return "between-trial variance (no within-trial bootstrap)"
    if between > within_var:
        return (f"between-trial noise dominates (trials' variance {between:.3g} against the within-trial "
                f"bootstrap's {within_var:.3g}): the host or the server moved between trials")
    return (f"within-trial sampling noise dominates (bootstrap variance {within_var:.3g} against the trials' "
            f"{between:.3g}): more requests per stage would narrow it")


def _stage_spreads(cks: Sequence[CheckpointReport | None], confidence: float) -> list[StageSpread]:
    rows: dict[tuple[str | None, str], list[dict[str, Any] | None]] = {}
    for i, c in enumerate(cks):
        for row in c.stages if c is not None else []:
            rows.setdefault((row["profile"], row["stage"]), [None] * len(cks))[i] = row
    out = []
    for (profile, stage), per_trial in rows.items():
        figures = [spread(title, unit, [r.get(key) if r is not None and not r.get("flags") else None
                                        for r in per_trial], confidence) for key, title, unit in STAGE_FIGURES]
        flagged = sum(1 for r in per_trial if r is not None and r.get("flags"))
        if flagged:
            for f in figures:
                f.note = f"{flagged} flagged trial(s) left out" + (f"; {f.note}" if f.note else "")
        out.append(StageSpread(profile, stage, figures))
    return out


def trials_verdict(c: CheckpointTrials, base: CheckpointTrials, rps: float, n: int) -> str:
    """The pruned checkpoint against its base across the trials: capacity ratio with Welch's test, and the
    replica counts each trial gave; "not established" when the difference is within the trials' noise."""
    a = [v for v in base.capacity_rps.values if v is not None]
    b = [v for v in c.capacity_rps.values if v is not None]
    reps = (f"replicas for {rps:g} req/s by trial: {_counts(c.replicas.values)} against {base.label}'s "
            f"{_counts(base.replicas.values)}")
    if not a or not b:
        return f"{c.label}: no verdict across the trials: a capacity is missing ({reps})"
    test = welch(a, b)
    ratio = f"{test.ratio:.2f}×" if test.ratio is not None else "–"
    if test.p is None:
        return (f"{c.label}: capacity {ratio} {base.label}'s over {n} trial(s); {test.untested}: not established "
                f"from one trial ({reps})")
    ci = f" (95% CI {test.ci[0]:.2f}–{test.ci[1]:.2f})" if test.ci else ""
    if test.p >= 0.05:
        return (f"{c.label}: capacity {ratio} {base.label}'s{ci}, Welch p = {test.p:.2g} over {n} trials: the "
                f"difference is not established ({reps})")
    word = "more" if (test.ratio or 1) > 1 else "less"
    return (f"{c.label}: capacity {ratio} {base.label}'s{ci}, Welch p = {test.p:.2g} over {n} trials: "
            f"established, {word} capacity per replica ({reps})")


def _counts(values: Sequence[float | None]) -> str:
    return "/".join("–" if v is None else f"{v:.0f}" for v in values)
