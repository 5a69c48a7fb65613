"""``serve-bench bench``: `vllm bench serve`'s command line (serve_bench.vllm_bench)."""

from __future__ import annotations

import contextlib
import sys
from typing import Any

import click
from rich.console import Console

from serve_bench.cli import views
from serve_bench.errors import EXIT_INTERRUPTED

console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)

SHOWN = (("completed", "Successful requests", "{:d}"), ("failed", "Failed requests", "{:d}"),
         ("duration", "Benchmark duration (s)", "{:.2f}"), ("total_input_tokens", "Total input tokens", "{:d}"),
         ("total_output_tokens", "Total generated tokens", "{:d}"),
         ("request_throughput", "Request throughput (req/s)", "{:.2f}"),
         ("request_goodput", "Request goodput (req/s)", "{:.2f}"),
         ("output_throughput", "Output token throughput (tok/s)", "{:.2f}"),
         ("total_token_throughput", "Total token throughput (tok/s)", "{:.2f}"))


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                 "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def bench(args: tuple[str, ...]) -> None:
    """vllm bench serve's command line against a running server, measured by serve-bench: the same flags
    (serve-bench bench --help lists them), vLLM's result JSON (every key, the same meaning) with serve-bench's
    extras, and a normal run directory. A vllm bench serve flag serve-bench does not take is refused by name."""
    from serve_bench.vllm_bench.args import parse, parser

    if "-h" in args or "--help" in args:
        click.echo(parser().format_help())
        return
    a = parse(list(args))
    from serve_bench.vllm_bench.run import bench as run_bench

    with contextlib.ExitStack() as stack:
        shown: Any = views.PlainView(sys.stdout)
        try:
            result, run_dir, saved = run_bench(a, shown)
        except KeyboardInterrupt:
            stack.close()
            console.print("[yellow]interrupted:[/] every finished request is kept")
            raise click.exceptions.Exit(EXIT_INTERRUPTED) from None
    console.print("{s:{c}^{n}}".format(s=" Serving Benchmark Result ", n=50, c="="))
    for key, text, fmt in SHOWN:
        if result.get(key) is not None:
            console.print(f"{text + ':':<40} {fmt.format(result[key])}")
    words = [str(int(p)) if int(p) == p else str(p) for p in a.metric_percentiles]
    for metric in a.percentile_metrics:
        shown_p = ", ".join(f"P{w} {result[f'p{w}_{metric}_ms']:.2f}" for w in words)
        console.print(f"{metric.upper()} (ms): mean {result[f'mean_{metric}_ms']:.2f}, median "
                      f"{result[f'median_{metric}_ms']:.2f}, {shown_p}")
    console.print(f"run directory: {run_dir}", soft_wrap=True)
    if saved is not None:
        console.print(f"result: {saved}", soft_wrap=True)
