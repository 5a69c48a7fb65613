"""``serve-bench model``."""

from __future__ import annotations

import click


@click.command()
@click.argument("model", default="default")
def model(model: str) -> None:
    """Resolve MODEL ('default', a directory or a hub id) to a local checkpoint and
    print its path; the bundled default is converted on first use."""
    from serve_bench.models.checkpoint import Checkpoint  # pulls in torch: not for --help
    from serve_bench.models.resolve import resolve  # pulls in torch: not for --help

    resolved = resolve(model)
    ckpt = Checkpoint.open(resolved.path)
    click.echo(f"{resolved.name}\t{resolved.source}\t{ckpt.num_parameters()} parameters\t{resolved.path}")
