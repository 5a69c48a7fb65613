"""``serve-bench prune``."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from serve_bench.prune import Target
from serve_bench.prune.criteria import ALIASES, CRITERIA, DEFAULT
from serve_bench.prune.plan import DEFAULT_DIVISOR, DIVISORS

console = Console(highlight=False)


@click.command()
@click.argument("model", default="default")
@click.option("--prune", "fractions", type=float, multiple=True,
              help="Fraction of MLP neurons to remove, e.g. 0.4; repeat or list several: --prune 0.1 0.4.")
@click.option("--expansion-ratio", "ratios", type=float, multiple=True,
              help="Target k / hidden size instead of a fraction, e.g. 2.4.")
@click.option("--criterion", type=click.Choice(sorted([*CRITERIA, *ALIASES]), case_sensitive=False),
              default=DEFAULT, show_default=True, help="Neuron importance criterion (maw is an alias of ppm).")
@click.option("--divisor", type=click.Choice([str(d) for d in DIVISORS]), default=str(DEFAULT_DIVISOR),
              show_default=True, help="Round k to the nearest multiple of this (0: no rounding).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("checkpoints"),
              show_default=True, help="Directory that receives one checkpoint per target.")
@click.option("--overwrite", is_flag=True, help="Replace output checkpoints that already exist.")
def prune(model: str, fractions: tuple[float, ...], ratios: tuple[float, ...], criterion: str, divisor: str,
          out: Path, overwrite: bool) -> None:
    """Width-prune the GLU MLPs of MODEL ('default', a checkpoint directory or a hub id).

    Writes one ordinary Hugging Face checkpoint per target, with a smaller
    intermediate_size and a pruning_manifest.json, that vLLM serves unchanged.
    """
    from serve_bench.models.resolve import resolve  # pulls in torch: not for --help
    from serve_bench.prune import prune as run_prune  # the pruner pulls in torch: only when pruning

    targets = [Target(prune=p) for p in fractions] + [Target(expansion_ratio=r) for r in ratios]
    resolved = resolve(model)
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                  console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task(f"pruning {resolved.name}", total=None)
        results = run_prune(resolved, targets, out=out, criterion=criterion, divisor=int(divisor),
                            overwrite=overwrite,
                            progress=lambda done, total: bar.update(task, completed=done, total=total))
    table = Table(title=f"{resolved.name}, criterion {results[0].manifest['criterion']}")
    for col in ("target", "k", "pruned", "expansion ratio", "parameters", "checkpoint"):
        table.add_column(col)
    for r in results:
        m = r.manifest
        table.add_row(r.plan.target.label, str(r.plan.k), f"{m['realised_prune']:.1%}",
                      f"{m['expansion_ratio_before']:.2f} → {m['expansion_ratio']:.2f}",
                      f"{m['parameters_before'] / 1e6:.1f}M → {m['parameters_after'] / 1e6:.1f}M", str(r.path))
    console.print(table)
    for r in results:
        for w in r.plan.warnings:
            console.print(f"[yellow]warning[/] ({r.plan.target.label}): {w}")
