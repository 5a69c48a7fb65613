"""The report as one self-contained HTML page: styles and plotly.js inline, system fonts, no network."""

from __future__ import annotations

from html import escape

from serve_bench.report.analysis import Report
from serve_bench.report.figures import Figure
from serve_bench.report.render_plotly import figure_div, plotly_js
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

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto; max-width: 1400px;
       padding: 0 1rem; color: #222; line-height: 1.45; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.3rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
table.data { border-collapse: collapse; font-size: 0.85rem; margin: 0.5rem 0 1rem; }
table.data th, table.data td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: left; vertical-align: top; }
table.data th { background: #f3f3f3; }
.banner { background: #fff3cd; border: 1px solid #e0c36c; padding: 0.5rem 1rem; }
.verdict { font-size: 1.05rem; }
.caption { font-size: 0.85rem; color: #444; max-width: 1200px; }
.scroll { overflow-x: auto; }
"""


def html_table(table: Table) -> str:
    head, rows = table
    if not rows:
        return "<p><em>(none)</em></p>"
    th = "".join(f"<th>{escape(str(h))}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f'<div class="scroll"><table class="data"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table></div>'


def _ul(items: list[str]) -> str:
    return "<ul>" + "".join(f"<li>{escape(i)}</li>" for i in items) + "</ul>" if items else ""


def render(report: Report, figures: list[Figure], png_names: dict[str, str]) -> str:
    parts = ["<h1>serve-bench capacity report</h1>",
             f"<p>Generated {escape(report.generated_utc)} from the raw request records of:</p>",
             html_table(runs_table(report))]
    for r in report.runs:
        if r["status"] != "completed":
            parts.append(f'<p class="banner"><strong>{escape(r["name"])} is {escape(r["status_text"])}</strong>: '
                         "the report covers the stages finished so far.</p>")
    verdicts = report.verdicts or ["no pruned checkpoint with a base in the same run"]
    parts += ["<h2>Verdicts</h2>", '<ul class="verdict">' + "".join(f"<li>{escape(v)}</li>" for v in verdicts)
              + "</ul>"]
    if report.trials is not None:
        t = report.trials
        parts += [f"<h2>Run to run ({t.trials} trials)</h2>",
                  f"<p>Method: {escape(t.method)}. A figure whose trials' CV exceeds {t.unstable_cv:.0%} is marked "
                  "unstable.</p>", html_table(trials_capacity_table(report)), html_table(trials_stage_table(report)),
                  "<p>Each trial's own verdicts:</p>", _ul(report.trial_verdicts)]
    parts += ["<h2>Capacity plan</h2>", html_table(capacity_table(report)),
              "<p>Settings:</p>", _ul(settings_lines(report)), "<p>Assumptions:</p>", _ul(report.assumptions)]
    for c in report.checkpoints:
        parts.append(f"<h2>{escape(c.label)}</h2>")
        if c.slo is not None:
            parts += [f"<p>Load curve: profile <code>{escape(str(c.profile))}</code>, {escape(str(c.axis))}; "
                      f"method: {escape(c.slo.method)}.</p>", html_table(slo_table(c))]
        if c.knee is not None:
            where = f"at {c.knee.load:g} ({c.knee.stage})" if c.knee.load is not None else c.knee.note
            parts.append(f"<p>Knee: {escape(where)}; {escape(c.knee.method)}; stages: "
                         f"{escape(', '.join(c.knee.stages))}.</p>")
        if c.plan is not None:
            parts.append(f"<p>Energy: {escape(c.plan.energy_note)}.</p>")
        parts.append(_ul((c.plan.notes if c.plan else []) + c.notes + (c.slo.notes if c.slo else [])))
    parts += ["<h2>Stages</h2>", html_table(stage_table(report)),
              "<p class=\"caption\">Flagged stages (load generator saturated, server died, stopped early, requests "
              "rejected) are listed here and left out of every curve, knee, SLO boundary and average. Open-loop "
              "latencies are measured from the intended send time.</p>", "<h2>Figures</h2>"]
    for fig in figures:
        parts += [f'<section class="figure" id="{escape(fig.slug)}"><h3>{escape(fig.title)}</h3>', figure_div(fig),
                  f'<p class="caption">{escape(fig.caption)} PNG: <code>{escape(png_names[fig.slug])}</code></p>'
                  "</section>"]
    body = "\n".join(parts)
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>serve-bench capacity report</title><style>{STYLE}</style>"
            f"<script type=\"text/javascript\">{plotly_js()}</script></head>\n<body>\n{body}\n</body></html>\n")
