"""The report as Markdown: the same sections as the HTML page, figures linked as PNG files."""

from __future__ import annotations

from serve_bench.report.analysis import Report
from serve_bench.report.figures import Figure
from serve_bench.report.tables import (
    Table,
    capacity_table,
    runs_table,
    settings_lines,
    slo_table,
    stage_table,
    trials_capacity_table,
    trials_stage_table,
)


def md_table(table: Table) -> str:
    head, rows = table
    if not rows:
        return "_(none)_\n"

    def cell(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def render(report: Report, figures: list[Figure], png_names: dict[str, str]) -> str:
    out = ["# serve-bench capacity report", "",
           f"Generated {report.generated_utc} from the raw request records of:", "", md_table(runs_table(report))]
    unfinished = [r for r in report.runs if r["status"] != "completed"]
    for r in unfinished:
        out.append(f"> **{r['name']} is {r['status_text']}**: the report covers the stages finished so far.\n")
    out += ["## Verdicts", ""]
    out += [f"- {v}" for v in report.verdicts] or ["- no pruned checkpoint with a base in the same run"]
    if report.trials is not None:
        t = report.trials
        out += ["", f"## Run to run ({t.trials} trials)", "", f"Method: {t.method}. A figure whose trials' CV "
                f"exceeds {t.unstable_cv:.0%} is marked unstable.", "", md_table(trials_capacity_table(report)),
                md_table(trials_stage_table(report)), "Each trial's own verdicts:", ""]
        out += [f"- {v}" for v in report.trial_verdicts] or ["- none"]
    out += ["", "## Capacity plan", "", md_table(capacity_table(report)), "Settings:", ""]
    out += [f"- {line}" for line in settings_lines(report)]
    out += ["", "Assumptions:", ""] + [f"- {a}" for a in report.assumptions] + [""]
    for c in report.checkpoints:
        out += [f"## {c.label}", ""]
        if c.slo is not None:
            out += [f"Load curve: profile `{c.profile}`, {c.axis}; method: {c.slo.method}.", "",
                    md_table(slo_table(c))]
        if c.knee is not None:
            where = f"at {c.knee.load:g} ({c.knee.stage})" if c.knee.load is not None else c.knee.note
            out += [f"Knee: {where}; {c.knee.method}; stages: {', '.join(c.knee.stages)}.", ""]
        if c.plan is not None:
            out += [f"Energy: {c.plan.energy_note}.", ""]
            out += [f"- {n}" for n in c.plan.notes]
        out += [f"- {n}" for n in c.notes + (c.slo.notes if c.slo else [])]
        out.append("")
    out += ["## Stages", "", md_table(stage_table(report)),
            "Flagged stages (load generator saturated, server died, stopped early, requests rejected) are listed "
            "here and left out of every curve, knee, SLO boundary and average. Open-loop latencies are measured "
            "from the intended send time.", "", "## Figures", ""]
    for fig in figures:
        out += [f"### {fig.title}", "", f"![{fig.title}]({png_names[fig.slug]})", "", fig.caption, ""]
    return "\n".join(out) + "\n"
