"""The ``serve-bench`` command: parse, build a validated request, call the
library, turn its errors into messages and exit codes."""

from __future__ import annotations

import logging
import sys
from typing import Any

import click
from rich.console import Console

from serve_bench import __version__
from serve_bench.cli import (
    bench_cmd,
    compare_cmd,
    dashboards_cmd,
    eval_cmd,
    model_cmd,
    prune_cmd,
    report_cmd,
    run_cmd,
    selfcheck_cmd,
    validate_cmd,
)
from serve_bench.errors import EXIT_INTERRUPTED, ServeBenchError

err_console = Console(stderr=True, highlight=False, soft_wrap=True)


class Group(click.Group):
    """Maps serve-bench errors and Ctrl-C to a message and an exit code, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ServeBenchError as err:
            err_console.print(f"[bold red]error:[/] {err.message}")
            if err.hint:
                err_console.print(f"  [dim]hint:[/] {err.hint}")
            ctx.exit(err.exit_code)
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]: finished results are kept")
            ctx.exit(EXIT_INTERRUPTED)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="serve-bench")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def cli(verbose: int) -> None:
    """Prune GLU-MLP widths, serve each checkpoint with vLLM, load it with Locust,
    and plan capacity from what was measured.

    Exit codes: 0 ok, 1 error, 2 bad configuration, 3 model, 4 pruning,
    5 server, 6 load generator, 7 evaluation, 8 regression (compare
    --max-regression), 9 a capacity plan that does not hold (validate),
    130 interrupted.
    """
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(level=max(level, logging.DEBUG), format="%(levelname)s %(name)s: %(message)s")


def _register() -> None:
    cli.add_command(run_cmd.run)
    cli.add_command(run_cmd.summarize)
    cli.add_command(run_cmd.worker)
    cli.add_command(prune_cmd.prune)
    cli.add_command(model_cmd.model)
    cli.add_command(dashboards_cmd.dashboards)
    cli.add_command(eval_cmd.eval_)
    cli.add_command(report_cmd.report)
    cli.add_command(selfcheck_cmd.selfcheck)
    cli.add_command(compare_cmd.compare)
    cli.add_command(validate_cmd.validate)
    cli.add_command(bench_cmd.bench)


_register()


# Options that take several numbers after one flag (--prune 0.1 0.2 0.4), as
# users of argparse-style tools expect; click wants the flag repeated.
VARIADIC_NUMERIC = ("--prune", "--expansion-ratio")


def expand_variadic(argv: list[str]) -> list[str]:
    out: list[str] = []
    flag, took = None, 0
    for token in argv:
        if flag and _is_number(token):
            out += [flag, token]
            took += 1
            continue
        if flag and not took:  # a flag with no number after it: let click report it
            out.append(flag)
        flag = None
        if token in VARIADIC_NUMERIC:
            flag, took = token, 0
            continue
        out.append(token)
    if flag and not took:
        out.append(flag)
    return out


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def main(argv: list[str] | None = None) -> None:
    args = expand_variadic(sys.argv[1:] if argv is None else argv)
    cli.main(args=args, prog_name="serve-bench", standalone_mode=True)


if __name__ == "__main__":
    sys.exit(main())
