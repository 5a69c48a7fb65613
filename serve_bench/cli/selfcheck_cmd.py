"""``serve-bench selfcheck``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from serve_bench.cli.views import PlainView
from serve_bench.errors import ConfigError


@click.command()
@click.option("--setting", "settings", multiple=True, metavar="NAME",
              help="decode, prefill or queue (repeatable; default: all three).")
@click.option("--duration-s", type=float, default=10.0, show_default=True, help="Length of each ladder stage.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/selfcheck"),
              show_default=True, help="Directory for the runs and selfcheck.md / selfcheck.json.")
def selfcheck(settings: tuple[str, ...], duration_s: float, out: Path) -> None:
    """Check this machine's measurement chain against an engine of known capacity, before any real server.

    For each setting, a simulated continuous-batching engine (stated step costs, its own per-request
    timings) runs in its own process; a closed-loop ladder goes through `serve-bench run` against it, and
    the report's capacity is set beside the engine's exact truth. Prints the load generator's own error,
    how many streams one core of it drives, and the report's capacity and replica error. About 70 s per
    setting at the default stage length."""
    # aiohttp (the engine's server) comes with it: a third of a second of every other command's start
    from serve_bench.selfcheck import RESULT_MD, check_names, run_selfcheck

    names = check_names(settings)  # before anything starts
    if not duration_s > 0:
        raise ConfigError(f"--duration-s must be positive, not {duration_s:g}")
    checks = run_selfcheck(names, out, duration_s=duration_s, events=PlainView(sys.stdout), say=click.echo)
    click.echo(f"selfcheck: {out / RESULT_MD} ({len(checks)} setting(s))")
