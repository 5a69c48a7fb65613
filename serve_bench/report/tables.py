"""The report's tables as headers and rows of text, shared by the Markdown and HTML writers.
"not measured" / "not evaluated" are words, never zero; "≥" marks a lower bound."""

from __future__ import annotations

from typing import Any

from serve_bench.report.accuracy import TaskScore
from serve_bench.report.analysis import CheckpointReport, Report
from serve_bench.report.capacity import span
from serve_bench.report.slo import ABOVE, BELOW

NOT_MEASURED = "not measured"
NOT_EVALUATED = "not evaluated"

Table = tuple[list[str], list[list[str]]]


def num(value: Any, fmt: str = "{:.3g}", none: str = "–") -> str:
    if value is None:
        return none
    try:
        return fmt.format(value)
    except (TypeError, ValueError):
        return str(value)


def _range(lo: Any, hi: Any, fmt: str, censored: str | None = None) -> str:
    if lo is None and hi is None:
        return "–"
    left = "below the lowest load" if censored == "lower" else num(lo, fmt)
    right = "≥" + num(hi, fmt) if censored == "upper" else num(hi, fmt)
    return f"{left} – {right}"


def label_text(labels: dict[str, str] | None) -> str:
    """A run's labels as ``key=value, …`` ('–' for none)."""
    return ", ".join(f"{k}={v}" for k, v in (labels or {}).items()) or "–"


def runs_table(report: Report) -> Table:
    head = ["run", "labels", "status", "started (UTC)", "ended (UTC)", "problems"]
    rows = [[r["name"], label_text(r.get("labels")), r["status_text"], r["started_utc"] or "–",
             r["ended_utc"] or "–", "; ".join(r["problems"]) or "–"] for r in report.runs]
    return head, rows


def capacity_table(report: Report) -> Table:
    cur = report.settings["capacity"]["currency"]
    head = ["checkpoint", "profile", "highest load within SLOs", "req/s per replica (CI)", "binding", "knee",
            "replicas (CI)", "GPU-h/day", f"{cur}/day", f"{cur}/M tok", f"{cur}/M out tok",
            f"{cur}/M out tok at capacity", "kWh/day", "CO2 kg/day", "J/out tok at op. point", "accuracy"]
    rows = []
    for c in report.checkpoints:
        plan, slo = c.plan, c.slo
        if slo is None or plan is None or not plan.answered:
            why = plan.reason if plan else "no usable stage"
            rows.append([c.label, c.profile or "–", f"no answer: {why}", *["–"] * 12, _accuracy(c)])
            continue
        bound = "≥ " if slo.status == ABOVE else ""
        load = f"{bound}{num(slo.load, '{:.3g}')} {'users' if slo.axis == 'concurrency' else 'req/s'}"
        replicas = ("≤ " if plan.lower_bound else "") + num(plan.replicas, "{}")
        energy = c.energy_at_operating_point
        rows.append([
            c.label, c.profile or "–", load,
            f"{bound}{num(plan.capacity_rps, '{:.3g}')} ({_range(*plan.capacity_rps_ci, '{:.3g}', slo.ci_censored)})",
            slo.binding or "none missed", _knee(c), f"{replicas} ({span(plan.replicas_ci)})",
            num(plan.gpu_hours_per_day, "{:.0f}"), num(plan.cost_per_day, "{:,.2f}"),
            num(plan.cost_per_m_tokens, "{:.3g}"), num(plan.cost_per_m_output_tokens, "{:.3g}"),
            ("≤ " if plan.lower_bound else "") + num(plan.cost_per_m_output_tokens_at_capacity, "{:.3g}"),
            num(plan.kwh_per_day, "{:.3g}", NOT_MEASURED), num(plan.co2_kg_per_day, "{:.3g}",
                                                                NOT_MEASURED if plan.kwh_per_day is None else "–"),
            num(energy.gross_j_per_output_token if energy else None, "{:.3g}", NOT_MEASURED), _accuracy(c)])
    return head, rows


def _knee(c: CheckpointReport) -> str:
    if c.knee is None or c.knee.load is None:
        return "none found"
    unit = "users" if c.axis == "concurrency" else "req/s"
    return f"{c.knee.load:g} {unit} ({c.knee.stage})"


def _accuracy(c: CheckpointReport) -> str:
    if not c.accuracy:
        return NOT_EVALUATED
    def one(t: str, s: TaskScore) -> str:
        if not s.is_fraction:
            return f"{t} {s.metric} {s.value:.3g}"
        return f"{t} {s.value * 100:.1f}" + (f"±{s.stderr * 100:.1f}" if s.stderr is not None else "")

    return ", ".join(one(t, s) for t, s in sorted(c.accuracy.items()))


def slo_table(c: CheckpointReport) -> Table:
    """Each constraint per stage of the curve, and where it is first missed."""
    slo = c.slo
    if slo is None:
        return ["constraint"], []
    head = ["constraint", "limit", *[f"{s} (n={n})" for s, n in zip(slo.stages, slo.samples)], "boundary"]
    rows = []
    for k in slo.constraints:
        fmt = "{:.1%}" if not k.upper else "{:.1f}"
        cells = [num(v, fmt) + ("" if v is None or (v <= k.limit if k.upper else v >= k.limit) else " ✗")
                 for v in k.values]
        where = {ABOVE: "never missed (≥ highest load)", BELOW: "missed at the lowest load"}.get(
            k.status, num(k.boundary_load, "{:.3g}"))
        rows.append([k.name + (" ← binds" if k.name == slo.binding else ""),
                     ("≤ " if k.upper else "≥ ") + num(k.limit, fmt), *cells, where])
    return head, rows


def stage_table(report: Report) -> Table:
    head = ["checkpoint", "stage", "load", "ok/failed", "req/s", "out tok/s", "TTFT p50/p99 ms", "TPOT p50/p99 ms",
            "ITL p50/p99 ms", "E2EL p50/p99 ms", "J/out tok", "in plan", "flags / why excluded"]
    rows = []
    for c in report.checkpoints:
        for r in c.stages:
            pair = {m: f"{num(r[f'p50_{m}_ms'], '{:.1f}')} / {num(r[f'p99_{m}_ms'], '{:.1f}')}"
                    for m in ("ttft", "tpot", "itl", "e2el")}
            rows.append([c.label, r["stage"], r["load_text"], f"{r['completed']}/{r['failed']}",
                         num(r["request_rate_rps"], "{:.3g}"), num(r["output_throughput"], "{:.1f}"),
                         pair["ttft"], pair["tpot"], pair["itl"], pair["e2el"],
                         num(r["energy_per_output_token_j"], "{:.3g}", NOT_MEASURED),
                         "yes" if r["used"] else "no",
                         "; ".join([r["excluded_because"] or ("" if r["used"] else "other profile")]
                                   + [f"energy: {why}" for why in r.get("energy_flags") or []]).strip("; ")])
    return head, rows


def settings_lines(report: Report) -> list[str]:
    cap = report.settings["capacity"]
    s = report.settings
    slos = ", ".join(f"{k} ≤ {v:g}" for k, v in report.slos_ms.items())
    mix = (f"{num(cap['input_tokens'], '{:g}', 'as measured')} input / "
           f"{num(cap['output_tokens'], '{:g}', 'as measured')} output tokens per request")
    return [
        f"SLOs: p{s['slo_percentile']:g} of {slos} per stage"
        + (f", and SLO attainment ≥ {s['min_attainment']:.0%}" if s["min_attainment"] is not None else "")
        + f" (from {report.slo_source})",
        f"target traffic: {cap['rps']:g} requests/s, {mix}",
        f"headroom {cap['headroom']:.0%}; {cap['gpus_per_replica']} GPU(s) per replica at "
        f"{cap['gpu_hour_price']:g} {cap['currency']} per GPU-hour"
        + (f"; grid {cap['grid_g_per_kwh']:g} gCO2e/kWh" if cap["grid_g_per_kwh"] is not None else
           "; no grid intensity given (no CO2)"),
        f"percentiles: {report.percentile_method} interpolation; bootstrap: {s['bootstrap_resamples']} resamples, "
        f"{s['confidence']:.0%} interval, seed {s['seed']}",
    ]


def _spread(s: Any, fmt: str = "{:.3g}") -> str:
    """mean ± sd (CV) [t interval]; the unstable mark when the CV is over the threshold."""
    if s.mean is None:
        return s.note or "–"
    if s.sd is None:
        return f"{num(s.mean, fmt)} ({s.note})"
    text = f"{num(s.mean, fmt)} ± {num(s.sd, fmt)} (CV {s.cv:.1%})" if s.cv is not None else num(s.mean, fmt)
    if s.ci is not None:
        text += f" [{num(s.ci[0], fmt)} – {num(s.ci[1], fmt)}]"
    return text + (" ⚠ unstable" if s.unstable else "")


def trials_capacity_table(report: Report) -> Table:
    """Per checkpoint, the capacity across the trials and which noise its interval is made of."""
    t = report.trials
    head = ["checkpoint", "req/s per replica: mean ± sd (CV) [95% t CI]", "by trial", "highest load within SLOs",
            "replicas by trial", "interval's noise"]
    rows = []
    for c in t.checkpoints if t else []:
        rows.append([c.label, _spread(c.capacity_rps), " / ".join(num(v) for v in c.capacity_rps.values),
                     _spread(c.load), " / ".join(num(v, "{:.0f}") for v in c.replicas.values), c.noise])
    return head, rows


def trials_stage_table(report: Report) -> Table:
    """Per checkpoint and stage, each headline figure across the trials."""
    t = report.trials
    head = ["checkpoint", "stage", "figure", "by trial", "mean ± sd (CV) [95% t CI]", "note"]
    rows = []
    for c in t.checkpoints if t else []:
        for st in c.stages:
            for f in st.figures:
                rows.append([c.label, st.stage, f"{f.figure} ({f.unit})",
                             " / ".join(num(v) for v in f.values), _spread(f), f.note or "–"])
    return head, rows
