"""A checkpoint's accuracy, read through this one function so the report does not care how it was evaluated.

Reads ``<run>/<checkpoint>/eval/results.json`` as serve-bench's evaluation writes it (``{"tasks": {task:
{"metric", "value", "stderr", "higher_is_better"}}}``, :mod:`serve_bench.evaluate.results`), else lm-eval's
own results JSON (``{"results": {task: {"acc,none": 0.41, "acc_stderr,none": 0.01, …}}}``) from
``eval/*.json``; returns None when nothing was evaluated ("not evaluated" in the report).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from serve_bench.rundir import EVAL_DIR

# the metric taken per task, first present wins (lm-eval's "<metric>,<filter>" keys)
_PREFERRED = ("acc_norm", "acc", "exact_match", "prompt_level_strict_acc", "mc2", "word_perplexity")


@dataclass
class TaskScore:
    task: str
    metric: str
    value: float
    stderr: float | None
    higher_is_better: bool = True

    @property
    def is_fraction(self) -> bool:
        """An accuracy-like score in [0, 1] (shown in points), not a perplexity."""
        return self.higher_is_better and 0.0 <= self.value <= 1.0


def read_accuracy(checkpoint_dir: Path) -> dict[str, TaskScore] | None:
    """Task -> score for one checkpoint; None when it has no evaluation results."""
    files = sorted((Path(checkpoint_dir) / EVAL_DIR).glob("*.json"))
    scores: dict[str, TaskScore] = {}
    for path in files:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict):
            continue
        if isinstance(data.get("tasks"), dict):  # serve-bench's own summary
            for task, entry in data["tasks"].items():
                value = entry.get("value") if isinstance(entry, dict) else None
                if isinstance(value, (int, float)):
                    err = entry.get("stderr")
                    scores[task] = TaskScore(task, str(entry.get("metric", "")).partition(",")[0], float(value),
                                             float(err) if isinstance(err, (int, float)) else None,
                                             entry.get("higher_is_better") is not False)
            continue
        results = data.get("results")
        if not isinstance(results, dict):
            continue
        for task, fields in results.items():
            score = _score(task, fields) if isinstance(fields, dict) else None
            if score is not None:
                scores[task] = score
    return scores or None


def _score(task: str, fields: dict) -> TaskScore | None:
    for metric in _PREFERRED:
        for key, value in fields.items():
            name, _, filt = key.partition(",")
            if name == metric and isinstance(value, (int, float)):
                err = fields.get(f"{metric}_stderr,{filt}" if filt else f"{metric}_stderr")
                return TaskScore(task, metric, float(value), float(err) if isinstance(err, (int, float)) else None,
                                 higher_is_better=metric != "word_perplexity")
    return None
