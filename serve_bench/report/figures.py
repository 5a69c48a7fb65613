"""The report's figures as plain data (panels of series, reference lines, bars), built once from the
:class:`~serve_bench.report.analysis.Report` and drawn twice: by plotly for the HTML page
(:mod:`render_plotly`) and by matplotlib for the PNG files (:mod:`render_png`). Each figure carries its
caption: sample sizes and method. Flagged stages are drawn hollow and named, never joined into a curve."""

from __future__ import annotations

from dataclasses import dataclass, field

from serve_bench.measure.metrics import percentile_label
from serve_bench.report.analysis import CheckpointReport, Report
from serve_bench.report.knee import METHOD as KNEE_METHOD

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
_AXIS = {"concurrency": "load (concurrent users)", "rate": "load (scheduled requests/s)"}


@dataclass
class Series:
    name: str
    x: list[float]
    y: list[float | None]
    color: str
    mode: str = "lines+markers"  # lines+markers, markers
    dash: bool = False
    symbol: str = "circle"  # circle, star, x
    size: int = 8
    hollow: bool = False
    text: list[str] = field(default_factory=list)


@dataclass
class RefLine:
    value: float
    vertical: bool
    label: str
    color: str = "#555555"


@dataclass
class Bar:
    row: str
    start: float
    length: float
    label: str
    color: str
    flagged: bool = False


@dataclass
class Panel:
    title: str
    x_label: str
    y_label: str
    series: list[Series] = field(default_factory=list)
    lines: list[RefLine] = field(default_factory=list)
    bars: list[Bar] = field(default_factory=list)
    empty_note: str = ""  # shown instead of data: "not measured: …"


@dataclass
class Figure:
    slug: str
    title: str
    caption: str
    panels: list[Panel]


def build_figures(report: Report) -> list[Figure]:
    colors = {c.label: PALETTE[i % len(PALETTE)] for i, c in enumerate(report.checkpoints)}
    return [latency_vs_throughput(report, colors), percentiles_vs_load(report, colors),
            energy_vs_load(report, colors), accuracy_vs_throughput(report, colors), timeline(report, colors)]


def _samples(report: Report) -> str:
    parts = []
    for c in report.checkpoints:
        ns = [f"{r['stage']} {r['completed']}" for r in c.stages]
        parts.append(f"{c.label}: " + ", ".join(ns))
    return "completed requests per stage: " + "; ".join(parts)


def _split(c: CheckpointReport, key: str, x_key: str) -> tuple[list[dict], list[dict]]:
    """The stages on the curve, and the flagged/unusable ones (drawn apart), with both values known."""
    rows = [r for r in c.stages if r.get(key) is not None and r.get(x_key) is not None]
    return [r for r in rows if r["used"]], [r for r in rows if not r["used"]]


def _flagged_series(c: CheckpointReport, rows: list[dict], x_key: str, key: str, color: str) -> list[Series]:
    if not rows:
        return []
    return [Series(f"{c.label} flagged (excluded)", [r[x_key] for r in rows], [r[key] for r in rows], color,
                   mode="markers", symbol="x", size=10, hollow=True,
                   text=[f"{r['stage']}: {r['excluded_because']}" for r in rows])]


def latency_vs_throughput(report: Report, colors: dict[str, str]) -> Figure:
    p = report.settings["slo_percentile"]
    metrics = [m for m in report.slos_ms if m in ("ttft_ms", "tpot_ms", "itl_ms", "e2el_ms")] or ["ttft_ms",
                                                                                                  "tpot_ms"]
    panels = []
    for metric in metrics:
        name = metric[:-3]
        key = f"p{percentile_label(p)} {metric}"  # the SLO constraint's value per stage, from the raw records
        title = f"p{percentile_label(p)} {name.upper()}"
        panel = Panel(f"{title} against throughput", "request throughput (req/s)", f"{title} (ms)")
        if metric in report.slos_ms:
            panel.lines.append(RefLine(report.slos_ms[metric], False, f"SLO {report.slos_ms[metric]:g} ms"))
        for c in report.checkpoints:
            color = colors[c.label]
            rows = [{**r, key: r["constraints"].get(key)} for r in c.stages]
            used = [r for r in rows if r["used"] and r[key] is not None and r["request_rate_rps"] is not None]
            flagged = [r for r in rows if not r["used"] and r[key] is not None and r["request_rate_rps"] is not None]
            panel.series.append(Series(c.label, [r["request_rate_rps"] for r in used], [r[key] for r in used], color,
                                       text=[f"{r['stage']} ({r['load_text']}), n={r['completed']}" for r in used]))
            panel.series += _flagged_series(c, flagged, "request_rate_rps", key, color)
            knee = c.knee.stage if c.knee else None
            at = [r for r in used if r["stage"] == knee]
            if at:
                panel.series.append(Series(f"{c.label} knee", [at[0]["request_rate_rps"]], [at[0][key]], color,
                                           mode="markers", symbol="star", size=16, text=[f"knee: {knee}"]))
            if c.slo is not None and c.slo.rate_rps is not None:
                panel.lines.append(RefLine(c.slo.rate_rps, True, f"{c.label} SLO capacity", color))
        panels.append(panel)
    caption = (f"{percentile_label(p)}th percentiles ({report.percentile_method} interpolation) per stage against "
               f"its sustained request rate (steady window where it has one). Horizontal lines: the SLOs; "
               f"vertical lines: each checkpoint's highest rate within the SLOs (interpolated); stars: the knee, "
               f"{KNEE_METHOD}; crosses: flagged stages, excluded. {_samples(report)}.")
    return Figure("latency_vs_throughput", "Latency against throughput", caption, panels)


def percentiles_vs_load(report: Report, colors: dict[str, str]) -> Figure:
    axis = next((c.axis for c in report.checkpoints if c.axis), "concurrency")
    panels = []
    for metric in ("ttft", "tpot"):
        panel = Panel(f"{metric.upper()} percentiles against load", _AXIS.get(axis or "", "load"),
                      f"{metric.upper()} (ms)")
        for c in report.checkpoints:
            for p, dash in ((50, True), (99, False)):
                key = f"p{p}_{metric}_ms"
                used, flagged = _split(c, key, "load")
                used = [r for r in used if r["load_axis"] == axis]
                panel.series.append(Series(f"{c.label} p{p}", [r["load"] for r in used], [r[key] for r in used],
                                           colors[c.label], dash=dash,
                                           text=[f"{r['stage']}, n={r[f'n_{metric}']}" for r in used]))
                if p == 99:
                    panel.series += _flagged_series(c, [r for r in flagged if r["load_axis"] == axis], "load",
                                                     key, colors[c.label])
            mark = f"SLO {report.slos_ms[metric + '_ms']:g} ms" if metric + "_ms" in report.slos_ms else ""
            if mark and not any(line.label == mark for line in panel.lines):
                panel.lines.append(RefLine(report.slos_ms[metric + "_ms"], False, mark))
        panels.append(panel)
    caption = (f"p50 (dashed) and p99 (solid), {report.percentile_method} interpolation, from the raw records; "
               f"TPOT = (E2EL − TTFT) / (output tokens − 1) per request. {_samples(report)}.")
    return Figure("percentiles_vs_load", "TTFT and TPOT percentiles against load", caption, [*panels])


def energy_vs_load(report: Report, colors: dict[str, str]) -> Figure:
    axis = next((c.axis for c in report.checkpoints if c.axis), "concurrency")
    panel = Panel("Energy per output token against load", _AXIS.get(axis or "", "load"), "J per output token (gross)")
    reasons = set()
    for c in report.checkpoints:
        used, flagged = _split(c, "energy_per_output_token_j", "load")
        if used:
            panel.series.append(Series(c.label, [r["load"] for r in used],
                                       [r["energy_per_output_token_j"] for r in used], colors[c.label],
                                       text=[f"{r['stage']}" for r in used]))
        panel.series += _flagged_series(c, flagged, "load", "energy_per_output_token_j", colors[c.label])
        reasons |= {r["energy_reason"] for r in c.stages if not r["energy_measured"]}
    if not any(s.x for s in panel.series):
        panel.empty_note = "energy not measured: " + "; ".join(sorted(reasons)) if reasons else "energy not measured"
    unmeasured = sum(1 for c in report.checkpoints for r in c.stages if not r["energy_measured"])
    caption = ("Energy-counter delta over each stage's steady window / output tokens in it (gross). Stages without "
               f"a measurement are left out, never drawn as zero ({unmeasured} such stage(s)).")
    return Figure("energy_vs_load", "Energy per token against load", caption, [panel])


def accuracy_vs_throughput(report: Report, colors: dict[str, str]) -> Figure:
    panels = [Panel("Accuracy against capacity", "requests/s per replica within the SLOs", "mean accuracy (%)"),
              Panel("Accuracy against energy", "J per output token at the operating point", "mean accuracy (%)")]
    points = []
    for c in report.checkpoints:
        fractions = [s.value for s in (c.accuracy or {}).values() if s.is_fraction]
        if not fractions:
            continue
        acc = 100.0 * sum(fractions) / len(fractions)
        rate = c.slo.rate_rps if c.slo else None
        energy = c.energy_at_operating_point.gross_j_per_output_token if c.energy_at_operating_point else None
        points.append((c.label, rate, energy, acc, len(fractions)))
    for i, panel in enumerate(panels):
        pts = [(lab, xs[i], acc) for lab, *xs, acc, _ in points if xs[i] is not None]
        for lab, x, acc in pts:
            panel.series.append(Series(lab, [x], [acc], colors[lab], mode="markers", size=12))
        front = pareto_front([(x, acc) for _, x, acc in pts], maximise_x=i == 0)
        if len(front) > 1:
            panel.series.append(Series("Pareto front", [x for x, _ in front], [y for _, y in front], "#555555",
                                       mode="lines", dash=True))
        if not pts:
            panel.empty_note = ("accuracy not evaluated" if not points else
                                "not measured" if i else "no capacity within the SLOs")
    caption = ("Mean over the evaluated accuracy tasks (lm-eval, against the served endpoint; perplexities left "
               "out) per checkpoint; x: capacity "
               "within the SLOs, or energy at that point. Pareto front: checkpoints no other beats on both axes. "
               f"{len(points)} checkpoint(s) evaluated.")
    return Figure("accuracy_vs_throughput", "Accuracy against throughput and energy", caption, panels)


def pareto_front(points: list[tuple[float, float]], *, maximise_x: bool = True) -> list[tuple[float, float]]:
    """Points not dominated (higher accuracy y always better; x higher or lower as asked), sorted by x."""
    front = []
    for x, y in points:
        dominated = any((ox >= x if maximise_x else ox <= x) and oy >= y and (ox, oy) != (x, y)
                        for ox, oy in points)
        if not dominated:
            front.append((x, y))
    return sorted(set(front))


def timeline(report: Report, colors: dict[str, str]) -> Figure:
    starts = [r["started_s"] for c in report.checkpoints for r in c.stages if r["started_s"] is not None]
    origin = min(starts, default=0.0)
    panel = Panel("Run timeline", "minutes since the first stage started", "checkpoint")
    for c in report.checkpoints:
        for r in c.stages:
            if r["started_s"] is None or r["ended_s"] is None:
                continue
            flag = r["excluded_because"] if r["flags"] else ""
            panel.bars.append(Bar(c.label, (r["started_s"] - origin) / 60.0, (r["ended_s"] - r["started_s"]) / 60.0,
                                  f"{r['stage']}" + (f" ({flag})" if flag else ""), colors[c.label],
                                  flagged=bool(r["flags"])))
    caption = ("Each bar is a stage, from its start to its end (warm-up included), on the load generator's clock; "
               "hatched or grey: flagged. Runs: " + "; ".join(f"{r['name']} ({r['status_text']})"
                                                              for r in report.runs) + ".")
    return Figure("timeline", "Run timeline", caption, [panel])
