"""``serve-bench run`` and ``serve-bench summarize``."""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.live import Live
from rich.table import Table

from serve_bench.errors import ConfigError

# a pipe gets 80 columns by default, too narrow for the comparison table
console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)


class LiveView:
    """Draws the pipeline's events: one line per finished stage, a live status line."""

    def __init__(self, live: Live) -> None:
        self.live = live
        self.checkpoint = ""
        self.stage = ""
        self.ok = self.failed = 0
        self.started = time.monotonic()

    def _status(self) -> str:
        return (f"[bold]{self.checkpoint}[/] {self.stage}  requests ok {self.ok} failed {self.failed}  "
                f"[dim]{time.monotonic() - self.started:.0f} s[/]")

    def _refresh(self) -> None:
        self.live.update(self._status())

    def checkpoint_started(self, name: str, index: int, total: int) -> None:
        self.checkpoint, self.stage = f"[{index + 1}/{total}] {name}", "starting vLLM…"
        self._refresh()

    def server_ready(self, name: str, url: str) -> None:
        self.live.console.print(f"[green]●[/] {name} served at {url}")

    def stage_started(self, checkpoint: str, stage: str) -> None:
        self.stage = f"profile {stage}"
        self._refresh()

    def request_done(self, ok: bool) -> None:
        if ok:
            self.ok += 1
        else:
            self.failed += 1
        self._refresh()

    def stage_done(self, checkpoint: str, result: dict[str, Any]) -> None:
        s = result["summary"]
        flags = [f for f in ("server_died", "generator_saturated", "rejected") if result.get(f)]

        def f(key: str, fmt: str) -> str:
            return fmt.format(s[key]) if s.get(key) is not None else "–"

        if s.get("latency_from") == "intended send":  # open loop: from the schedule first, as sent beside it
            ttft = (f"TTFT p50 {f('median_ttft_from_intended_ms', '{:.1f}')} ms from schedule "
                    f"({f('median_ttft_ms', '{:.1f}')} from send), send lag p99 {f('p99_send_lag_ms', '{:.1f}')} ms")
        else:
            ttft = f"TTFT p50 {f('median_ttft_ms', '{:.1f}')} ms"
        energy = result.get("energy") or {}
        per_token = (energy.get("energy_per_output_token_joules") or {}).get("gross")
        joules = f"{per_token:.3g} J/token" if energy.get("measured") and per_token is not None else "energy n/m"
        self.live.console.print(
            f"  {checkpoint} {result['stage']}: {s.get('completed', 0)} ok, {s.get('failed', 0)} failed, "
            f"{f('output_throughput', '{:.1f}')} tok/s (steady {f('steady_output_throughput', '{:.1f}')}), "
            f"{ttft}, TPOT p50 {f('median_tpot_ms', '{:.2f}')} ms, {joules}"
            + (f"  [yellow]{', '.join(flags)}[/]" if flags else ""))

    def metrics_started(self, url: str) -> None:
        self.live.console.print(f"live metrics: {url}")

    def note(self, message: str) -> None:
        self.live.console.print(f"[yellow]note:[/] {message}")

    def problem(self, message: str) -> None:
        self.live.console.print(f"[red]problem:[/] {message}")


def _overrides(data: dict[str, Any], **flags: Any) -> dict[str, Any]:
    def put(path: str, value: Any) -> None:
        node = data
        *parents, leaf = path.split(".")
        for p in parents:
            if not isinstance(node.get(p), dict):  # absent, or null in the file: the flag supplies it
                node[p] = {}
            node = node[p]
        node[leaf] = value

    if flags["models"]:
        put("models", [{"model": m} for m in flags["models"]])
    for key, path in (("fractions", "prune.prune"), ("profiles", "profiles")):
        if flags[key]:
            put(path, list(flags[key]))
    for key, path in (("criterion", "prune.criterion"), ("divisor", "prune.divisor"),
                      ("include_base", "prune.include_base"), ("url", "server.url"),
                      ("served_model", "server.served_model"), ("tokenizer", "server.tokenizer"),
                      ("port", "server.port"), ("out", "out_dir"),
                      ("workers", "workers"), ("expect_workers", "remote_workers"),
                      ("master_bind_host", "master_bind_host"), ("master_port", "master_port"),
                      ("metrics_host", "metrics.host"), ("metrics_port", "metrics.port"),
                      ("on_server_death", "on_server_death")):
        if flags[key] is not None:
            put(path, flags[key])
    if flags["engine_args"] is not None:
        put("server.engine_args", shlex.split(flags["engine_args"]))
    if flags["slo"]:
        slo = {}
        for item in flags["slo"]:
            name, sep, value = item.partition("=")
            try:
                slo[name] = float(value) if sep else float("nan")
            except ValueError:
                raise ConfigError(f"--slo {item}: expected NAME=MILLISECONDS, e.g. --slo ttft_ms=500") from None
            if not sep:
                raise ConfigError(f"--slo {item}: expected NAME=MILLISECONDS, e.g. --slo ttft_ms=500")
        put("slo", slo)
    return data


@click.command()
@click.argument("study", required=False, type=click.Path(path_type=Path))
@click.option("--model", "models", multiple=True, help="Model to study ('default', a directory, a hub id); repeatable.")
@click.option("--prune", "fractions", type=float, multiple=True, help="Pruning fractions: --prune 0.2 0.4.")
@click.option("--no-prune", is_flag=True, help="Serve the models as they are, no pruned variants.")
@click.option("--include-base/--no-base", default=None, help="Serve the unpruned model as well (default: yes).")
@click.option("--criterion", default=None, help="Pruning criterion (ppm, maw, maxabs, vow, pon, l2).")
@click.option("--divisor", type=int, default=None, help="Round k to a multiple of this (0, 32, 64, 128, 256).")
@click.option("--profile", "profiles", multiple=True, help="Load profile name in load_profiles/ or a YAML path.")
@click.option("--url", default=None, help="Load an already running OpenAI-compatible server instead of launching vLLM.")
@click.option("--served-model", default=None, help="Model name at --url (default: the server's first).")
@click.option("--tokenizer", default=None, help="Tokenizer directory for --url (default: the path vLLM reports).")
@click.option("--engine-args", default=None, help="vLLM engine arguments, quoted: --engine-args '--max-num-seqs 64'.")
@click.option("--port", type=int, default=None, help="Port for the vLLM server (default: a free one).")
@click.option("--workers", type=int, default=None, help="Locust worker processes on this host (0: in-process).")
@click.option("--master", "expect_workers", type=int, default=None, metavar="N",
              help="Act as Locust master and wait for N workers started elsewhere with `serve-bench worker`.")
@click.option("--master-bind-host", default=None,
              help="Address remote workers connect to (default 127.0.0.1; Locust's master protocol is "
                   "unauthenticated, so binding elsewhere lets anyone who reaches the port join).")
@click.option("--master-port", type=int, default=None, help="Port remote workers connect to (default 5557).")
@click.option("--metrics-port", type=int, default=None,
              help="Port of the live Prometheus exporter (default 9464, or a free one if busy; 0: any free port).")
@click.option("--metrics-host", default=None,
              help="Address the exporter listens on (default 127.0.0.1; another address exposes it to the network).")
@click.option("--slo", multiple=True, help="SLO as NAME=MS (ttft_ms, tpot_ms, itl_ms, e2el_ms, ntpot_ms).")
@click.option("--on-server-death", type=click.Choice(["continue", "stop"]), default=None,
              help="After a server dies: go on to the next checkpoint, or stop.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Parent directory of run directories (default: runs).")
def run(study: Path | None, no_prune: bool, **flags: Any) -> None:
    """Serve each checkpoint of STUDY (a YAML file; default: the bundled model
    and 20%/40% pruned copies of it) with vLLM, run the load profiles against it,
    and print a comparison. Results go to a new run directory."""
    # Locust monkey-patches the process with gevent: import it before anything
    # else opens sockets or imports ssl. Patching torch's modules warns about
    # a deprecated alias it touches; that is noise to a user.
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning, message=".*reduce_op.*")
    import serve_bench.load.runner  # noqa: F401
    from serve_bench.pipeline import run_study
    from serve_bench.study import StudySpec
    from serve_bench.validation import read_yaml, validate

    data = read_yaml(study) if study else {}
    data = _overrides(dict(data or {}), **flags)
    if no_prune:
        data.setdefault("prune", {}).update(prune=[], expansion_ratio=[])
    spec = validate(StudySpec, data, str(study) if study else "command line")
    if not _loopback(spec.metrics.host):
        console.print(f"[yellow]warning:[/] the metrics exporter listens on {spec.metrics.host}: anyone who can "
                      f"reach it can read this run's live metrics.", highlight=False)
    if spec.remote_workers and not _loopback(spec.master_bind_host):
        console.print(f"[yellow]warning:[/] the Locust master listens on {spec.master_bind_host}:{spec.master_port}; "
                      f"its protocol is unauthenticated: anyone who reaches that port can join the run and send "
                      f"records. Bind to a private interface, or firewall the port.", highlight=False)
    with Live("", console=console, refresh_per_second=4, transient=True) as live:
        outcome = run_study(spec, LiveView(live))
    _print_table(outcome.rows, f"run {outcome.run_dir}")
    console.print(f"results: {outcome.run_dir}")
    if outcome.problems:
        for p in outcome.problems:
            console.print(f"[red]problem:[/] {p}")
        raise click.exceptions.Exit(5)


def _loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
def summarize(run_dir: Path) -> None:
    """Recompute RUN_DIR's comparison table from its raw per-request records."""
    from serve_bench.rundir import RunDir
    from serve_bench.summary import recompute

    if not (run_dir / "manifest.json").is_file():
        raise ConfigError(f"{run_dir} is not a serve-bench run directory (no manifest.json)")
    _print_table(recompute(RunDir(run_dir)), f"recomputed from {run_dir}")


def _print_table(rows: list[dict[str, Any]], title: str) -> None:
    from serve_bench.summary import NOTES, table

    head, body = table(rows)
    t = Table(title=title)
    for h in head:
        t.add_column(h, overflow="fold")
    for cells in body:
        t.add_row(*cells)
    console.print(t)
    for note in NOTES:
        console.print(f"[dim]{note}[/]")


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True}, add_help_option=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def worker(args: tuple[str, ...]) -> None:
    """A load worker for a `serve-bench run --master N` on another host:
    serve-bench worker --master-host HOST [--master-port 5557] [--tokenizer DIR]."""
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning, message=".*reduce_op.*")
    from serve_bench.load.worker import main as worker_main

    raise click.exceptions.Exit(worker_main(list(args)))
