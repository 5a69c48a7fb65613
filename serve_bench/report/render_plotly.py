"""Figures drawn by plotly for the HTML page: one ``<div>`` each, plotly.js inlined once by the page
(:func:`plotly_js`), so the page needs no network."""

from __future__ import annotations

from serve_bench.report.figures import Figure, Panel

_SYMBOLS = {"circle": "circle", "star": "star", "x": "x"}


def plotly_js() -> str:
    """The plotly.js bundle that ships with the plotly package (no CDN)."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def figure_div(fig: Figure) -> str:
    """The figure as an HTML fragment that expects plotly.js already on the page."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    panels = fig.panels
    plot = make_subplots(rows=1, cols=len(panels), subplot_titles=[p.title for p in panels],
                         horizontal_spacing=0.12 if len(panels) > 1 else 0.0)
    shown: set[str] = set()  # one legend entry per series name across the panels
    for col, panel in enumerate(panels, 1):
        _panel(plot, go, panel, col, shown)
    plot.update_layout(height=480 if len(panels) > 1 or panels[0].bars else 440, template="plotly_white",
                       margin={"l": 60, "r": 20, "t": 60, "b": 60}, legend={"orientation": "h", "y": -0.2},
                       font={"family": "system-ui, -apple-system, 'Segoe UI', sans-serif"})
    return plot.to_html(full_html=False, include_plotlyjs=False, div_id=f"fig-{fig.slug}",
                        config={"displaylogo": False, "responsive": True})


def _panel(plot, go, panel: Panel, col: int, shown: set[str]) -> None:  # noqa: ANN001 - plotly's objects
    for s in panel.series:
        legend = s.name not in shown
        shown.add(s.name)
        symbol = _SYMBOLS.get(s.symbol, "circle") + ("-open" if s.hollow and s.symbol != "x" else "")
        plot.add_trace(go.Scatter(
            x=s.x, y=s.y, name=s.name, mode=s.mode, text=s.text or None, showlegend=legend, legendgroup=s.name,
            line={"color": s.color, "dash": "dash" if s.dash else "solid"},
            marker={"color": s.color, "symbol": symbol, "size": s.size}), row=1, col=col)
    for bar in panel.bars:
        plot.add_trace(go.Bar(
            x=[bar.length], y=[bar.row], base=[bar.start], orientation="h", name=bar.label, text=[bar.label],
            textposition="inside", showlegend=False, hovertext=[bar.label],
            marker={"color": "#bbbbbb" if bar.flagged else bar.color,
                    "pattern": {"shape": "/" if bar.flagged else ""}, "line": {"color": "#333333", "width": 1}}),
            row=1, col=col)
    for line in panel.lines:
        if line.vertical:
            plot.add_vline(x=line.value, line_dash="dot", line_color=line.color, annotation_text=line.label,
                           annotation_position="bottom right", annotation_font_size=10, row=1, col=col)
        else:
            plot.add_hline(y=line.value, line_dash="dash", line_color=line.color, annotation_text=line.label,
                           annotation_position="top left", row=1, col=col)
    if panel.empty_note:
        suffix = "" if col == 1 else str(col)
        x0, x1 = plot.layout[f"xaxis{suffix}"].domain
        y0, y1 = plot.layout[f"yaxis{suffix}"].domain
        plot.add_annotation(text=panel.empty_note, xref="paper", yref="paper", x=(x0 + x1) / 2, y=(y0 + y1) / 2,
                            showarrow=False, font={"size": 14, "color": "#666666"})
        plot.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, row=1, col=col)
        plot.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, row=1, col=col)
    plot.update_xaxes(title_text=panel.x_label, row=1, col=col)
    plot.update_yaxes(title_text=panel.y_label, row=1, col=col)
    if panel.bars:
        plot.update_layout(barmode="overlay")
