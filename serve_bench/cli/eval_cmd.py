"""``serve-bench eval``: accuracy of a served model (lm-eval against its OpenAI-compatible endpoint)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from serve_bench import auth
from serve_bench.cli.options import count_or_all, engine_args, split_list
from serve_bench.errors import ConfigError
from serve_bench.evaluate import evaluate_served
from serve_bench.evaluate.offline import check_source
from serve_bench.evaluate.settings import NUM_CONCURRENT, EvalSettings
from serve_bench.evaluate.tasks import DEFAULT_TASKS
from serve_bench.evaluate.tasks import resolve as resolve_tasks
from serve_bench.rundir import RunDir
from serve_bench.serve.server import ServerSpec, VllmServer
from serve_bench.validation import validate

# a pipe gets 80 columns by default, too narrow for the table
console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)


def _settings(flags: dict[str, Any]) -> Any:
    data: dict[str, Any] = {}
    if flags["tasks"]:
        data["tasks"] = split_list(flags["tasks"])
    if flags["limit"] is not None:
        data["limit"] = count_or_all("--limit", flags["limit"])
    if flags["data_dir"] is not None:
        data["data_dir"] = str(flags["data_dir"])
    if flags["concurrency"] is not None:
        data["num_concurrent"] = flags["concurrency"]
    per_task: dict[str, dict[str, Any]] = {}
    for item in flags["num_fewshot"]:
        name, _, n = item.rpartition("=")
        for task in [name] if name else data.get("tasks", DEFAULT_TASKS):
            per_task.setdefault(task, {})["num_fewshot"] = _int(n, "--num-fewshot")
    for item in flags["endpoint"]:
        name, sep, where = item.partition("=")
        if not sep:
            raise ConfigError(f"--endpoint {item}: expected TASK=completions or TASK=chat")
        per_task.setdefault(name, {})["endpoint"] = where
    if per_task:
        data["per_task"] = per_task
    return validate(EvalSettings, data, "command line")


def _out_dir(out: Path | None) -> Path:
    """--out made now (a clear error if it cannot be), or a new runs/<time>-eval."""
    if out is None:
        return RunDir.create(Path("runs"), "eval").path
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"--out {out}: cannot create it: {err.strerror}", hint="choose a writable --out") from None
    return out


def _int(text: str, flag: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{flag} {text}: expected a whole number") from None


@click.command("eval")
@click.argument("model", required=False)
@click.option("--url", default=None, help="An OpenAI-compatible server to evaluate (instead of launching vLLM).")
@click.option("--served-model", default=None, help="Model name at --url (default: the server's first).")
@click.option("--tokenizer", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="The model's tokenizer directory (default: the checkpoint vLLM reports, or MODEL).")
@click.option("--tasks", multiple=True, help="Tasks, comma-separated or repeated (default: the quick set); "
                                             "mmlu, gsm8k, ifeval, truthfulqa_mc2, truthfulqa_mc1, arc_challenge, "
                                             "wikitext.")
@click.option("--limit", default=None, help="Items per task (per subject for mmlu), or 'all' (default: each "
                                            "task's quick subset).")
@click.option("--num-fewshot", multiple=True, metavar="[TASK=]N", help="Few-shot examples, for every task or one.")
@click.option("--endpoint", multiple=True, metavar="TASK=completions|chat", help="Override a task's endpoint.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Offline task data laid out as ../shared/datasets (default: $SERVE_BENCH_DATA_DIR, else the hub).")
@click.option("--concurrency", type=int, default=None,
              help=f"Requests in flight (default {NUM_CONCURRENT}; 1: bit-identical reruns).")
@click.option("--engine-args", "engine_args_text", default="--max-model-len 2048", show_default=True,
              help="vLLM engine arguments when MODEL is launched.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory for results (default: runs/<time>-eval).")
def eval_(model: str | None, url: str | None, served_model: str | None, tokenizer: Path | None,
          engine_args_text: str, out: Path | None, **flags: Any) -> None:
    """Evaluate accuracy with lm-eval against a served model: a running server (--url) or MODEL
    ('default', a checkpoint directory, a hub id) served by vLLM for the purpose."""
    if bool(url) == bool(model):
        raise ConfigError("give either MODEL or --url", hint="serve-bench eval default, or serve-bench eval "
                                                             "--url http://127.0.0.1:8000")
    settings = _settings(flags)
    # every check that needs no server before one is contacted or started
    check_source(resolve_tasks(settings), settings.data_dir)
    args = engine_args(engine_args_text)
    out = _out_dir(out)
    key = auth.key_from_env()
    say = lambda m: console.print(f"[dim]·[/] {m}")  # noqa: E731
    if url:
        from serve_bench.pipeline import _served_model  # pulls in torch (via serve_bench.checkpoints): only with --url

        name, root = _served_model(url, served_model, key)
        result = evaluate_served(url, name, tokenizer or (Path(root) if root else None), settings, out,
                                 api_key=key, progress=say)
    else:
        from serve_bench.models.resolve import resolve  # pulls in torch: only when serving MODEL

        resolved = resolve(model)
        spec = ServerSpec(model_path=resolved.path, served_name=resolved.name, log_path=out / "server.log",
                          engine_args=args)
        say(f"starting vLLM on {resolved.path}")
        with VllmServer(spec) as server:
            result = evaluate_served(server.url, resolved.name, tokenizer or resolved.path, settings, out,
                                     api_key=spec.api_key or key, progress=say, check_server=server.check_alive)
    table = Table(title=f"accuracy ({result.wall_s:.0f} s)")
    for col in ("task", "metric", "score", "± stderr", "items", "shots", "endpoint", "s"):
        table.add_column(col)
    for task, s in result.scores.items():
        table.add_row(task, s["metric"].split(",")[0], _fmt(s["value"]), _fmt(s["stderr"]), str(s["items"]),
                      str(s["num_fewshot"]), s["endpoint"], f"{s['wall_s']:.0f}")
    console.print(table)
    console.print(f"results: {out}")


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4g}"
