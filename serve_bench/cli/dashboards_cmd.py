"""``serve-bench dashboards``."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from serve_bench.observe.dashboards import DEFAULT_EXPORTER, DEFAULT_VLLM, TREE, write_tree


@click.command()
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Directory for the tree (new or empty, unless --force).")
@click.option("--exporter", default=DEFAULT_EXPORTER, show_default=True, metavar="HOST:PORT",
              help="Where Prometheus scrapes serve-bench's exporter.")
@click.option("--vllm", default=None, metavar="HOST:PORT",
              help=f"Where Prometheus scrapes the vLLM server (set server.port in the study to match) "
                   f"[default: {DEFAULT_VLLM}].")
@click.option("--force", is_flag=True, help="Write into a directory that is not empty, overwriting these files.")
def dashboards(out: Path, exporter: str, vllm: str | None, force: bool) -> None:
    """Write Grafana dashboards, their provisioning, a Prometheus scrape configuration
    and a compose file to OUT, ready for `docker compose up -d`."""
    root = write_tree(out, exporter=exporter, vllm=vllm, force=force)
    click.echo(f"wrote {root}:")
    for rel in TREE:
        click.echo(f"  {rel}")
    click.echo(f"next: cd {shlex.quote(str(root))} && docker compose up -d, "
               "then open http://127.0.0.1:3000 (see README.txt)")
