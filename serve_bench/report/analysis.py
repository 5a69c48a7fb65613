"""Everything the report says, computed from the runs read by :mod:`inputs`: per checkpoint its stages, the
load curve the plan rests on, the knee, the highest load within the SLOs, energy and accuracy there, the
capacity plan; per pruned checkpoint a verdict against its base. Writers only format this."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from serve_bench.measure.metrics import PERCENTILE_METHOD
from serve_bench.observe.energy import SCOPE_WORDS
from serve_bench.report import capacity
from serve_bench.report.accuracy import TaskScore, read_accuracy
from serve_bench.report.inputs import CheckpointData, RunData, StageData
from serve_bench.report.knee import Knee, find_knee
from serve_bench.report.slo import ABOVE, BELOW, SloCapacity, slo_capacity, stage_constraint_values
from serve_bench.report.trials import TrialsSummary, summarize_trials
from serve_bench.study import DEFAULT_SLO_MS, DEFAULT_SLO_SOURCE, ReportSettings, run_slos
from serve_bench.validate.found import validations

SHOWN_PERCENTILES = (50, 90, 99)
LATENCIES = ("ttft", "tpot", "itl", "e2el")


@dataclass
class CheckpointReport:
    run: str
    name: str
    label: str
    base: str
    is_base: bool
    realised_prune: float | None
    stages: list[dict[str, Any]]
    profile: str | None = None
    axis: str | None = None
    knee: Knee | None = None
    slo: SloCapacity | None = None
    energy_at_operating_point: capacity.OperatingEnergy | None = None
    energy_reason: str = "not measured"
    accuracy: dict[str, TaskScore] | None = None
    plan: capacity.Plan | None = None
    verdict: str | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class Report:
    generated_utc: str
    runs: list[dict[str, Any]]
    settings: dict[str, Any]
    slos_ms: dict[str, float]
    slo_source: str
    assumptions: list[str]
    checkpoints: list[CheckpointReport]
    percentile_method: str = PERCENTILE_METHOD
    trials: TrialsSummary | None = None  # the runs are the trials of one repeated run: run to run
    validations: list[dict[str, Any]] = field(default_factory=list)  # `serve-bench validate` of these runs' plans

    @property
    def verdicts(self) -> list[str]:
        """Across the trials where the runs are trials (each trial's own verdicts are in :attr:`trial_verdicts`)."""
        if self.trials is not None:
            return self.trials.verdicts
        return self.trial_verdicts

    @property
    def trial_verdicts(self) -> list[str]:
        return [c.verdict for c in self.checkpoints if c.verdict]


def resolve_slos(settings: ReportSettings, runs: list[RunData]) -> tuple[ReportSettings, str]:
    """The settings with the run's own SLO (limits, percentile, attainment: its manifest keeps them), except
    where the report was asked for another (a field set on ``settings``); and where the SLO came from."""
    kept = run_slos(runs[0].manifest) if runs else None
    if kept is None:  # no SLO named, in a run made before the manifest kept the resolved set
        if settings.slo_ms:
            return settings, "report settings"
        return settings.model_copy(update={"slo_ms": dict(DEFAULT_SLO_MS)}), DEFAULT_SLO_SOURCE
    own = {"slo_ms": kept.slo_ms, "slo_percentile": kept.percentile, "min_attainment": kept.min_attainment}
    changed = {k: getattr(settings, k) for k in own
               if k in settings.model_fields_set and getattr(settings, k) != own[k] and getattr(settings, k) != {}}
    resolved = settings.model_copy(update={**own, **changed})
    if not changed:
        return resolved, kept.source
    return resolved, (f"report settings; the run itself judged goodput by p{kept.percentile:g} of "
                      f"{_slo_text(kept.slo_ms)} ({kept.source})")


def _slo_text(slos: dict[str, float]) -> str:
    return ", ".join(f"{k} ≤ {v:g}" for k, v in slos.items())


def analyse(runs: list[RunData], settings: ReportSettings) -> Report:
    settings, source = resolve_slos(settings, runs)
    slos = dict(settings.slo_ms)
    many = len(runs) > 1
    checkpoints = [_checkpoint(run, ck, settings, slos, many) for run in runs for ck in run.checkpoints]
    by_key = {(c.run, c.name): c for c in checkpoints}
    for c in checkpoints:
        base = by_key.get((c.run, c.base))
        if c.is_base or base is None or c.plan is None or base.plan is None:
            continue
        who = f"{c.label} ({c.realised_prune:.0%} pruned)" if c.realised_prune is not None else c.label
        c.verdict = capacity.verdict(c.label, c.plan, base.label, base.plan,
                                     capacity.accuracy_deltas(c.accuracy, base.accuracy), pruned_text=who,
                                     rps=settings.capacity.rps)
    trials = None
    if many and _one_series(runs):
        trials = summarize_trials([[c for c in checkpoints if c.run == r.name] for r in runs], [r.name for r in runs],
                                  settings.capacity.rps, settings.confidence)
    found = validations(r.path for r in runs)
    return Report(generated_utc=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                  runs=[_run_info(r) for r in runs], settings=settings.model_dump(mode="json"), slos_ms=slos,
                  slo_source=source, assumptions=_assumptions(settings.capacity.scaling_efficiency, found),
                  checkpoints=checkpoints, trials=trials, validations=found)


def _assumptions(efficiency: float, found: list[dict[str, Any]]) -> list[str]:
    """The plan's assumptions; the scaling one as given, with what ``serve-bench validate`` measured beside it."""
    out = list(capacity.ASSUMPTIONS)
    if efficiency != 1.0:
        out[0] = (f"replicas scale at an efficiency of {efficiency:.3g} (N replicas serve N × {efficiency:.3g} × "
                  "one replica's capacity within the SLOs), as given (--scaling-efficiency)")
    for v in found:
        if v.get("scaling_efficiency") is None:
            continue
        lo, hi = v.get("scaling_efficiency_ci") or (None, None)
        ci = f" (95% CI {lo:.3g}–{hi:.3g})" if lo is not None and hi is not None else ""
        at_least = "at least " if v.get("capacity_status") == "above" else ""
        held = "held" if v.get("holds") else "did not hold"
        out.insert(1, f"measured by serve-bench validate: scaling efficiency {at_least}{v['scaling_efficiency']:.3g}"
                      f"{ci} on {v.get('replicas')} replicas of {v.get('checkpoint')}, where the plan {held} "
                      f"({v['path']}); `report --scaling-efficiency measured` plans with it")
    return out


def _one_series(runs: list[RunData]) -> bool:
    """Are the runs the trials of one repeated run (``run --repeats``)?"""
    series = {(r.manifest.get("trial") or {}).get("series") for r in runs}
    return len(series) == 1 and None not in series


def _run_info(run: RunData) -> dict[str, Any]:
    m = run.manifest
    return {"name": run.name, "path": str(run.path), "status": run.status, "status_text": run.status_text,
            "started_utc": m.get("started_utc"), "ended_utc": m.get("ended_utc"), "command": m.get("command"),
            "problems": m.get("problems") or [], "hardware": m.get("hardware") or {},
            "labels": (m.get("study") or {}).get("labels") or {}}


def _checkpoint(run: RunData, ck: CheckpointData, settings: ReportSettings, slos: dict[str, float],
                many: bool) -> CheckpointReport:
    label = f"{run.name}:{ck.label}" if many else ck.label
    out = CheckpointReport(run=run.name, name=ck.name, label=label, base=ck.base, is_base=ck.is_base,
                           realised_prune=ck.realised_prune, stages=[], accuracy=read_accuracy(ck.path))
    curve, why = _curve(ck.stages, settings.profile)
    if why:
        out.notes.append(why)
    values = {id(s): stage_constraint_values(s, slos, settings.slo_percentile, settings.min_attainment)
              for s in ck.stages}
    out.stages = [_stage_row(s, s in curve, values[id(s)]) for s in ck.stages]
    measured_in, measured_out = _mix(curve or ck.stages)
    if not curve:
        out.plan = capacity.plan(None, (None, None), settings.capacity, measured_input_tokens=measured_in,
                                 measured_output_tokens=measured_out, energy=None,
                                 no_answer=why or "no usable stage")
        return out
    out.profile, out.axis = curve[0].profile, curve[0].load_axis
    out.knee = find_knee([s.load for s in curve], [s.request_rate_rps or 0.0 for s in curve],  # type: ignore[misc]
                         [s.name for s in curve])
    out.slo = slo_capacity(curve, slos, percentile=settings.slo_percentile, min_attainment=settings.min_attainment,
                           resamples=settings.bootstrap_resamples, confidence=settings.confidence, seed=settings.seed)
    energy, out.energy_reason = _energy_at(curve, out.slo)
    out.energy_at_operating_point = energy
    no_answer = ""
    if out.slo.status == BELOW:
        no_answer = (f"the lowest load tested ({curve[0].load_text}) already misses {out.slo.binding}: "
                     "test lower loads")
    out.plan = capacity.plan(out.slo.rate_rps, out.slo.ci_rate_rps, settings.capacity,
                             measured_input_tokens=measured_in, measured_output_tokens=measured_out, energy=energy,
                             energy_reason=out.energy_reason, lower_bound=out.slo.status == ABOVE,
                             no_answer=no_answer)
    return out


def _curve(stages: list[StageData], profile: str | None) -> tuple[list[StageData], str]:
    """The usable stages of one profile and load axis the plan rests on, and a note on the choice."""
    groups: dict[tuple[str | None, str | None], list[StageData]] = {}
    for s in stages:
        if s.usable:
            groups.setdefault((s.profile, s.load_axis), []).append(s)
    if not groups:
        return [], "no usable stage (every stage is flagged, a ramp, or has no completed request)"
    note = ""
    if profile is not None:
        chosen = [g for (p, _), g in groups.items() if p == profile]
        if chosen:
            pick = max(chosen, key=len)  # a sweep's rate stages, not its two closed-loop ones
            if len(chosen) > 1:
                note = (f"the plan rests on profile {profile!r}'s {len(pick)} {pick[0].load_axis} stages; its other "
                        "stages are tabled only")
            return sorted(pick, key=lambda s: s.load), note  # type: ignore[arg-type, return-value]
        note = f"profile {profile!r} has no usable stage here; "
    pick = max(groups.values(), key=len)  # the longest curve; the first one among equals
    if len(groups) > 1:
        note += (f"the plan rests on profile {pick[0].profile!r} ({len(pick)} {pick[0].load_axis} stages); other "
                 "stages are tabled only")
    return sorted(pick, key=lambda s: s.load), note  # type: ignore[arg-type, return-value]


def _mix(stages: list[StageData]) -> tuple[float, float]:
    done = sum(s.summary.get("completed", 0) for s in stages)
    if not done:
        return 0.0, 0.0
    return (sum(s.summary.get("total_input_tokens", 0) for s in stages) / done,
            sum(s.summary.get("total_output_tokens", 0) for s in stages) / done)


def _at(curve: list[StageData], slo: SloCapacity, per_stage: list[float | None]) -> tuple[float | None, str]:
    """A per-stage figure at the operating point: interpolated between the two stages around it."""
    if slo.load is None:
        return None, "no operating point"
    loads = [s.load for s in curve]
    if slo.status == ABOVE or slo.load >= loads[-1]:
        return per_stage[-1], f"at stage {curve[-1].name}"
    hi = next(i for i, x in enumerate(loads) if x >= slo.load)  # type: ignore[operator]
    lo = max(hi - 1, 0)
    if per_stage[lo] is None or per_stage[hi] is None:
        return None, f"not measured at stage {curve[lo].name if per_stage[lo] is None else curve[hi].name}"
    if hi == lo or loads[hi] == loads[lo]:
        return per_stage[hi], f"at stage {curve[hi].name}"
    t = (slo.load - loads[lo]) / (loads[hi] - loads[lo])  # type: ignore[operator]
    value = per_stage[lo] + t * (per_stage[hi] - per_stage[lo])  # type: ignore[operator]
    return value, f"interpolated between stages {curve[lo].name} and {curve[hi].name}"


def _energy_at(curve: list[StageData], slo: SloCapacity) -> tuple[capacity.OperatingEnergy | None, str]:
    if not any(s.energy_measured for s in curve):
        reasons = {s.energy.get("reason") or "not measured" for s in curve}
        return None, "; ".join(sorted(reasons))
    gross, basis = _at(curve, slo, [s.energy_per_output_token_j for s in curve])
    if gross is None:
        return None, basis
    net, _ = _at(curve, slo, [(s.energy.get("energy_per_output_token_joules") or {}).get("net")
                              if s.energy_measured and not s.energy.get("net_reason") else None for s in curve])
    idle = next((s.energy.get("idle_power_watts") for s in curve if s.energy.get("idle_power_watts")), None)
    scopes = {s.energy.get("scope") for s in curve if s.energy_measured} - {None}
    if len(scopes) == 1:
        [kind] = scopes
        basis += f"; energy of {SCOPE_WORDS[kind]}" + ("; the host's CPU and DRAM are reported beside it, not in "
                                                       "it" if any(s.energy.get("host") for s in curve) else "")
    return capacity.OperatingEnergy(gross, net, idle if net is not None else None, basis), ""


def _stage_row(s: StageData, used: bool, constraint_values: dict[str, float | None]) -> dict[str, Any]:
    sm = s.summary
    intended = sm.get("latency_from") == "intended send"
    row: dict[str, Any] = {
        "index": s.index, "stage": s.name, "profile": s.profile, "load": s.load, "load_axis": s.load_axis,
        "load_text": s.load_text, "attempted": s.attempted, "completed": sm.get("completed"),
        "failed": sm.get("failed"), "request_rate_rps": s.request_rate_rps, "concurrency": s.concurrency,
        "output_throughput": sm.get("steady_output_throughput") or sm.get("output_throughput"),
        "throughput_basis": "steady window" if sm.get("steady_request_throughput") else "whole stage",
        "latency_from": sm.get("latency_from"), "flags": list(s.flags), "used": used,
        "energy_flags": [f["reason"] for f in (s.energy.get("flags") or [])],
        "excluded_because": s.excluded_because, "started_s": s.started_s, "ended_s": s.ended_s,
        "energy_measured": s.energy_measured, "energy_per_output_token_j": s.energy_per_output_token_j,
        "energy_reason": None if s.energy_measured else (s.energy.get("reason") or "not measured"),
        "constraints": constraint_values,
    }
    for metric in LATENCIES:
        key = f"{metric}_from_intended" if intended and metric in ("ttft", "e2el") else metric
        for p in SHOWN_PERCENTILES:
            row[f"p{p}_{metric}_ms"] = sm.get(f"p{p}_{key}_ms")
        row[f"n_{metric}"] = sm.get(f"n_{key}")
    return row
