"""``serve-bench report``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from serve_bench.cli.options import slo_flags
from serve_bench.errors import ConfigError
from serve_bench.evaluate.table import TABLE_MD, dichotomy_table
from serve_bench.measure.metrics import SLO_METRICS
from serve_bench.report import build_report, settings_for
from serve_bench.report.build import expand_series
from serve_bench.validate.found import measured_efficiency


@click.command()
@click.argument("run_dirs", nargs=-1, required=True, metavar="RUN_DIR...", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory for the report (default: RUN_DIR/report; required with several runs).")
@click.option("--rps", type=float, default=None, help="Target traffic, requests/s.")
@click.option("--input-tokens", type=float, default=None, help="Mean input tokens per request (default: as measured).")
@click.option("--output-tokens", type=float, default=None,
              help="Mean output tokens per request (default: as measured).")
@click.option("--slo", "slo", multiple=True, metavar="NAME=MS",
              help=f"SLO limit, repeatable ({', '.join(SLO_METRICS)}); replaces the run's.")
@click.option("--goodput", multiple=True, metavar="KEY:MS",
              help="SLO limits in vllm bench serve's spelling: --goodput 'ttft:500 tpot:50' (ttft, tpot, e2el).")
@click.option("--slo-percentile", type=float, default=None, help="Percentile each SLO limit holds at (default 99).")
@click.option("--headroom", type=float, default=None, help="Share of a replica's capacity kept free (default 0.2).")
@click.option("--gpu-hour-price", type=float, default=None, help="Price of one GPU-hour (default 2.0).")
@click.option("--currency", default=None, help="Currency of --gpu-hour-price (default USD).")
@click.option("--gpus-per-replica", type=int, default=None, help="GPUs per replica (default 1).")
@click.option("--grid-g-per-kwh", type=float, default=None, help="Grid carbon intensity, gCO2e/kWh (default: no CO2).")
@click.option("--scaling-efficiency", "efficiency", default=None, metavar="F|measured",
              help="Plan replicas as if a fleet of N served N × F × one replica's capacity (default 1: linear); "
                   "'measured': the newest `serve-bench validate` of these runs.")
def report(run_dirs: tuple[Path, ...], out: Path | None, slo: tuple[str, ...], goodput: tuple[str, ...],
           slo_percentile: float | None, efficiency: str | None, **capacity: Any) -> None:
    """Capacity-planning report for RUN_DIR(s): the knee, the highest load within the SLOs (with a
    bootstrap interval), replicas, cost and energy for a target traffic, and a verdict per pruned
    checkpoint. Writes report.md, report.html (self-contained), report.json and plots/*.png; with
    several runs whose checkpoints were evaluated, also dichotomy.md and .json across them.

    Settings: the run's study (its `report:` section), then these flags."""
    overrides: dict[str, Any] = {"capacity": {k: v for k, v in capacity.items() if v is not None}}
    if slo or goodput:
        overrides["slo_ms"] = slo_flags(slo, goodput)
    if slo_percentile is not None:
        overrides["slo_percentile"] = slo_percentile
    paths = list(run_dirs)
    if efficiency is not None:
        overrides["capacity"]["scaling_efficiency"] = _efficiency(efficiency, expand_series(paths))
    files = build_report(paths, out, settings_for(expand_series(paths), overrides))
    click.echo(f"report: {files.html}")
    for path in (files.markdown, files.json):
        click.echo(f"        {path}")
    click.echo(f"        {len(files.pngs)} plots in {files.directory / 'plots'}")
    if len(paths) > 1:  # one run has its own table already (written by `run`)
        table = dichotomy_table(paths, write=False)
        if table.data["tasks"]:
            table.write(files.directory)
            click.echo(f"        {files.directory / TABLE_MD} (accuracy across the runs' checkpoints)")
    for line in files.verdicts:
        click.echo(f"  {line}")


def _efficiency(text: str, runs: list[Path]) -> float:
    if text == "measured":
        found = measured_efficiency(runs)
        if found is None:
            raise ConfigError("--scaling-efficiency measured: no validation of these runs measured one",
                              hint="run `serve-bench validate RUN_DIR --url … ` (or --replicas N) first")
        return found[0]
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"--scaling-efficiency {text!r}: a number (0 < F ≤ 1.5) or 'measured'") from None
