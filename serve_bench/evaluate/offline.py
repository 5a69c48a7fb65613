"""lm-eval's standard tasks, reading local files when a data directory is given.

For each task serve-bench writes a small task config that includes lm-eval's own
(by absolute path, so prompts, metrics and filters are exactly lm-eval's) and,
with a data directory, replaces only where the data comes from:
``dataset_path: json`` plus ``data_files`` under the directory, laid out as
``../shared/datasets`` (see its README). Two local layouts differ from the hub's
and are reshaped on load: ARC's nested rows (:func:`arc_docs`) and WikiText-2's
rows, joined back into the 62 test articles lm-eval's ``wikitext`` scores
(:func:`wikitext_pages`). lm-eval loads only this directory (not its 14,000
built-in configs), which also makes the written directory the record of what ran.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

import requests
import yaml

from serve_bench.errors import EvalError
from serve_bench.evaluate.tasks import PUNKT, PUNKT_FILES, ResolvedTask

INSTALL_HINT = "install it with: pip install 'lm-eval[api,ifeval]==0.4.13' (serve-bench's setup does)"
# where each task's config sits under lm_eval/tasks/
SOURCES = {"gsm8k": "gsm8k/gsm8k.yaml", "ifeval": "ifeval/ifeval.yaml",
           "truthfulqa_mc1": "truthfulqa/truthfulqa_mc1.yaml", "truthfulqa_mc2": "truthfulqa/truthfulqa_mc2.yaml",
           "arc_challenge": "arc/arc_challenge.yaml", "wikitext": "wikitext/wikitext.yaml"}
MMLU_DIR = "mmlu/default"
_RESHAPE = {"arc_challenge": "arc_docs", "wikitext": "wikitext_pages"}


def lm_eval_tasks_dir() -> Path:
    spec = importlib.util.find_spec("lm_eval")
    if spec is None or not spec.submodule_search_locations:
        raise EvalError("lm-eval is not installed in this environment", hint=INSTALL_HINT)
    return Path(list(spec.submodule_search_locations)[0]) / "tasks"


def mmlu_subjects() -> list[str]:
    leaves = sorted((lm_eval_tasks_dir() / MMLU_DIR).glob("mmlu_*.yaml"))
    return [p.stem.removeprefix("mmlu_") for p in leaves]


def task_files(task: ResolvedTask, data_dir: Path) -> dict[str, dict[str, Path]]:
    """lm-eval leaf task -> split -> local file."""
    if task.name == "mmlu":
        return {f"mmlu_{s}": {split: data_dir / f.format(subject=s) for split, f in task.task.files.items()}
                for s in mmlu_subjects()}
    return {task.name: {split: data_dir / f for split, f in task.task.files.items()}}


def required_files(tasks: list[ResolvedTask], data_dir: Path) -> list[Path]:
    out: list[Path] = []
    for t in tasks:
        for files in task_files(t, data_dir).values():
            out += files.values()
        if t.name == "ifeval":
            out += [data_dir / PUNKT / f for f in PUNKT_FILES]
    return list(dict.fromkeys(out))


def check_data(tasks: list[ResolvedTask], data_dir: Path) -> None:
    """Every file the tasks read is there, or an error naming the first missing one."""
    if not data_dir.is_dir():
        raise EvalError(f"the evaluation data directory {data_dir} does not exist",
                        hint="point --data-dir (or eval.data_dir, or SERVE_BENCH_DATA_DIR) at a copy laid out "
                             "as ../shared/datasets, or leave it unset to read the Hugging Face hub")
    missing = [p for p in required_files(tasks, data_dir) if not p.is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise EvalError(f"evaluation data missing: expected {missing[0]}{more}",
                        hint="the data directory must be laid out as ../shared/datasets (see its README); "
                             "or drop the task from the study's eval.tasks")


# huggingface_hub's own switches: set, the datasets come from the local cache and the hub is never asked
HUB_OFFLINE_ENV = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
HUB_TIMEOUT_S = 5.0


def check_source(tasks: list[ResolvedTask], data_dir: Path | None) -> None:
    """The tasks' data can be read: every file under ``data_dir``, else the Hugging Face hub answers. Checked
    before any server starts or request is sent, so that an offline run fails at once with one message, not
    after its load with a retry loop per task."""
    if data_dir is not None:
        check_data(tasks, data_dir)
        return
    if any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on") for k in HUB_OFFLINE_ENV):
        return  # the user's choice: the hub's cached copies
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    try:
        requests.head(endpoint, timeout=HUB_TIMEOUT_S, allow_redirects=False)
    except requests.RequestException as err:
        raise EvalError(f"evaluation reads its data from the Hugging Face hub ({endpoint}), which does not answer "
                        f"from here ({type(err).__name__})",
                        hint="point --data-dir (or eval.data_dir, or SERVE_BENCH_DATA_DIR) at a copy laid out as "
                             "shared/datasets, or run with --no-eval") from None


def use_nltk_data(data_dir: Path) -> None:
    """Point NLTK at the bundled punkt_tab before lm-eval's IFEval code is imported (else it downloads)."""
    where = str(data_dir / "nltk_data")
    os.environ["NLTK_DATA"] = where
    nltk = sys.modules.get("nltk")
    if nltk is not None and where not in nltk.data.path:
        nltk.data.path.insert(0, where)


def write_task_configs(dest: Path, tasks: list[ResolvedTask], data_dir: Path | None) -> Path:
    """The task directory lm-eval loads (include_defaults off); returns ``dest``."""
    src = lm_eval_tasks_dir()
    dest.mkdir(parents=True, exist_ok=True)
    for t in tasks:
        if t.name == "mmlu":
            sub = dest / "mmlu"
            sub.mkdir(exist_ok=True)
            for group in sorted((src / MMLU_DIR).glob("_mmlu*.yaml")):
                (sub / group.name).write_text(group.read_text())
            files = task_files(t, data_dir) if data_dir else {}
            for leaf in sorted((src / MMLU_DIR).glob("mmlu_*.yaml")):
                _write(sub / leaf.name, leaf.stem, leaf, files.get(leaf.stem), None)
            continue
        files = task_files(t, data_dir)[t.name] if data_dir else None
        _write(dest / f"{t.name}.yaml", t.name, src / SOURCES[t.name], files, _RESHAPE.get(t.name))
    return dest


def _write(path: Path, name: str, include: Path, files: dict[str, Path] | None, reshape: str | None) -> None:
    cfg: dict[str, Any] = {"include": str(include), "task": name}
    if files is not None:
        cfg.update(dataset_path="json", dataset_name=None,
                   dataset_kwargs={"data_files": {split: str(p) for split, p in files.items()}})
        if name == "wikitext":  # the local copy has the test split only
            cfg.update(training_split=None, validation_split=None)
    text = yaml.safe_dump(cfg, sort_keys=False)
    if files is not None and reshape:
        text += f"process_docs: !function serve_bench.evaluate.offline.{reshape}\n"
    path.write_text(text)


# ---- reshaping local layouts to the hub's (called by lm-eval through the configs above)

def arc_docs(dataset: Any) -> Any:
    """ARC release rows ({question: {stem, choices: [{text, label}]}}) -> allenai/ai2_arc's flat rows."""

    def flat(doc: dict[str, Any]) -> dict[str, Any]:
        q = doc["question"]
        return {"id": doc["id"], "question": q["stem"], "answerKey": doc["answerKey"],
                "choices": {"text": [c["text"] for c in q["choices"]], "label": [c["label"] for c in q["choices"]]}}

    return dataset.map(flat, remove_columns=dataset.column_names)


def wikitext_pages(dataset: Any) -> Any:
    """Rows of wikitext-2-raw-v1 -> one row per article ({page}), as EleutherAI/wikitext_document_level
    builds them from the raw file: an article starts at each top-level heading (`` = Title = ``)."""
    import datasets

    return datasets.Dataset.from_dict({"page": pages([r["text"] for r in dataset])})


def pages(rows: list[str]) -> list[str]:
    """The raw file (empty rows written as `` \\n``) split at top-level headings."""
    lines = "".join(r if r else " \n" for r in rows).split("\n")
    out: list[str] = []
    current: list[str] = []
    for line in lines:
        bare = line.replace("= = =", "===").replace("= =", "==").strip()
        if bare.startswith("= ") and bare.endswith(" ="):
            page = "\n".join(current)
            if page.strip():
                out.append(page)
            current = []
        current.append(line)
    out.append("\n".join(current))
    return out
