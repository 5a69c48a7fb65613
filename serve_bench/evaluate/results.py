"""What an evaluation leaves on disk, per checkpoint:

    eval/results.json            every task: headline metric ± stderr, every metric with its stderr,
                                 items, few-shot, endpoint, wall time; lm-eval's version
    eval/tasks/<task>.json       lm-eval's own output for the task: results of every subtask and group,
                                 the resolved task configs, versions, n-shot, sample counts
    eval/samples/<task>.jsonl    one line per scored item: the document, the prompts, the responses
    eval/task_configs/           the task configs lm-eval loaded (which data files, which prompts)
    eval/lm_eval.log             lm-eval's warnings
"""

from __future__ import annotations

import importlib.metadata
import json
import math
from pathlib import Path
from typing import Any

from serve_bench import auth
from serve_bench.evaluate.tasks import ResolvedTask
from serve_bench.rundir import write_json

RESULTS_FILE = "results.json"


def lm_eval_version() -> str | None:
    try:
        return importlib.metadata.version("lm_eval")
    except importlib.metadata.PackageNotFoundError:
        return None


def metrics_of(entry: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """lm-eval's flat {"acc,none": x, "acc_stderr,none": s, "alias": ...} -> {"acc,none": {value, stderr}}."""
    out: dict[str, dict[str, float | None]] = {}
    for key, value in entry.items():
        name, _, filt = key.partition(",")
        if not filt or name.endswith("_stderr") or not isinstance(value, int | float):
            continue
        stderr = entry.get(f"{name}_stderr,{filt}")
        out[key] = {"value": float(value), "stderr": _number(stderr)}
    return out


def _number(x: Any) -> float | None:
    if isinstance(x, int | float) and math.isfinite(x):
        return float(x)
    return None


def save_task(out_dir: Path, task: ResolvedTask, raw: dict[str, Any], wall_s: float,
              secrets: list[str | None]) -> dict[str, Any]:
    """Write the task's files; the results.json entry for it."""
    samples = raw.pop("samples", None) or {}
    raw = auth.redact(json.loads(json.dumps(raw, default=_plain)), secrets)
    write_json(out_dir / "tasks" / f"{task.name}.json", raw)
    path = out_dir / "samples" / f"{task.name}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for leaf, items in samples.items():
            for item in items:
                f.write(json.dumps(auth.redact({"task": leaf, **item}, secrets), default=_plain) + "\n")
    top = raw.get("groups", {}).get(task.name) or raw.get("results", {}).get(task.name, {})
    metrics = metrics_of(top)
    head = metrics.get(task.task.metric, {})
    n = raw.get("n-samples", {})
    return {"metric": task.task.metric, "value": head.get("value"), "stderr": head.get("stderr"),
            "higher_is_better": task.task.higher_is_better, "metrics": metrics,
            "items": sum(v.get("effective", 0) for v in n.values()) if n else None,
            "num_fewshot": task.num_fewshot, "limit": task.limit, "endpoint": task.endpoint,
            "wall_s": round(wall_s, 2)}


def write_summary(out_dir: Path, scores: dict[str, dict[str, Any]], **about: Any) -> None:
    write_json(out_dir / RESULTS_FILE, {"lm_eval_version": lm_eval_version(), **about, "tasks": scores})


def read_results(eval_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((eval_dir / RESULTS_FILE).read_text())
    except (OSError, ValueError):
        return None


def _plain(x: Any) -> Any:
    """What json cannot write as is (functions in task configs, numpy numbers): a plain value or its name."""
    for attr in ("item", "tolist"):
        if hasattr(x, attr):
            try:
                return getattr(x, attr)()
            except (TypeError, ValueError):
                pass
    if isinstance(x, set | tuple):
        return list(x)
    return getattr(x, "__qualname__", None) or str(x)
