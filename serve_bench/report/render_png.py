"""Figures drawn by matplotlib (Agg, no display) as PNG files beside the report: plotly's own PNG export
needs kaleido and a Chrome of its own, which a machine without internet cannot fetch."""

from __future__ import annotations

import textwrap
from pathlib import Path

from serve_bench.report.figures import Figure, Panel

_MARKERS = {"circle": "o", "star": "*", "x": "x"}


def write_png(fig: Figure, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    n = len(fig.panels)
    figure, axes = plt.subplots(1, n, figsize=(6.4 * n, 5.2), squeeze=False)
    for ax, panel in zip(axes[0], fig.panels):
        _panel(ax, panel)
    figure.suptitle(fig.title, fontsize=13)
    figure.text(0.01, 0.01, "\n".join(textwrap.wrap(fig.caption, min(120 * n, 330))[:5]),
                fontsize=7, color="#444444", va="bottom")
    figure.tight_layout(rect=(0, 0.1, 1, 0.95))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _panel(ax, panel: Panel) -> None:  # noqa: ANN001 - a matplotlib Axes
    labelled = set()
    for s in panel.series:
        if not s.x:
            continue
        label = None if s.name in labelled else s.name
        labelled.add(s.name)
        marker = _MARKERS.get(s.symbol, "o")
        face = "none" if s.hollow and marker != "x" else s.color
        line = "--" if s.dash else "-"
        if s.mode == "markers":
            ax.plot(s.x, s.y, linestyle="none", marker=marker, markersize=s.size, color=s.color,
                    markerfacecolor=face, label=label)
        elif s.mode == "lines":
            ax.plot(s.x, s.y, linestyle=line, color=s.color, label=label)
        else:
            ax.plot(s.x, s.y, linestyle=line, marker=marker, color=s.color, label=label)
    rows = list(dict.fromkeys(b.row for b in panel.bars))
    for bar in panel.bars:
        ax.barh(rows.index(bar.row), bar.length, left=bar.start, color="#bbbbbb" if bar.flagged else bar.color,
                hatch="//" if bar.flagged else None, edgecolor="#333333", alpha=0.85)
        ax.text(bar.start + bar.length / 2, rows.index(bar.row), bar.label, ha="center", va="center", fontsize=7)
    if rows:
        ax.set_yticks(range(len(rows)), rows)
    for ref in panel.lines:
        if ref.vertical:
            ax.axvline(ref.value, linestyle=":", color=ref.color)
            ax.annotate(ref.label, (ref.value, 1.0), xycoords=("data", "axes fraction"), fontsize=7,
                        color=ref.color, rotation=90, va="top", ha="right")
        else:
            ax.axhline(ref.value, linestyle="--", color=ref.color)
            ax.annotate(ref.label, (0.01, ref.value), xycoords=("axes fraction", "data"), fontsize=8,
                        color=ref.color, va="bottom")
    if panel.empty_note:
        ax.text(0.5, 0.5, "\n".join(textwrap.wrap(panel.empty_note, 60)), transform=ax.transAxes, ha="center",
                va="center", color="#666666", fontsize=11)
    ax.set_title(panel.title, fontsize=11)
    ax.set_xlabel(panel.x_label)
    ax.set_ylabel(panel.y_label)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
