"""``serve-bench dashboards``."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from serve_bench.errors import ConfigError
from serve_bench.observe.dashboards import DEFAULT_EXPORTER, DEFAULT_VLLM, TREE, write_tree
from serve_bench.observe.server_metrics import fetch, parse
from serve_bench.observe.vllm_names import WRITTEN_FOR


def _exported(source: str) -> set[str]:
    """The vllm: sample names a server's /metrics holds: read from the server (its URL) or a saved scrape."""
    if source.startswith(("http://", "https://")):
        text = fetch(source.removesuffix("/metrics"), None)
        if text is None:
            raise ConfigError(f"--vllm-metrics {source}: no /metrics answered there",
                              hint="give the vLLM server's URL, or a saved scrape (curl URL/metrics > FILE)")
    else:
        try:
            text = Path(source).read_text(encoding="utf-8")
        except OSError as err:
            raise ConfigError(f"--vllm-metrics {source}: {err.strerror}") from None
    try:
        names = set(parse(text))
    except ValueError as err:
        raise ConfigError(f"--vllm-metrics {source}: not Prometheus text ({err})") from None
    if not names:
        raise ConfigError(f"--vllm-metrics {source}: no vllm: metrics in it", hint="is it a vLLM server's /metrics?")
    return names


@click.command()
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Directory for the tree (new or empty, unless --force).")
@click.option("--exporter", default=DEFAULT_EXPORTER, show_default=True, metavar="HOST:PORT",
              help="Where Prometheus scrapes serve-bench's exporter.")
@click.option("--vllm", default=None, metavar="HOST:PORT",
              help=f"Where Prometheus scrapes the vLLM server (set server.port in the study to match) "
                   f"[default: {DEFAULT_VLLM}].")
@click.option("--force", is_flag=True, help="Write into a directory that is not empty, overwriting these files.")
@click.option("--vllm-metrics", default=None, metavar="URL|FILE",
              help=f"A vLLM server's /metrics (the server's URL, or a saved scrape): the queries take the names it "
                   f"exports (they are written for vLLM {WRITTEN_FOR}), and a name it lacks is a warning.")
def dashboards(out: Path, exporter: str, vllm: str | None, force: bool, vllm_metrics: str | None) -> None:
    """Write Grafana dashboards, their provisioning, a Prometheus scrape configuration
    and a compose file to OUT, ready for `docker compose up -d`."""
    have = _exported(vllm_metrics) if vllm_metrics else None
    root, renamed, missing = write_tree(out, exporter=exporter, vllm=vllm, force=force, exported=have)
    click.echo(f"wrote {root}:")
    for rel in TREE:
        click.echo(f"  {rel}")
    for line in renamed:
        click.echo(f"renamed for this server: {line}")
    for line in missing:
        click.echo(f"warning: this server does not export {line.split(': ', 1)[1]} (panel "
                   f"{line.split(': ', 1)[0]!r} will be empty)", err=True)
    click.echo(f"next: cd {shlex.quote(str(root))} && docker compose up -d, "
               "then open http://127.0.0.1:3000 (see README.txt)")
