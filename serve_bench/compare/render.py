"""A comparison as text: one table (headers and rows) shared by the terminal and Markdown, and JSON."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from serve_bench.compare.build import Comparison, Row
from serve_bench.errors import ConfigError
from serve_bench.report.build import json_safe
from serve_bench.report.markdown import md_table
from serve_bench.report.tables import Table, label_text, num
from serve_bench.rundir import write_json, write_text

MARKDOWN, JSON = "compare.md", "compare.json"
METHOD_WORDS = {"welch": "Welch t", "bootstrap": "bootstrap", "z": "z (lm-eval SE)", "none": "–"}


def _value(v: float | None, unit: str) -> str:
    return num(v, "{:.4g}") + (f" {unit}" if v is not None and unit else "")


def _ratio(row: Row) -> str:
    t = row.test
    if t.ratio is None:
        return "–"
    text = f"{t.ratio:.3f}"
    if t.ci is not None:
        text += f" ({t.ci[0]:.3f}–{t.ci[1]:.3f})"
    return text


def _p(row: Row) -> str:
    t = row.test
    if t.p is None:
        return t.untested or "–"
    return f"{t.p:.3g} / {row.p_adjusted:.3g}" if row.p_adjusted is not None else f"{t.p:.3g}"


def _verdict(row: Row) -> str:
    if row.regression:
        return "REGRESSION"
    return row.direction


def table(comparison: Comparison, rows: list[Row] | None = None) -> Table:
    head = ["checkpoint", "stage", "figure", "baseline", "candidate", "ratio (95% CI)", "test", "p / Holm p",
            "verdict", "note"]
    out = []
    for r in comparison.rows if rows is None else rows:
        stage = f"{r.profile}/{r.stage}" if r.stage else "(whole checkpoint)"
        out.append([r.checkpoint, stage, r.title, _value(r.baseline, r.unit), _value(r.candidate, r.unit),
                    _ratio(r), METHOD_WORDS[r.test.method], _p(r), _verdict(r), r.note or "–"])
    return head, out


def gate_line(comparison: Comparison) -> str:
    """One sentence for the gate: which figures regressed, or that none did."""
    pct = comparison.max_regression_pct
    threshold = f"by more than {pct:g}%" if pct else "at all"
    bad = comparison.regressions
    if not bad:
        return (f"no figure is significantly worse {threshold} (α = {comparison.alpha:g}, Holm-adjusted over "
                f"{sum(1 for r in comparison.rows if r.test.p is not None)} tests)")
    names = ", ".join(f"{r.checkpoint} {r.stage or ''} {r.title} ({_worse(r)})".replace("  ", " ") for r in bad)
    return f"{len(bad)} figure(s) significantly worse {threshold}: {names}"


def _worse(row: Row) -> str:
    w = row.worse_by
    return f"{w:+.1%} worse" if w is not None else "worse"


def side_line(side: dict[str, Any]) -> str:
    """One side in words: where it is, its trials and its labels."""
    labels = label_text(side.get("labels"))
    return f"`{side['given']}` ({side['trials']} trial(s))" + (f", labels {labels}" if labels != "–" else "")


def render_markdown(comparison: Comparison) -> str:
    c = comparison
    out = ["# serve-bench comparison", "", f"Generated {c.generated_utc}.", "",
           f"- baseline: {side_line(c.baseline)}",
           f"- candidate: {side_line(c.candidate)}",
           f"- test: {c.method}; ratios are candidate / baseline; significant at α = {c.alpha:g} after Holm's "
           "adjustment over every tested figure",
           f"- SLO (capacity, goodput): {c.slo['slo_ms']} at p{c.slo['percentile']:g}, attainment "
           f"{c.slo['min_attainment']}", "", f"**Gate:** {gate_line(c)}.", ""]
    if c.notes:
        out += ["Notes:", ""] + [f"- {n}" for n in c.notes] + [""]
    out += ["## Figures", "", md_table(table(c))]
    return "\n".join(out)


def to_json(comparison: Comparison) -> dict[str, Any]:
    data = dataclasses.asdict(comparison)
    for row, raw in zip(comparison.rows, data["rows"]):
        raw.update(worse_by=row.worse_by, direction=row.direction)
    data["regressions"] = [f"{r.checkpoint}|{r.profile or ''}|{r.stage or ''}|{r.key}" for r in comparison.regressions]
    data["gate"] = gate_line(comparison)
    return json_safe(data)


def write(comparison: Comparison, directory: Path) -> tuple[Path, Path]:
    md, js = directory / MARKDOWN, directory / JSON
    try:
        write_text(md, render_markdown(comparison))
        write_json(js, to_json(comparison))  # json_safe: no NaN left
    except OSError as err:
        raise ConfigError(f"cannot write the comparison in {directory}: {err.strerror}",
                          hint="choose a writable --out") from None
    return md, js
