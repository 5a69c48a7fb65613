"""Accuracy of the served model: lm-eval against the very endpoint under test, offline task data,
and the pruning-dichotomy table across a run's checkpoints.

Public surface (nothing here imports lm-eval until a function that needs it runs)::

    evaluate_served(url, served_model, tokenizer_dir, settings, out_dir, api_key=None,
                    progress=None, check_server=None) -> EvalResult
    EvalSettings, TaskSettings       the study's ``eval:`` section
    dichotomy_table(run_dirs, ...)   Markdown + JSON across the checkpoints of one run or several
"""

from __future__ import annotations

from serve_bench.evaluate.runner import EvalResult, evaluate_served
from serve_bench.evaluate.settings import EvalSettings, TaskSettings
from serve_bench.evaluate.table import dichotomy_table
from serve_bench.evaluate.tasks import DEFAULT_TASKS, TASKS

__all__ = ["DEFAULT_TASKS", "TASKS", "EvalResult", "EvalSettings", "TaskSettings", "dichotomy_table",
           "evaluate_served"]

