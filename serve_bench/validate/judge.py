"""Predicted against observed: did the plan's traffic meet the SLOs on the fleet it asked for, what does the fleet
really serve within them, and how far is that from N × one replica's capacity (the scaling efficiency, which a
later plan can take: ``serve-bench report --scaling-efficiency``).

- The plan holds when the plan stage meets every constraint the report checks (each metric's percentile
  within its limit, and SLO attainment at least the minimum), on a stage that is not flagged (host busy,
  generator saturated…): a flagged stage proves nothing either way.
- SLO attainment there gets a Wilson score interval over the stage's requests, counted as independent: requests
  in flight together move together, so under heavy load the interval is too narrow, and it says so.
- The fleet's capacity is the report's own estimate (:func:`serve_bench.report.slo.slo_capacity`) over the
  validation's open-loop stages, with its bootstrap interval; scaling efficiency is that over the predicted
  N × one replica's capacity, whose own interval (from the report) is not folded in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serve_bench.report.inputs import StageData, read_run
from serve_bench.report.resample import ATTAINMENT
from serve_bench.report.slo import ABOVE, BELOW, slo_capacity, stage_constraint_values
from serve_bench.validate.claim import Claim
from serve_bench.validate.traffic import PLAN_STAGE

WILSON_Z = 1.959964  # 95%


@dataclass
class StageCheck:
    stage: str
    replicas: int
    target_rps: float | None      # sent (Poisson, the mean)
    rate_rps: float | None        # achieved
    attempted: int
    values: dict[str, float | None]
    limits: dict[str, float]
    met: bool | None              # None: a flagged stage, or no samples
    attainment: float | None = None
    attainment_ci: tuple[float, float] | None = None
    flags: list[str] = field(default_factory=list)
    why: str = ""


@dataclass
class Validation:
    report: str
    checkpoint: str
    fleet: list[str]              # the endpoints loaded (launched replicas' URLs, or --url)
    launched: bool
    replicas: int
    planned_replicas: int
    rps: float
    capacity_rps: float           # one replica, as the plan says (at the traffic's mix)
    scaling_assumed: float
    predicted_fleet_rps: float
    predicted_utilisation: float  # the traffic over the predicted fleet capacity
    plan_stage: StageCheck | None
    holds: bool
    verdict: str
    observed_fleet_rps: float | None = None
    observed_fleet_ci: tuple[float | None, float | None] = (None, None)
    capacity_status: str = ""
    capacity_binding: str | None = None
    observed_per_replica_rps: float | None = None
    scaling_efficiency: float | None = None
    scaling_efficiency_ci: tuple[float | None, float | None] = (None, None)
    fewer: StageCheck | None = None
    runs: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    method: str = ""


def wilson(good: int, n: int, z: float = WILSON_Z) -> tuple[float, float]:
    if n <= 0:
        return (0.0, 1.0)
    p = good / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    # at 0 or n the interval's end is exactly the share (the formula lands an ulp away)
    return (0.0 if good == 0 else max(0.0, centre - half), 1.0 if good == n else min(1.0, centre + half))


def check_stage(stage: StageData, claim: Claim, replicas: int) -> StageCheck:
    values = stage_constraint_values(stage, claim.slo_ms, claim.percentile, claim.min_attainment)
    limits = {name: (claim.min_attainment if name == ATTAINMENT else claim.slo_ms[name.split(" ", 1)[1]])
              for name in values}
    out = StageCheck(stage.name, replicas, stage.load, stage.request_rate_rps, stage.attempted, values,  # type: ignore
                     limits, None, flags=list(stage.flags))
    attainment = values.get(ATTAINMENT)
    if attainment is not None:
        good = round(attainment * stage.attempted)
        out.attainment, out.attainment_ci = attainment, wilson(good, stage.attempted)
    missed = [n for n, v in values.items() if v is not None and
              (v < limits[n] if n == ATTAINMENT else v > limits[n])]
    if not stage.usable:
        out.why = f"stage {stage.name} is not usable: {stage.excluded_because}"
        return out
    if all(v is None for v in values.values()):
        out.why = f"stage {stage.name} has no completed request"
        return out
    out.met = not missed
    out.why = ("every SLO met" if not missed else "missed " + ", ".join(
        f"{n} ({_fmt(values[n], n)} against {_fmt(limits[n], n)})" for n in missed))
    return out


def _fmt(value: float | None, name: str) -> str:
    if value is None:
        return "—"
    return f"{value:.1%}" if name == ATTAINMENT else f"{value:.0f} ms"


def judge(claim: Claim, run_dir: Path, fleet: list[str], launched: bool, replicas: int,
          fewer_run: Path | None = None, *, resamples: int = 1000, confidence: float = 0.95) -> Validation:
    stages = _stages(run_dir)
    predicted = claim.predicted_fleet_rps(replicas)
    plan_stage = next((s for s in stages if s.name == PLAN_STAGE), None)
    check = check_stage(plan_stage, claim, replicas) if plan_stage is not None else None
    holds = bool(check and check.met)
    if check is None:
        verdict = "not validated: the plan stage has no results (the run stopped before it)"
    elif check.met is None:
        verdict = f"not validated: {check.why}"
    else:
        verdict = (f"the plan holds: {claim.rps:g} req/s on {replicas} replica(s) met the SLOs" if check.met else
                   f"the plan does not hold: {claim.rps:g} req/s on {replicas} replica(s) {check.why}")
    out = Validation(report=str(claim.report), checkpoint=claim.label, fleet=fleet, launched=launched,
                     replicas=replicas, planned_replicas=claim.replicas, rps=claim.rps, capacity_rps=claim.capacity_rps,
                     scaling_assumed=claim.scaling_efficiency, predicted_fleet_rps=predicted,
                     predicted_utilisation=claim.rps / predicted if predicted else math.inf, plan_stage=check,
                     holds=holds, verdict=verdict, runs=[str(run_dir)] + ([str(fewer_run)] if fewer_run else []))
    if replicas != claim.replicas:
        out.notes.append(f"the plan asked for {claim.replicas} replica(s); this fleet has {replicas}: the prediction "
                         f"is for {replicas}")
    if claim.lower_bound:
        out.notes.append("the report's capacity is a lower bound (no stage it measured missed the SLOs): the "
                         "prediction is at least, and the fleet may serve more")
    curve = sorted((s for s in stages if s.usable and s.load_axis == "rate"), key=lambda s: s.load or 0.0)
    if len(curve) >= 2:
        cap = slo_capacity(curve, claim.slo_ms, percentile=claim.percentile, min_attainment=claim.min_attainment,
                           resamples=resamples, confidence=confidence)
        out.method = cap.method
        out.capacity_status, out.capacity_binding = cap.status, cap.binding
        if cap.status != BELOW and cap.rate_rps is not None:
            out.observed_fleet_rps, out.observed_fleet_ci = cap.rate_rps, cap.ci_rate_rps
            out.observed_per_replica_rps = cap.rate_rps / replicas
            base = replicas * claim.capacity_rps
            out.scaling_efficiency = cap.rate_rps / base
            lo, hi = cap.ci_rate_rps
            out.scaling_efficiency_ci = (None if lo is None else lo / base, None if hi is None else hi / base)
            if cap.status == ABOVE:
                out.notes.append("the fleet met the SLOs at every rate tested: its capacity and the scaling "
                                 "efficiency are lower bounds (search higher: --search)")
        else:
            out.notes.append("the fleet missed the SLOs at the lowest rate tested: no capacity measured")
        out.notes += [n for n in cap.notes if "too few" in n]
    else:
        out.notes.append("fewer than two usable open-loop stages: the fleet's capacity was not measured")
    if fewer_run is not None:
        fewer_stage = next((s for s in _stages(fewer_run) if s.name == PLAN_STAGE), None)
        if fewer_stage is not None:
            out.fewer = check_stage(fewer_stage, claim, replicas - 1)
            margin = out.fewer
            if margin.met:
                out.notes.append(f"with {replicas - 1} replica(s) the traffic met the SLOs too: the plan keeps a "
                                 "replica to spare (its headroom)")
            elif margin.met is False:
                out.notes.append(f"with {replicas - 1} replica(s) the traffic {margin.why}: {replicas} is the "
                                 "fewest that holds")
    return out


def _stages(run_dir: Path) -> list[StageData]:
    run = read_run(run_dir)
    return [s for ck in run.checkpoints for s in ck.stages]


def to_dict(v: Validation) -> dict[str, Any]:
    import dataclasses

    return dataclasses.asdict(v)
