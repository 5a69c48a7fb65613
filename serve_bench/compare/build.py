"""Two sides in, one :class:`Comparison` out: every headline figure aligned by checkpoint, profile and stage,
the candidate's ratio to the baseline with its interval, a significance test saying which, and the gate's
verdict. Prints nothing; bad input raises :class:`~serve_bench.errors.ConfigError`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from serve_bench.compare import significance as sig
from serve_bench.compare.figures import (
    ACCURACY_UNIT,
    CAPACITY_FIGURES,
    STAGE_FIGURES,
    Figure,
    StageFigures,
    stage_figures,
)
from serve_bench.compare.sides import Side, matching_profiles, mismatches, read_side
from serve_bench.errors import ConfigError
from serve_bench.report.accuracy import read_accuracy
from serve_bench.report.analysis import CheckpointReport, analyse, resolve_slos
from serve_bench.report.build import settings_for
from serve_bench.report.capacity import replicas_for
from serve_bench.report.inputs import RunData, StageData
from serve_bench.study import ReportSettings

DEFAULT_ALPHA = 0.05
DEFAULT_RESAMPLES = 1000


@dataclass
class Row:
    """One figure of one checkpoint (and stage, for the per-stage figures), baseline against candidate."""

    checkpoint: str
    profile: str | None
    stage: str | None  # None: a figure of the whole checkpoint (capacity, replicas, accuracy)
    key: str
    title: str
    unit: str
    higher_is_better: bool
    baseline: float | None  # the mean over the side's trials
    candidate: float | None
    baseline_trials: list[float | None]
    candidate_trials: list[float | None]
    test: sig.Test
    p_adjusted: float | None = None  # Holm, over every tested row of the comparison
    significant: bool = False
    regression: bool = False  # significantly worse by more than the gate's threshold
    note: str = ""

    @property
    def worse_by(self) -> float | None:
        """How much worse the candidate is, as a fraction of the baseline (negative: better)."""
        r = self.test.ratio
        if r is None:
            return None
        return (1.0 - r) if self.higher_is_better else (r - 1.0)

    @property
    def direction(self) -> str:
        if self.test.method == sig.NONE:
            return "untested"
        if not self.significant:
            return "same"
        return "worse" if (self.worse_by or 0.0) > 0 else "better"


@dataclass
class Comparison:
    generated_utc: str
    baseline: dict[str, Any]  # given path, trials, runs
    candidate: dict[str, Any]
    method: str  # how the rows were tested, in words
    alpha: float
    max_regression_pct: float | None
    slo: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was left out or forced, and why

    @property
    def regressions(self) -> list[Row]:
        return [r for r in self.rows if r.regression]

    @property
    def significant(self) -> list[Row]:
        return [r for r in self.rows if r.significant]


def compare(baseline: Path, candidate: Path, *, alpha: float = DEFAULT_ALPHA,
            max_regression_pct: float | None = None, force: bool = False, resamples: int = DEFAULT_RESAMPLES,
            seed: int = 0, confidence: float = 0.95) -> Comparison:
    """Compare ``candidate`` against ``baseline`` (run directories, directories of trial runs, or report
    directories). Hardware or model differences are refused unless ``force``; load profiles defined
    differently are left out, and the comparison says so."""
    if not 0 < alpha < 1:
        raise ConfigError(f"--alpha {alpha}: must lie between 0 and 1, e.g. 0.05")
    if max_regression_pct is not None and not 0 <= max_regression_pct < 100:
        raise ConfigError(f"--max-regression {max_regression_pct}: a percentage from 0 to under 100, e.g. 5")
    base, cand = read_side(baseline, "baseline"), read_side(candidate, "candidate")
    notes: list[str] = []
    different = mismatches(base, cand)
    if different and not force:
        raise ConfigError("the runs are not comparable:\n  " + "\n  ".join(different),
                          hint="compare runs of the same hardware and model, or pass --force to compare anyway "
                               "(the comparison then says what differs)")
    notes += [f"compared although they differ (--force): {d}" for d in different]
    profiles, left_out = matching_profiles(base, cand)
    notes += left_out
    if not profiles:
        raise ConfigError("the two sides share no load profile run alike: nothing to compare",
                          hint="run the same study (the same load profiles) on both sides")
    settings, _ = resolve_slos(settings_for([base.runs[0].path]), base.runs[:1])
    if cand.slo and base.slo and cand.slo.get("slo_ms") != base.slo.get("slo_ms"):
        notes.append(f"both sides are judged by the baseline's SLO {base.slo.get('slo_ms')}; the candidate's run "
                     f"had {cand.slo.get('slo_ms')}")
    settings = settings.model_copy(update={"profile": settings.profile if settings.profile in profiles else None})
    welch = base.trials >= 2 and cand.trials >= 2
    if welch:
        method = (f"Welch's t-test across trials ({base.trials} baseline, {cand.trials} candidate): covers "
                  "run-to-run noise")
    else:
        method = ("block bootstrap of each stage's requests (one trial a side): covers the sampling noise of the "
                  "requests within a stage only, not how far a second run would move")
        if base.trials > 1 or cand.trials > 1:
            notes.append(f"the baseline has {base.trials} trial(s), the candidate {cand.trials}: Welch's test "
                         "wants two or more a side, so only the first trial of each is compared")
    result = Comparison(generated_utc=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                        baseline=_side_info(base), candidate=_side_info(cand), method=method, alpha=alpha,
                        max_regression_pct=max_regression_pct,
                        slo={"slo_ms": dict(settings.slo_ms), "percentile": settings.slo_percentile,
                             "min_attainment": settings.min_attainment}, notes=notes)
    pairs, unpaired = _checkpoint_pairs(base, cand)
    result.notes += unpaired
    rng = np.random.default_rng(seed)
    # across trials only the point capacities are tested: the least bootstrap the report allows will do
    cap_settings = settings.model_copy(update={"bootstrap_resamples": 50 if welch else resamples})
    b_reports, c_reports = _capacity(base, cap_settings, welch), _capacity(cand, cap_settings, welch)
    for b_name, c_name in pairs:
        label = b_name if b_name == c_name else f"{b_name} / {c_name}"
        result.rows += _stage_rows(base, cand, b_name, c_name, label, profiles, settings, welch, resamples, rng,
                                   confidence, result.notes)
        result.rows += _capacity_rows(b_reports, c_reports, b_name, c_name, label, settings, welch, confidence)
        result.rows += _accuracy_rows(base, cand, b_name, c_name, label, confidence)
    _judge(result, alpha, max_regression_pct)
    return result


def _side_info(side: Side) -> dict[str, Any]:
    return {"given": str(side.given), "trials": side.trials, "labels": side.labels,
            "runs": [str(r.path) for r in side.runs], "hardware": side.hardware}


def _checkpoint_pairs(base: Side, cand: Side) -> tuple[list[tuple[str, str]], list[str]]:
    """Checkpoints aligned by name; two single-checkpoint runs of differently named models (two servers at
    ``--url``) are aligned with each other, and the notes say so."""
    b = [ck.name for ck in base.runs[0].checkpoints]
    c = [ck.name for ck in cand.runs[0].checkpoints]
    if len(b) == 1 and len(c) == 1 and b != c:
        return [(b[0], c[0])], [f"checkpoint {b[0]!r} of the baseline is compared with {c[0]!r} of the candidate "
                                "(one checkpoint a side)"]
    pairs = [(n, n) for n in b if n in c]
    notes = [f"checkpoint {n!r}: in the {'baseline' if n in b else 'candidate'} only, not compared"
             for n in sorted(set(b) ^ set(c))]
    if not pairs:
        raise ConfigError(f"the sides share no checkpoint (baseline: {', '.join(b)}; candidate: {', '.join(c)})",
                          hint="compare runs of the same study")
    return pairs, notes


def _stages(run: RunData, checkpoint: str, profiles: Sequence[str]) -> dict[tuple[str | None, str], StageData]:
    ck = next((c for c in run.checkpoints if c.name == checkpoint), None)
    return {(s.profile, s.name): s for s in (ck.stages if ck else []) if s.profile in profiles}


def _stage_rows(base: Side, cand: Side, b_name: str, c_name: str, label: str, profiles: Sequence[str],
                settings: ReportSettings, welch: bool, resamples: int, rng: np.random.Generator, confidence: float,
                notes: list[str]) -> list[Row]:
    slos = dict(settings.slo_ms)
    b_trials = [_stages(r, b_name, profiles) for r in base.runs]
    c_trials = [_stages(r, c_name, profiles) for r in cand.runs]
    keys = [k for k in b_trials[0] if all(k in t for t in b_trials + c_trials)]
    missing = sorted({k for t in b_trials + c_trials for k in t} - set(keys), key=str)
    if missing:
        notes.append(f"{label}: stages not in every trial of both sides, not compared: "
                     + ", ".join(f"{p}/{s}" for p, s in missing))
    rows = []
    for key in keys:
        flagged = [s for s in (t[key] for t in b_trials + c_trials) if s.flags]
        if flagged:
            notes.append(f"{label}: stage {key[0]}/{key[1]} left out: flagged ({', '.join(flagged[0].flags)}) in "
                         f"{len(flagged)} trial(s)")
            continue
        draws = resamples if not welch else 0
        b_figs = [stage_figures(t[key], slos, draws, rng if draws else None) for t in b_trials[:None if welch else 1]]
        c_figs = [stage_figures(t[key], slos, draws, rng if draws else None) for t in c_trials[:None if welch else 1]]
        for f in STAGE_FIGURES:
            rows.append(_stage_row(f, label, key, b_figs, c_figs, welch, confidence))
    return rows


def _stage_row(f: Figure, label: str, key: tuple[str | None, str], b: list[StageFigures], c: list[StageFigures],
               welch: bool, confidence: float) -> Row:
    bv, cv = [x.values.get(f.key) for x in b], [x.values.get(f.key) for x in c]
    too_few = next((x.too_few[f.key] for x in b + c if f.key in x.too_few), "")
    if welch:
        test = _welch(bv, cv, confidence)
    elif f.key in b[0].draws and f.key in c[0].draws and bv[0] is not None and cv[0] is not None:
        test = sig.bootstrap(bv[0], cv[0], b[0].draws[f.key], c[0].draws[f.key], confidence)
    else:
        test = sig.Test.none("not measured" if bv[0] is None or cv[0] is None else
                             "no resample of this figure: one trial a side cannot test it", _ratio(bv, cv))
    return Row(label, key[0], key[1], f.key, f.title, f.unit, f.higher_is_better, _mean(bv), _mean(cv), bv, cv,
               test, note=f"too few samples: {too_few}" if too_few else "")


def _capacity(side: Side, settings: ReportSettings, every_trial: bool) -> list[dict[str, CheckpointReport]]:
    """Per trial (the first only, unless ``every_trial``), checkpoint name -> its capacity report (judged by
    ``settings``: the baseline's SLO)."""
    runs = side.runs if every_trial else side.runs[:1]
    return [{c.name: c for c in analyse([run], settings).checkpoints} for run in runs]


def _capacity_rows(b_reports: list[dict[str, CheckpointReport]], c_reports: list[dict[str, CheckpointReport]],
                   b_name: str, c_name: str, label: str, settings: ReportSettings, welch: bool,
                   confidence: float) -> list[Row]:
    cap = settings.capacity
    rows = []
    for f in CAPACITY_FIGURES:
        bv = [_capacity_value(r.get(b_name), f.key) for r in b_reports]
        cv = [_capacity_value(r.get(c_name), f.key) for r in c_reports]
        b_ck, c_ck = b_reports[0].get(b_name), c_reports[0].get(c_name)
        bounds = [x for x in (b_ck, c_ck) if x is not None and x.slo is not None and x.slo.status != "within"]
        if welch:
            test = _welch(bv, cv, confidence)
        else:
            bd, cd = _capacity_draws(b_ck, f.key, cap), _capacity_draws(c_ck, f.key, cap)
            test = (sig.bootstrap(bv[0], cv[0], bd, cd, confidence)  # type: ignore[arg-type]
                    if bd is not None and cd is not None and bv[0] is not None and cv[0] is not None
                    else sig.Test.none("no capacity on one side", _ratio(bv, cv)))
        note = ""
        if bounds:
            note = "; ".join(f"{x.label}: capacity is a bound, not a crossing ({x.slo.status} the tested "  # type: ignore[union-attr]
                             "loads)" for x in bounds)
        if f.key == "replicas":
            note = (note + "; " if note else "") + f"for {cap.rps:g} req/s at {cap.headroom:.0%} headroom"
        rows.append(Row(label, None, None, f.key, f.title, f.unit, f.higher_is_better, _mean(bv), _mean(cv), bv, cv,
                        test, note=note))
    return rows


def _capacity_value(ck: CheckpointReport | None, key: str) -> float | None:
    if ck is None or ck.slo is None:
        return None
    if key == "capacity_rate_rps":
        return ck.slo.rate_rps
    if key == "capacity_load":
        return ck.slo.load
    return float(ck.plan.replicas) if ck.plan is not None and ck.plan.replicas is not None else None


def _capacity_draws(ck: CheckpointReport | None, key: str, cap: Any) -> np.ndarray | None:
    draws = ck.slo.draws if ck is not None and ck.slo is not None else None
    if not draws:
        return None
    if key == "capacity_load":
        return draws["load"]
    rate = draws["rate_rps"]
    if key == "capacity_rate_rps":
        return rate
    return np.array([replicas_for(cap.rps, r, cap.headroom) or np.nan if np.isfinite(r) else np.nan for r in rate],
                    dtype=float)


def _accuracy_rows(base: Side, cand: Side, b_name: str, c_name: str, label: str, confidence: float) -> list[Row]:
    def scores(side: Side, name: str) -> dict[str, Any]:
        ck = next((c for c in side.runs[0].checkpoints if c.name == name), None)
        return (read_accuracy(ck.path) or {}) if ck else {}

    b, c = scores(base, b_name), scores(cand, c_name)
    rows = []
    for task in sorted(set(b) & set(c)):
        x, y = b[task], c[task]
        test = sig.z_test(x.value, x.stderr, y.value, y.stderr, confidence)
        rows.append(Row(label, None, None, f"accuracy {task}", f"{task} ({x.metric})", ACCURACY_UNIT,
                        x.higher_is_better, x.value, y.value, [x.value], [y.value], test,
                        note="one evaluation a side (the first trial's), lm-eval's standard errors"))
    return rows


def _welch(b: list[float | None], c: list[float | None], confidence: float) -> sig.Test:
    if any(v is None for v in b + c):
        return sig.Test.none("not measured in every trial", _ratio(b, c))
    return sig.welch(b, c, confidence)  # type: ignore[arg-type]


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def _ratio(b: list[float | None], c: list[float | None]) -> float | None:
    mb, mc = _mean(b), _mean(c)
    return mc / mb if mb and mc is not None else None


def _judge(result: Comparison, alpha: float, max_regression_pct: float | None) -> None:
    """Holm's adjustment over every tested row; significant at ``alpha`` after it; a regression is a significant
    change for the worse by more than ``max_regression_pct`` (any, when the gate is not set)."""
    tested = [r for r in result.rows if r.test.p is not None]
    for row, p in zip(tested, sig.holm([r.test.p for r in tested])):  # type: ignore[misc]
        row.p_adjusted = p
        row.significant = p < alpha
        threshold = (max_regression_pct or 0.0) / 100.0
        row.regression = row.significant and (row.worse_by or 0.0) > threshold
