"""The tasks serve-bench evaluates, one entry each: lm-eval's name, which endpoint serves it, its
few-shot default, its headline metric, and the offline files it reads. Nothing here imports lm-eval."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from serve_bench.errors import EvalError

if TYPE_CHECKING:
    from serve_bench.evaluate.settings import EvalSettings

Output = Literal["loglikelihood", "generate", "perplexity"]


@dataclass(frozen=True)
class TaskDef:
    name: str  # lm-eval's task (or group) name, kept as is
    output: Output
    endpoint: Literal["completions", "chat"]  # default; the chat endpoint cannot give log-likelihoods
    num_fewshot: int
    metric: str  # headline metric key in lm-eval's results ("acc,none")
    higher_is_better: bool
    files: dict[str, str]  # split -> file under the data directory ({subject} for mmlu)
    about: str
    full_items: int  # the full set's items (mmlu: questions over all subjects), for `limit: all`
    # the quick subset (limit unset): items (per subject for mmlu) and a cap on generated tokens, sized so
    # that the default study's evaluation stays within about a minute per checkpoint on 2 CPU cores
    quick_limit: int = 10
    quick_max_gen_toks: int | None = None

    def items(self, limit: int | None) -> int:
        """Items scored at ``limit`` (per subject for mmlu; None: the full set)."""
        if limit is None:
            return self.full_items
        return min(limit * (MMLU_SUBJECTS if self.name == "mmlu" else 1), self.full_items)


MMLU_SUBJECTS = 57
MMLU_FILES = {"test": "mmlu/test/{subject}.jsonl", "dev": "mmlu/dev/{subject}.jsonl"}
ARC_FILES = {"train": "arc/ARC-Challenge-Train.jsonl", "validation": "arc/ARC-Challenge-Dev.jsonl",
             "test": "arc/ARC-Challenge-Test.jsonl"}
TQA_FILES = {"validation": "truthfulqa/truthfulqa_mc_v0.jsonl"}
PUNKT = "nltk_data/tokenizers/punkt_tab/english"
PUNKT_FILES = ("abbrev_types.txt", "collocations.tab", "ortho_context.tab", "sent_starters.txt")

TASKS: dict[str, TaskDef] = {t.name: t for t in [
    TaskDef("mmlu", "loglikelihood", "completions", 5, "acc,none", True, MMLU_FILES,
            "57 subjects, 4 choices; knowledge", 14042, quick_limit=1),
    TaskDef("gsm8k", "generate", "completions", 5, "exact_match,strict-match", True,
            {"train": "gsm8k/train.jsonl", "test": "gsm8k/test.jsonl"}, "grade-school maths, exact answer",
            1319, quick_limit=4),
    TaskDef("ifeval", "generate", "chat", 0, "prompt_level_strict_acc,none", True,
            {"train": "ifeval/input_data.jsonl"}, "verifiable instructions, chat formatted",
            541, quick_limit=4, quick_max_gen_toks=128),
    TaskDef("truthfulqa_mc2", "loglikelihood", "completions", 0, "acc,none", True, TQA_FILES,
            "probability mass on true answers", 817, quick_limit=6),
    TaskDef("truthfulqa_mc1", "loglikelihood", "completions", 0, "acc,none", True, TQA_FILES,
            "the single true answer ranked first", 817, quick_limit=6),
    TaskDef("arc_challenge", "loglikelihood", "completions", 0, "acc_norm,none", True, ARC_FILES,
            "grade-school science, hard set", 1172, quick_limit=20),
    TaskDef("wikitext", "perplexity", "completions", 0, "word_perplexity,none", False,
            {"test": "wikitext2/wikitext-2-raw-v1_test.jsonl"}, "WikiText-2 test articles, rolling perplexity",
            62, quick_limit=1),
]}
# The default study's tasks: one or more of each side of the dichotomy that fits its time budget; mmlu
# (57 subjects x 5-shot prompts, 3-4 s per question here) is left to studies that ask for it.
DEFAULT_TASKS = ("arc_challenge", "wikitext", "gsm8k", "truthfulqa_mc2", "ifeval")


def unknown_task_message(name: str) -> str:
    return f"unknown task {name!r}; valid: {', '.join(TASKS)}"


@dataclass(frozen=True)
class ResolvedTask:
    """One task as it will run: defaults, then the section's settings, then its per-task overrides."""

    task: TaskDef
    endpoint: Literal["completions", "chat"]
    num_fewshot: int
    limit: int | None  # None: the full set
    max_gen_toks: int | None
    quick: bool = False  # the task's quick subset (no limit was set)

    @property
    def name(self) -> str:
        return self.task.name


def resolve(settings: EvalSettings) -> list[ResolvedTask]:
    out = []
    for name in settings.tasks:
        if name not in TASKS:
            raise EvalError(unknown_task_message(name))
        t = TASKS[name]
        o = settings.per_task.get(name)
        endpoint = (o.endpoint if o and o.endpoint else None) or t.endpoint
        if endpoint == "chat" and t.output != "generate":
            raise EvalError(f"{name} scores log-likelihoods, which the chat endpoint does not return",
                            hint=f"leave {name} on the completions endpoint")
        limit = o.limit if o and o.limit is not None else settings.limit
        quick = limit is None
        max_gen = o.max_gen_toks if o and o.max_gen_toks else (t.quick_max_gen_toks if quick else None)
        fewshot = o.num_fewshot if o and o.num_fewshot is not None else t.num_fewshot
        out.append(ResolvedTask(t, endpoint, fewshot, t.quick_limit if quick else None if limit == "all" else limit,
                                max_gen, quick))
    return out
