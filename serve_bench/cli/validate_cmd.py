"""``serve-bench validate``."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from serve_bench.cli import views
from serve_bench.cli.options import engine_args as parse_engine_args
from serve_bench.errors import EXIT_INTERRUPTED, EXIT_PLAN_FAILED
from serve_bench.load.balance import BALANCE_POLICIES
from serve_bench.validate.found import VALIDATION_MD
from serve_bench.validate.render import rows
from serve_bench.validate.run import ValidationRequest, validate_plan
from serve_bench.validate.traffic import DEFAULT_DURATION_S, DEFAULT_SEARCH

console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)


@click.command()
@click.argument("report", type=click.Path(path_type=Path))
@click.option("--checkpoint", default=None, help="The checkpoint whose plan to validate (name or label; default: the "
                                                 "only one with a plan, else the base).")
@click.option("--url", "urls", multiple=True, help="An endpoint of the running fleet (repeat it for each).")
@click.option("--replicas", type=int, default=None, metavar="N",
              help="Launch N replicas of the checkpoint instead (default, without --url: as many as the plan asks).")
@click.option("--fewer", is_flag=True, help="Also replay the traffic on one replica fewer, to show the margin.")
@click.option("--duration", type=float, default=DEFAULT_DURATION_S, show_default=True, metavar="S",
              help="Seconds per stage.")
@click.option("--search", type=float, multiple=True, metavar="X",
              help="Rates at which the fleet's capacity is measured, as multiples of its predicted capacity "
                   f"(repeatable; default {' '.join(f'{x:g}' for x in DEFAULT_SEARCH)}).")
@click.option("--no-search", is_flag=True, help="Replay the plan's traffic only; the fleet's capacity is not measured.")
@click.option("--balance", type=click.Choice(BALANCE_POLICIES), default=None,
              help="How requests are spread over the fleet (default least-outstanding).")
@click.option("--served-model", default=None, help="Model name at --url (default: the server's first).")
@click.option("--tokenizer", default=None, help="Tokenizer directory for --url (default: the path vLLM reports).")
@click.option("--model", default=None, help="Checkpoint directory to launch (default: the one the report measured).")
@click.option("--engine-args", default=None, help="vLLM engine arguments for launched replicas (default: the run's).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the arrivals.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The validation directory itself (default: RUN/validations/<time>-<checkpoint>).")
@click.option("--quiet", is_flag=True, help="Plain lines, one per event, even on a terminal.")
def validate(report: Path, checkpoint: str | None, urls: tuple[str, ...], replicas: int | None, fewer: bool,
             duration: float, search: tuple[float, ...], no_search: bool, balance: str | None,
             served_model: str | None, tokenizer: str | None, model: str | None, engine_args: str | None,
             seed: int, out: Path | None, quiet: bool) -> None:
    """Replay the traffic a capacity plan was made for (REPORT: a report directory, its report.json, or the run
    directory holding report/) against the fleet the plan asks for, and say predicted against observed: the
    SLOs at the plan's traffic, SLO attainment with its interval, the fleet's capacity, capacity per replica
    and the scaling efficiency (fleet / N × one replica's), which `serve-bench report --scaling-efficiency`
    takes. Open loop, Poisson arrivals, latency from the intended send.

    Exit codes: 0 the plan holds, 9 it does not (or could not be shown to), 2 bad input, 5 a server failed."""
    req = ValidationRequest(report=report, checkpoint=checkpoint, urls=list(urls), replicas=replicas, fewer=fewer,
                            duration_s=duration, search=() if no_search else (search or DEFAULT_SEARCH), out=out,
                            served_model=served_model, tokenizer=tokenizer, model=model,
                            engine_args=_engine_args(engine_args), balance=balance, seed=seed)
    with contextlib.ExitStack() as stack:
        shown: Any = views.PlainView(sys.stdout) if quiet or not console.is_terminal else stack.enter_context(
            views.LiveView(console, 1 + len(req.search), None))
        try:
            result, where = validate_plan(req, shown)
        except KeyboardInterrupt:
            stack.close()
            console.print("[yellow]interrupted:[/] every finished stage and request is kept")
            raise click.exceptions.Exit(EXIT_INTERRUPTED) from None
    table = Table("figure", "predicted", "observed", title=f"plan for {result.checkpoint}: {result.rps:g} req/s on "
                                                           f"{result.replicas} replica(s)", title_justify="left")
    for row in rows(result):
        table.add_row(*row)
    console.print(table)
    for note in result.notes:
        console.print(f"[dim]- {note}[/]", soft_wrap=True)
    style = "green" if result.holds else "bold red"
    console.print(f"[{style}]{result.verdict}[/]", soft_wrap=True)
    console.print(f"validation: {where / VALIDATION_MD}", soft_wrap=True)
    if not result.holds:
        raise click.exceptions.Exit(EXIT_PLAN_FAILED)


def _engine_args(text: str | None) -> list[str] | None:
    return None if text is None else parse_engine_args(text)
