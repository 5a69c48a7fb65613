"""lm-eval against a served OpenAI-compatible endpoint, one task at a time, each saved when it finishes.

The completions endpoint (lm-eval's ``local-completions``, prompts sent as token ids made
with the checkpoint's own tokenizer) serves log-likelihood, perplexity and plain generative
tasks; the chat endpoint (``local-chat-completions``, the server applies the model's chat
template) serves chat-formatted generative tasks. Requests go ``num_concurrent`` at a time.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from serve_bench import auth
from serve_bench.errors import EvalError, ServeBenchError
from serve_bench.evaluate import offline, results
from serve_bench.evaluate.settings import EvalSettings
from serve_bench.evaluate.tasks import ResolvedTask, resolve

Progress = Callable[[str], None]


@dataclass
class EvalResult:
    out_dir: Path
    scores: dict[str, dict[str, Any]] = field(default_factory=dict)  # task -> results.json entry
    wall_s: float = 0.0


def evaluate_served(url: str, served_model: str, tokenizer_dir: Path | None, settings: EvalSettings, out_dir: Path,
                    api_key: str | None = None, progress: Progress | None = None,
                    check_server: Callable[[], None] | None = None) -> EvalResult:
    """Run ``settings``' tasks against ``served_model`` at ``url``; write ``out_dir``/results.json,
    samples/<task>.jsonl, tasks/<task>.json (lm-eval's full output with the resolved config) and the
    task configs used. Prints nothing. ``check_server`` (e.g. ``VllmServer.check_alive``) is called
    when requests fail, so a server that died is reported as such; tasks finished before are kept."""
    say = progress or (lambda _m: None)
    tasks = resolve(settings)
    if settings.data_dir:
        offline.check_data(tasks, settings.data_dir)
        offline.use_nltk_data(settings.data_dir)
    needs_tokenizer = [t.name for t in tasks if t.endpoint == "completions"]
    if needs_tokenizer and tokenizer_dir is None:
        raise EvalError(f"{', '.join(needs_tokenizer)} need the model's tokenizer (log-likelihoods are counted "
                        "in its tokens)", hint="pass --tokenizer DIR (the checkpoint directory)")
    if any(t.endpoint == "chat" for t in tasks) and tokenizer_dir is not None and not has_chat_template(tokenizer_dir):
        chat = [t.name for t in tasks if t.endpoint == "chat"]
        raise EvalError(f"{', '.join(chat)} use the chat endpoint, but the model in {tokenizer_dir} has no chat "
                        "template", hint="evaluate them on the completions endpoint (eval.per_task.<task>."
                                         "endpoint: completions) or drop them")
    out_dir.mkdir(parents=True, exist_ok=True)
    with _captured(out_dir / "lm_eval.log"):
        return _evaluate(url, served_model, tokenizer_dir, settings, out_dir, tasks, api_key, say, check_server)


def _evaluate(url: str, served_model: str, tokenizer_dir: Path | None, settings: EvalSettings, out_dir: Path,
              tasks: list[ResolvedTask], api_key: str | None, say: Progress,
              check_server: Callable[[], None] | None) -> EvalResult:
    started = time.perf_counter()
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(offline.write_task_configs(out_dir / "task_configs", tasks,
                                                                      settings.data_dir)),
                          include_defaults=False)
    served_len = _served_max_len(url, served_model, api_key)
    if served_len and served_len < settings.max_length_tokens:  # lm-eval would send longer prompts than it takes
        settings = settings.model_copy(update={"max_length_tokens": served_len})
    models: dict[str, Any] = {}
    outcome = EvalResult(out_dir)
    secrets = [api_key]
    for i, task in enumerate(tasks):
        say(f"{task.name} ({i + 1}/{len(tasks)}, {task.endpoint}, {task.num_fewshot}-shot, "
            f"{'all' if task.limit is None else task.limit} items)")
        if task.endpoint not in models:
            models[task.endpoint] = _model(task.endpoint, url, served_model, tokenizer_dir, settings, api_key)
        t0 = time.perf_counter()
        raw = _run_task(models[task.endpoint], task, manager, settings, url, outcome, check_server)
        wall_s = time.perf_counter() - t0
        outcome.scores[task.name] = results.save_task(out_dir, task, raw, wall_s, secrets)
        results.write_summary(out_dir, outcome.scores, url=url, served_model=served_model)
    outcome.wall_s = time.perf_counter() - started
    return outcome


def _served_max_len(url: str, served_model: str, api_key: str | None) -> int | None:
    """The context length vLLM reports for the model (its --max-model-len), when it says."""
    try:
        models = requests.get(f"{url.rstrip('/')}/v1/models", headers=auth.headers(api_key), timeout=10).json()
        entry = next(m for m in models["data"] if m.get("id") == served_model)
        return int(entry["max_model_len"])
    except (requests.RequestException, ValueError, KeyError, TypeError, StopIteration):
        return None


def has_chat_template(tokenizer_dir: Path) -> bool:
    if any((tokenizer_dir / n).is_file() for n in ("chat_template.jinja", "chat_template.json")):
        return True
    try:
        return bool(json.loads((tokenizer_dir / "tokenizer_config.json").read_text()).get("chat_template"))
    except (OSError, ValueError, AttributeError):
        return False


def _model(endpoint: str, url: str, served_model: str, tokenizer_dir: Path | None, settings: EvalSettings,
           api_key: str | None) -> Any:
    from lm_eval.models.openai_completions import LocalChatCompletion, LocalCompletionsAPI

    common = dict(model=served_model, num_concurrent=settings.num_concurrent, max_retries=settings.max_retries,
                  timeout=settings.timeout_s, max_length=settings.max_length_tokens,
                  header=auth.headers(api_key) or {"Authorization": "Bearer EMPTY"})
    base = url.rstrip("/")
    try:
        if endpoint == "chat":
            return LocalChatCompletion(base_url=f"{base}/v1/chat/completions", tokenizer_backend=None,
                                       tokenized_requests=False, **common)
        return LocalCompletionsAPI(base_url=f"{base}/v1/completions", tokenizer_backend="huggingface",
                                   tokenizer=str(tokenizer_dir), tokenized_requests=True, **common)
    except (OSError, ValueError) as err:
        raise EvalError(f"cannot load the tokenizer in {tokenizer_dir}: {err}",
                        hint="--tokenizer must be a directory with the model's tokenizer files") from err


def _run_task(lm: Any, task: ResolvedTask, manager: Any, settings: EvalSettings, url: str, outcome: EvalResult,
              check_server: Callable[[], None] | None) -> dict[str, Any]:
    from lm_eval import simple_evaluate

    gen_kwargs = {"max_gen_toks": task.max_gen_toks} if task.max_gen_toks else None
    try:
        raw = simple_evaluate(model=lm, tasks=[task.name], num_fewshot=task.num_fewshot, limit=task.limit,
                              task_manager=manager, apply_chat_template=task.endpoint == "chat",
                              fewshot_as_multiturn=task.endpoint == "chat", gen_kwargs=gen_kwargs,
                              log_samples=True, bootstrap_iters=settings.bootstrap_iters)
    except ServeBenchError:
        raise
    except Exception as err:  # lm-eval and its HTTP clients raise many kinds; wrapped here, with the cause
        _release(err)
        kept = f"; finished tasks ({', '.join(outcome.scores)}) are kept in {outcome.out_dir}" if outcome.scores \
            else ""
        if check_server is not None:
            try:
                check_server()
            except ServeBenchError as died:
                died.message += f" (during evaluation task {task.name}{kept})"
                raise died from err
        if settings.data_dir is None and _from_the_hub(err):
            raise EvalError(f"evaluation task {task.name} could not load its data from the Hugging Face hub: "
                            f"{_describe(err)}{kept}",
                            hint="offline, point --data-dir (or eval.data_dir, or SERVE_BENCH_DATA_DIR) at a copy "
                                 "laid out as shared/datasets") from err
        raise EvalError(f"evaluation task {task.name} failed against {url}: {_describe(err)}{kept}",
                        hint="is the server still up? its log says why it stopped answering") from err
    if raw is None:
        raise EvalError(f"lm-eval returned no results for {task.name}")
    return raw


def _from_the_hub(err: BaseException) -> bool:
    """Did the task's data fail to come from the hub (rather than the server fail to answer)?"""
    seen = set()
    e: BaseException | None = err
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if type(e).__module__.split(".")[0] in ("datasets", "huggingface_hub") or "on the Hub" in str(e):
            return True
        e = e.__cause__ or e.__context__
    return False


def _release(err: BaseException) -> None:
    """Drop the failed run's frames now, while lm-eval's output is still captured: they hold its
    concurrent requests, whose own connection errors asyncio would otherwise print when they are
    collected, after the message that matters."""
    seen = set()
    e: BaseException | None = err
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        e.__traceback__ = None
        e = e.__cause__ or e.__context__
    gc.collect()


def _describe(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    first = text[0][:300] if text else ""
    if "chat template" in str(err).lower() or "chat_template" in str(err):
        return "the server has no chat template for this model: " + first
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


@contextlib.contextmanager
def _captured(log_path: Path) -> Iterator[None]:
    """lm-eval logs at INFO and draws progress bars on stderr; a library call prints nothing, so its
    warnings and bars go to ``log_path`` instead."""
    try:
        import datasets
        import lm_eval  # noqa: F401
    except ImportError as err:
        raise EvalError("lm-eval is not installed in this environment", hint=offline.INSTALL_HINT) from err
    datasets.disable_progress_bars()
    with open(log_path, "a", encoding="utf-8") as log, contextlib.redirect_stderr(log):
        handler = logging.StreamHandler(log)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        saved = []
        for name in _LOGGERS:
            logger = logging.getLogger(name)
            saved.append((logger, logger.level, logger.propagate))
            logger.setLevel(logging.WARNING)
            logger.propagate = False
            logger.addHandler(handler)
        try:
            yield
        finally:
            for logger, level, propagate in saved:
                logger.removeHandler(handler)
                logger.setLevel(level)
                logger.propagate = propagate


_LOGGERS = ("lm_eval", "lm-eval", "datasets", "evaluate", "absl", "asyncio", "huggingface_hub")
