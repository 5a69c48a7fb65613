"""What to evaluate: tasks, few-shot counts, how many items, where the data is, how hard to push the server.

A study's ``eval:`` section; ``serve-bench eval`` flags build the same object.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from serve_bench.evaluate.tasks import DEFAULT_TASKS, TASKS, unknown_task_message
from serve_bench.validation import Strict

DATA_DIR_ENV = "SERVE_BENCH_DATA_DIR"
Endpoint = Literal["completions", "chat"]
Limit = int | Literal["all"]
# Requests lm-eval keeps in flight. On 2 CPU cores 32 took 23-55% less time than 8 on gsm8k and
# arc_challenge subsets of 24-100 items and the same on the quick subset (docs/benchmarks.md,
# "Evaluation concurrency"); a GPU server batches more still.
NUM_CONCURRENT = 32


class TaskSettings(Strict):
    """Overrides for one task; unset fields take the task's defaults (tasks.py) or the section's."""

    num_fewshot: int | None = Field(None, ge=0, description="few-shot examples; default: the task's (mmlu, gsm8k: 5)")
    limit: Limit | None = Field(None, description="items (per subject for mmlu); 'all': the full set; "
                                                  "default: the section's limit")
    endpoint: Endpoint | None = Field(None, description="completions or chat; default: the task's")
    max_gen_toks: int | None = Field(None, ge=1, description="cap on generated tokens (generative tasks)")

    @field_validator("limit")
    @classmethod
    def _limit(cls, v: Limit | None) -> Limit | None:
        return _check_limit(v)


class EvalSettings(Strict):
    enabled: bool | None = Field(None, description="evaluate accuracy after each checkpoint's load profiles; unset: "
                                                   "yes for servers serve-bench launches, and at --url (perhaps a "
                                                   "shared or production endpoint) only when the study has an "
                                                   "eval: section (StudySpec settles it)")
    tasks: list[str] = Field(default_factory=lambda: list(DEFAULT_TASKS), min_length=1)
    limit: Limit | None = Field(None, description="items per task (per subject for mmlu); 'all': the full sets; "
                                                  "unset: each task's quick subset (tasks.py; docs/benchmarks.md "
                                                  "gives its time on 2 CPU cores)")
    per_task: dict[str, TaskSettings] = Field(default_factory=dict, description="overrides, by task name")
    data_dir: Path | None = Field(default_factory=lambda: _env_data_dir(),
                                  description="offline task data laid out as ../shared/datasets; default: "
                                              f"${DATA_DIR_ENV}, else the Hugging Face hub")
    num_concurrent: int = Field(NUM_CONCURRENT, ge=1, description="requests lm-eval keeps in flight")
    max_retries: int = Field(2, ge=1, description="attempts per request before a task fails")
    timeout_s: int = Field(600, gt=0, description="per request")
    max_length_tokens: int = Field(2048, ge=16, description="context lm-eval assumes; match vLLM's --max-model-len")
    bootstrap_iters: int = Field(1000, ge=0, description="for the few metrics whose stderr is bootstrapped")

    @field_validator("tasks")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        for name in v:
            if name not in TASKS:
                raise ValueError(unknown_task_message(name))
        if len(set(v)) != len(v):
            raise ValueError("a task is listed twice")
        return v

    @field_validator("limit")
    @classmethod
    def _limit(cls, v: Limit | None) -> Limit | None:
        return _check_limit(v)

    @model_validator(mode="after")
    def _per_task_known(self) -> EvalSettings:
        for name in self.per_task:
            if name not in TASKS:
                raise ValueError(f"per_task: {unknown_task_message(name)}")
        return self


def _check_limit(v: Limit | None) -> Limit | None:
    if isinstance(v, int) and v < 1:
        raise ValueError("limit must be at least 1, or 'all'")
    return v


def _env_data_dir() -> Path | None:
    value = os.environ.get(DATA_DIR_ENV)
    return Path(value).expanduser() if value else None
