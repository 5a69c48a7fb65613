"""A validation as text: the verdict, predicted against observed, the stages' SLO values, the notes."""

from __future__ import annotations

from serve_bench.validate.judge import StageCheck, Validation


def _rps(x: float | None) -> str:
    return "—" if x is None else f"{x:.3g} req/s"


def _ci(ci: tuple[float | None, float | None], fmt: str = "{:.3g}") -> str:
    lo, hi = ci
    if lo is None or hi is None:
        return ""
    return f" (95% CI {fmt.format(lo)}–{fmt.format(hi)})"


def rows(v: Validation) -> list[tuple[str, str, str]]:
    """(figure, predicted, observed)."""
    plan = v.plan_stage
    att = ("—" if plan is None or plan.attainment is None else
           f"{plan.attainment:.1%}" + _ci(plan.attainment_ci or (None, None), "{:.1%}"))
    need = f"≥ {plan.limits['slo_attainment']:.0%}" if plan and "slo_attainment" in plan.limits else "—"
    at_least = "≥ " if v.capacity_status == "above" else ""
    return [
        ("SLOs at the plan's traffic", f"met ({v.predicted_utilisation:.0%} of the fleet's predicted capacity)",
         "met" if plan and plan.met else "not met" if plan and plan.met is False else "not shown"),
        ("SLO attainment", need, att),
        ("fleet capacity within the SLOs", _rps(v.predicted_fleet_rps),
         at_least + _rps(v.observed_fleet_rps) + _ci(v.observed_fleet_ci)),
        ("capacity per replica", _rps(v.capacity_rps * v.scaling_assumed),
         at_least + _rps(v.observed_per_replica_rps)),
        ("scaling efficiency (fleet / N × one replica)", f"{v.scaling_assumed:.3g}",
         "—" if v.scaling_efficiency is None else at_least + f"{v.scaling_efficiency:.3g}"
         + _ci(v.scaling_efficiency_ci)),
    ]


def stage_lines(check: StageCheck) -> list[str]:
    vals = ", ".join(f"{n} {('—' if x is None else f'{x:.1%}' if n == 'slo_attainment' else f'{x:.0f} ms')}"
                     for n, x in check.values.items())
    flags = f" [flags: {', '.join(check.flags)}]" if check.flags else ""
    return [f"- {check.stage} on {check.replicas} replica(s): {_rps(check.target_rps)} sent (Poisson), "
            f"{_rps(check.rate_rps)} achieved in its steady window, {check.attempted} requests; {vals}: "
            f"{check.why}{flags}"]


def markdown(v: Validation) -> str:
    out = [f"# Validation of the plan for {v.checkpoint}", "",
           f"**{v.verdict}.**", "",
           f"Plan: {v.rps:g} req/s needs {v.planned_replicas} replica(s) (one serves {v.capacity_rps:.3g} req/s "
           f"within the SLOs; report {v.report}). Fleet: {v.replicas} "
           + ("replica(s) launched by serve-bench" if v.launched else "endpoint(s) already running")
           + (f" ({', '.join(v.fleet)})" if v.fleet else "") + ".", "",
           "| figure | predicted | observed |", "| --- | --- | --- |"]
    out += [f"| {a} | {b} | {c} |" for a, b, c in rows(v)]
    if v.scaling_efficiency is not None:
        out += ["", f"A later plan can take the measured efficiency: `serve-bench report RUN --scaling-efficiency "
                    f"{v.scaling_efficiency:.3g}` (or `measured`)."]
    out += ["", "## Stages", ""]
    for check in [c for c in (v.plan_stage, v.fewer) if c is not None]:
        out += stage_lines(check)
    if v.notes:
        out += ["", "## Notes", ""] + [f"- {n}" for n in v.notes]
    out += ["", "## Method", "",
            "- The plan stage replays the plan's traffic (Poisson arrivals, open loop, latency from the intended "
            "send) on the fleet; the plan holds when it meets every SLO constraint the report checks, on a stage "
            "that is not flagged.",
            "- SLO attainment: Wilson score interval over the stage's requests counted as independent (requests "
            "in flight together are not: under load the interval is too narrow).",
            f"- Fleet capacity: {v.method or 'not measured'}.",
            "- Scaling efficiency: the fleet's capacity over N × one replica's capacity from the report; the "
            "report's own interval on one replica is not folded in.",
            "- Runs: " + ", ".join(v.runs)]
    return "\n".join(out) + "\n"
