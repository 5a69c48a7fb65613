"""The capacity-planning report: from run directories to a decision.

    inputs      run directories -> per checkpoint, per stage: raw-record arrays, recomputed summary, flags
    knee        Kneedle on throughput against load
    slo         highest load within the SLOs, interpolated, bootstrap interval, binding constraint
    capacity    replicas, GPU-hours, cost, kWh, CO2; the verdict sentence
    accuracy    lm-eval results of a checkpoint, or None ("not evaluated")
    analysis    all of the above per checkpoint -> :class:`Report`
    figures     plot data, drawn by render_plotly (HTML) and render_png (matplotlib PNG)
    tables, markdown, html, build   writers; :func:`build_report` is the entry point (prints nothing)
"""

from __future__ import annotations

from serve_bench.report.build import ReportFiles, build_report, settings_for

__all__ = ["ReportFiles", "build_report", "settings_for"]
