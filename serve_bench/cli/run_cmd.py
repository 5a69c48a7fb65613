"""``serve-bench run`` and ``serve-bench summarize``."""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from serve_bench.cli import views
from serve_bench.cli.options import (
    count_or_all,
    engine_args,
    parse_labels,
    parse_percentiles,
    slo_flags,
    split_list,
)
from serve_bench.cli.plan_view import show_plan
from serve_bench.errors import EXIT_INTERRUPTED, ConfigError, EvalError, ServerError
from serve_bench.load.balance import BALANCE_POLICIES
from serve_bench.measure.metrics import SLO_METRICS
from serve_bench.rundir import RunDir
from serve_bench.study import StudySpec, is_loopback
from serve_bench.summary import NOTES, recompute, table
from serve_bench.validation import read_yaml, validate

# a pipe gets 80 columns by default, too narrow for the comparison table
console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)


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
    if flags["tasks"]:
        put("eval.tasks", split_list(flags["tasks"]))
    for key, path in (("fractions", "prune.prune"), ("profiles", "profiles")):
        if flags[key]:
            put(path, list(flags[key]))
    for key, path in (("criterion", "prune.criterion"), ("divisor", "prune.divisor"),
                      ("include_base", "prune.include_base"), ("balance", "server.balance"),
                      ("served_model", "server.served_model"), ("tokenizer", "server.tokenizer"),
                      ("port", "server.port"), ("replicas", "server.replicas"), ("out", "run_dir"),
                      ("runs_dir", "runs_dir"),
                      ("workers", "workers"), ("expect_workers", "remote_workers"),
                      ("master_bind_host", "master_bind_host"), ("master_port", "master_port"),
                      ("metrics_host", "metrics.host"), ("metrics_port", "metrics.port"),
                      ("on_server_death", "on_server_death"), ("evaluate", "eval.enabled"),
                      ("repeats", "repeats"), ("cooldown", "cooldown_s"),
                      ("data_dir", "eval.data_dir")):
        if flags[key] is not None:
            put(path, flags[key])
    if len(flags["url"]) == 1:
        put("server.url", flags["url"][0])
    elif flags["url"]:
        put("server.endpoints", list(flags["url"]))
    if flags["limit"] is not None:
        put("eval.limit", count_or_all("--limit", flags["limit"]))
    if flags["engine_args"] is not None:
        put("server.engine_args", engine_args(flags["engine_args"]))
    if flags["percentiles"] is not None:
        put("percentiles", parse_percentiles(flags["percentiles"]))
    if flags["slo"] or flags["goodput"]:
        put("slo", slo_flags(flags["slo"], flags["goodput"]))
    if flags["labels"]:
        put("labels", {**(data.get("labels") or {}), **parse_labels(flags["labels"])})
    return data


@click.command()
@click.argument("study", required=False, type=click.Path(path_type=Path))
@click.option("--dry-run", is_flag=True,
              help="Print the resolved plan and an estimate of the wall time, then exit; nothing is started.")
@click.option("--model", "models", multiple=True, help="Model to study ('default', a directory, a hub id); repeatable.")
@click.option("--prune", "fractions", type=float, multiple=True, help="Pruning fractions: --prune 0.2 0.4.")
@click.option("--no-prune", is_flag=True, help="Serve the models as they are, no pruned variants.")
@click.option("--include-base/--no-base", default=None, help="Serve the unpruned model as well (default: yes).")
@click.option("--criterion", default=None, help="Pruning criterion (ppm, maw, maxabs, vow, pon, l2).")
@click.option("--divisor", type=int, default=None, help="Round k to a multiple of this (0, 32, 64, 128, 256).")
@click.option("--profile", "profiles", multiple=True, help="Load profile name in load_profiles/ or a YAML path.")
@click.option("--url", multiple=True,
              help="Load an already running OpenAI-compatible server instead of launching vLLM; repeat it for a "
                   "fleet of servers of the same model, loaded as one (requests spread by --balance).")
@click.option("--replicas", type=int, default=None, metavar="N",
              help="Launch N vLLM servers per checkpoint, each on its own GPUs (CUDA_VISIBLE_DEVICES split by the "
                   "tensor-parallel size) or cores (CPU build), and load them as one fleet (default 1).")
@click.option("--balance", type=click.Choice(BALANCE_POLICIES), default=None,
              help="How a fleet's requests are spread: least-outstanding (default: the endpoint with the fewest "
                   "in flight) or round-robin.")
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
@click.option("--slo", multiple=True, help=f"SLO as NAME=MS ({', '.join(SLO_METRICS)}).")
@click.option("--goodput", multiple=True, metavar="KEY:MS",
              help="SLO in vllm bench serve's spelling: --goodput 'ttft:500 tpot:50' (ttft, tpot, e2el).")
@click.option("--percentiles", default=None, metavar="P,P,…",
              help="Latency percentiles every stage summary gives, comma-separated (default 50,90,95,99,99.9; "
                   "p99 is always added; vllm bench serve's --metric-percentiles).")
@click.option("--on-server-death", type=click.Choice(["continue", "stop"]), default=None,
              help="After a server dies: go on to the next checkpoint, or stop.")
@click.option("--eval/--no-eval", "evaluate", default=None,
              help="Evaluate accuracy (lm-eval) on each checkpoint's server after its load (default: yes for "
                   "servers serve-bench launches; at --url only with --eval, --tasks or --limit, or an eval: "
                   "section in the study).")
@click.option("--tasks", "tasks", multiple=True,
              help="Evaluation tasks, comma-separated or repeated: --tasks gsm8k,ifeval (default: the study's).")
@click.option("--limit", default=None, help="Items per evaluation task, or 'all' (default: each task's quick subset).")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Offline evaluation data, laid out as shared/datasets "
                   "(default: $SERVE_BENCH_DATA_DIR, else the hub).")
@click.option("--repeats", type=int, default=None, metavar="N",
              help="Run every stage N times (trials; the checkpoints' order alternates: A B, B A …); "
                   "a series directory holds one run directory per trial.")
@click.option("--cooldown", type=float, default=None, metavar="S", help="Pause between trials, seconds (default 0).")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE",
              help="A label that tells this run apart (repeatable): kept in the manifest, shown in the report and "
                   "by compare; adds to the study's labels.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The run directory itself, new or empty (every command's --out is the directory it writes "
                   "into). Default: a new <time>-<study> directory in --runs-dir.")
@click.option("--runs-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Parent of run directories, each a new <time>-<study> (default: runs; runs_dir in the study).")
@click.option("--quiet", is_flag=True, help="Plain lines, one per event, even on a terminal.")
@click.option("--json-events", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write every event as a JSON line to this file ('-': standard output).")
def run(study: Path | None, no_prune: bool, quiet: bool, json_events: Path | None, **flags: Any) -> None:
    """Serve each checkpoint of STUDY (a YAML file; default: the bundled model
    and 20%/40% pruned copies of it) with vLLM, run the load profiles against it,
    and print a comparison. Results go to a new run directory."""
    # torch's modules warn about a deprecated alias they touch: noise to a user
    warnings.filterwarnings("ignore", category=FutureWarning, message=".*reduce_op.*")
    from serve_bench.pipeline import run_study  # pulls in torch: after the filter, not for --help

    data = read_yaml(study) if study else {}
    data = _overrides(dict(data or {}), **flags)
    if no_prune:
        data.setdefault("prune", {}).update(prune=[], expansion_ratio=[])
    spec = validate(StudySpec, data, str(study) if study else "command line")
    from serve_bench.cli.main import err_console  # serve_bench.cli.main imports this module

    # --dry-run: the plan, then exit; a run: its estimate line (on stderr when stdout carries JSON events)
    stop, planned_s = show_plan(spec, err_console if str(json_events) == "-" else console, flags["dry_run"])
    if stop:
        return
    if not is_loopback(spec.metrics.host):
        console.print(f"[yellow]warning:[/] the metrics exporter listens on {spec.metrics.host}: anyone who can "
                      f"reach it can read this run's live metrics.", highlight=False)
    if spec.remote_workers and not is_loopback(spec.master_bind_host):
        console.print(f"[yellow]warning:[/] the Locust master listens on {spec.master_bind_host}:{spec.master_port}; "
                      f"its protocol is unauthenticated: anyone who reaches that port can join the run and send "
                      f"records. Bind to a private interface, or firewall the port.", highlight=False)
    with contextlib.ExitStack() as stack:
        if quiet or not console.is_terminal:
            shown: Any = views.PlainView(sys.stdout)
        else:
            shown = stack.enter_context(views.LiveView(console, views.count_stages(spec.profiles), planned_s))
        watchers = [shown]
        if json_events is not None:
            out = sys.stdout if str(json_events) == "-" else stack.enter_context(_open_events(json_events))
            watchers.append(views.JsonEvents(out))
        try:
            outcome = run_study(spec, views.Tee(*watchers))
        except KeyboardInterrupt:
            stack.close()  # the live display first, so the message is the last line
            where = f" in {shown.run_dir}" if shown.run_dir else ""
            console.print(f"[yellow]interrupted:[/] every finished stage and request is kept{where}",
                          soft_wrap=True)
            raise click.exceptions.Exit(EXIT_INTERRUPTED) from None
    for trial, done in enumerate(outcome.trials or [outcome], 1):
        _print_table(done.rows, f"run {done.run_dir}" + (f" (trial {trial} of {len(outcome.trials)})"
                                                          if outcome.trials else ""))
    console.print(f"results: {outcome.run_dir}")
    for done in outcome.trials or [outcome]:
        if done.report is not None:
            console.print(f"report: {done.report.html}", soft_wrap=True)
            for line in done.report.verdicts:
                console.print(f"  {line}", soft_wrap=True)
    if outcome.trials:
        if outcome.report is not None:
            console.print(f"run to run ({len(outcome.trials)} trials): {outcome.report.html}", soft_wrap=True)
            for line in outcome.report.verdicts:
                console.print(f"  {line}", soft_wrap=True)
        console.print(f"against another run: serve-bench compare {outcome.run_dir} OTHER_RUN", soft_wrap=True)
    if outcome.problems:
        for p in outcome.problems:
            console.print(f"[red]problem:[/] {p}")
        # a server that failed outranks an evaluation that failed (the error classes' exit codes)
        raise click.exceptions.Exit(EvalError.exit_code if outcome.eval_problems == len(outcome.problems)
                                    else ServerError.exit_code)


def _open_events(path: Path) -> Any:
    try:
        return open(path, "a", encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"--json-events {path}: cannot write: {err.strerror}") from None


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
def summarize(run_dir: Path) -> None:
    """Recompute RUN_DIR's comparison table from its raw per-request records."""
    if not (run_dir / "manifest.json").is_file():
        raise ConfigError(f"{run_dir} is not a serve-bench run directory (no manifest.json)")
    _print_table(recompute(RunDir(run_dir)), f"recomputed from {run_dir}")


def _print_table(rows: list[dict[str, Any]], title: str) -> None:
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
    # a process of its own: Locust's gevent must patch it before ssl and the rest are imported, and this one
    # has imported them (the CLI never imports gevent)
    os.execv(sys.executable, [sys.executable, "-m", "serve_bench.load.worker", *args])
