"""Offline task data: every file a task reads is checked before anything runs; configs point at it."""

import json
import shutil
from pathlib import Path

import pytest
import yaml
from shared_data import datasets_dir

from serve_bench.errors import EvalError
from serve_bench.evaluate import offline
from serve_bench.evaluate.settings import EvalSettings
from serve_bench.evaluate.tasks import MMLU_SUBJECTS, TASKS, resolve

pytestmark = pytest.mark.unit



@pytest.fixture(scope="module")
def data() -> Path:
    return datasets_dir()  # fails, not skips, without the project's shared/datasets


def _tasks(*names: str):
    return resolve(EvalSettings(tasks=list(names), data_dir=None))


def test_the_shared_datasets_hold_every_task(data: Path) -> None:
    tasks = _tasks(*TASKS)
    offline.check_data(tasks, data)
    files = offline.required_files(tasks, data)
    assert data / "mmlu/dev/anatomy.jsonl" in files and data / "arc/ARC-Challenge-Test.jsonl" in files
    assert len([f for f in files if "/mmlu/test/" in str(f)]) == MMLU_SUBJECTS == len(offline.mmlu_subjects())
    assert data / offline.PUNKT / "ortho_context.tab" in files


def _rows(path: Path) -> int:
    with path.open() as f:
        return sum(1 for line in f if line.strip())


def test_each_tasks_full_set_size_is_what_its_files_hold(data: Path) -> None:
    """The plan sizes `limit: all` from TaskDef.full_items; the test split's rows say what it is."""
    test_split = {name: data / t.files.get("test", t.files.get("validation", t.files.get("train", "")))
                  for name, t in TASKS.items() if name not in ("mmlu", "wikitext")}
    for name, path in test_split.items():
        assert TASKS[name].full_items == _rows(path), name
    assert TASKS["mmlu"].full_items == sum(_rows(data / TASKS["mmlu"].files["test"].format(subject=s))
                                           for s in offline.mmlu_subjects())
    rows = [json.loads(line)["text"] for line in (data / TASKS["wikitext"].files["test"]).open()]
    assert TASKS["wikitext"].full_items == len(offline.pages(rows))
    assert TASKS["mmlu"].items(2) == 2 * MMLU_SUBJECTS and TASKS["gsm8k"].items(None) == TASKS["gsm8k"].items(10**6)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "gsm8k").mkdir()
    (tmp_path / "gsm8k" / "test.jsonl").write_text("{}\n")
    with pytest.raises(EvalError, match=r"expected .*gsm8k/train\.jsonl\n"):
        offline.check_data(_tasks("gsm8k"), tmp_path)
    with pytest.raises(EvalError, match=r"expected .*punkt_tab/english/abbrev_types\.txt \(and 3 more\)"):
        (tmp_path / "ifeval").mkdir()
        (tmp_path / "ifeval" / "input_data.jsonl").write_text("{}\n")
        offline.check_data(_tasks("ifeval"), tmp_path)
    with pytest.raises(EvalError, match="does not exist"):
        offline.check_data(_tasks("gsm8k"), tmp_path / "nowhere")


def test_configs_include_lm_evals_own_and_read_the_local_files(data: Path, tmp_path: Path) -> None:
    dest = offline.write_task_configs(tmp_path / "cfg", _tasks("mmlu", "arc_challenge", "wikitext", "ifeval"), data)
    arc = (dest / "arc_challenge.yaml").read_text()
    assert "process_docs: !function serve_bench.evaluate.offline.arc_docs" in arc
    cfg = yaml.safe_load(arc.split("process_docs")[0])
    assert Path(cfg["include"]).is_file() and cfg["include"].endswith("arc/arc_challenge.yaml")
    assert cfg["dataset_path"] == "json" and cfg["dataset_name"] is None
    assert cfg["dataset_kwargs"]["data_files"]["test"] == str(data / "arc/ARC-Challenge-Test.jsonl")
    wiki = yaml.safe_load((dest / "wikitext.yaml").read_text().split("process_docs")[0])
    assert wiki["training_split"] is None and set(wiki["dataset_kwargs"]["data_files"]) == {"test"}
    leaf = yaml.safe_load((dest / "mmlu" / "mmlu_anatomy.yaml").read_text())
    assert leaf["task"] == "mmlu_anatomy" and leaf["dataset_kwargs"]["data_files"] == {
        "test": str(data / "mmlu/test/anatomy.jsonl"), "dev": str(data / "mmlu/dev/anatomy.jsonl")}
    assert (dest / "mmlu" / "_mmlu.yaml").is_file() and len(list((dest / "mmlu").glob("mmlu_*.yaml"))) == 57
    hub = offline.write_task_configs(tmp_path / "hub", _tasks("gsm8k"), None)
    assert set(yaml.safe_load((hub / "gsm8k.yaml").read_text())) == {"include", "task"}


def test_wikitext_rows_join_back_into_the_62_test_articles(data: Path) -> None:
    rows = [json.loads(line)["text"] for line in (data / "wikitext2/wikitext-2-raw-v1_test.jsonl").open()]
    pages = offline.pages(rows)
    assert len(pages) == 62
    assert pages[0].startswith(" = Robert Boulter = \n")
    assert sum(len(p) for p in pages) + len(pages) - 1 >= sum(len(r) or 2 for r in rows) - 2


def test_nltk_data_is_pointed_at_the_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NLTK_DATA", "")  # recorded, so monkeypatch restores the environment afterwards
    offline.use_nltk_data(tmp_path)
    import os

    assert os.environ["NLTK_DATA"] == str(tmp_path / "nltk_data")


def test_data_copied_partially_is_caught(data: Path, tmp_path: Path) -> None:
    shutil.copytree(data / "truthfulqa", tmp_path / "truthfulqa")
    offline.check_data(_tasks("truthfulqa_mc1", "truthfulqa_mc2"), tmp_path)
    with pytest.raises(EvalError, match="mmlu/test/abstract_algebra.jsonl"):
        offline.check_data(_tasks("truthfulqa_mc2", "mmlu"), tmp_path)
