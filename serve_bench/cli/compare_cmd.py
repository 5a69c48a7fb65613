"""``serve-bench compare``."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from serve_bench.compare import render
from serve_bench.compare.build import DEFAULT_ALPHA, DEFAULT_RESAMPLES
from serve_bench.compare.build import compare as compare_runs
from serve_bench.errors import EXIT_REGRESSION

console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)


@click.command()
@click.argument("baseline", type=click.Path(path_type=Path))
@click.argument("candidate", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory for compare.md and compare.json (default: CANDIDATE/compare).")
@click.option("--max-regression", type=float, default=None, metavar="PCT",
              help=f"Gate: exit {EXIT_REGRESSION} when a figure is significantly worse by more than PCT percent.")
@click.option("--alpha", type=float, default=DEFAULT_ALPHA, show_default=True,
              help="Significance level, after Holm's adjustment over all the figures tested.")
@click.option("--resamples", type=click.IntRange(100, 100_000), default=DEFAULT_RESAMPLES, show_default=True,
              help="Bootstrap resamples a stage (one trial a side).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap.")
@click.option("--force", is_flag=True, help="Compare runs of different hardware or model weights anyway.")
@click.option("--all", "show_all", is_flag=True, help="Print every figure, not only the ones that changed.")
def compare(baseline: Path, candidate: Path, out: Path | None, max_regression: float | None, alpha: float,
            resamples: int, seed: int, force: bool, show_all: bool) -> None:
    """Is CANDIDATE different from BASELINE, figure by figure? Each is a run directory, a directory of
    runs (each one trial of the same study) or a report directory. Stages are aligned by checkpoint,
    profile and stage; each headline figure (throughput, goodput, TTFT/TPOT/ITL/E2EL percentiles, energy
    per token, capacity, replicas, accuracy) gets the ratio candidate / baseline with its interval and a
    significance test: Welch's t across trials with two or more trials a side, else a block bootstrap of
    each stage's requests (which covers sampling noise only, not run to run).

    Exit codes: 0 no figure significantly worse than --max-regression allows (or no gate), 8 one or more
    are (named), 2 the inputs cannot be compared."""
    result = compare_runs(baseline, candidate, alpha=alpha, max_regression_pct=max_regression, force=force,
                          resamples=resamples, seed=seed)
    md, js = render.write(result, out if out is not None else Path(candidate) / "compare")
    picked = result.rows if show_all else result.significant  # a regression is significant too
    head, rows = render.table(result, picked)
    shown = Table(*head, title=f"{result.candidate['given']} against {result.baseline['given']}", title_justify="left")
    for row, cells in zip(picked, rows):
        shown.add_row(*cells, style="bold red" if row.regression else None)
    if rows:
        console.print(shown)
    quiet = len(result.rows) - len(rows)
    if quiet:
        console.print(f"{quiet} figure(s) not significantly different or untested (--all prints them)")
    for role, side in (("baseline", result.baseline), ("candidate", result.candidate)):
        if side.get("labels"):
            console.print(f"{role}: {render.side_line(side)}", highlight=False)
    console.print(f"test: {result.method}")
    for note in result.notes:
        console.print(f"note: {note}")
    console.print(("[bold red]gate:[/] " if result.regressions and max_regression is not None else "gate: ")
                  + render.gate_line(result))
    console.print(f"comparison: {md}\n            {js}")
    if max_regression is not None and result.regressions:
        sys.exit(EXIT_REGRESSION)
