"""Every reader of a run directory reads it through one typed model: a file it cannot read is refused, named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from serve_bench.errors import ConfigError
from serve_bench.rundir import RunDir

pytestmark = pytest.mark.unit

STAGE = {"checkpoint": "m", "profile": "p", "stage": "c4", "kind": "concurrency", "target": {"users": 4},
         "started_s": 1.0, "ended_s": 2.0, "warmup_end_s": None, "records": 3, "summary": {}, "stopped_early": True}


def _run(tmp_path: Path, stage: dict) -> RunDir:
    (tmp_path / "m" / "stages").mkdir(parents=True)
    (tmp_path / "manifest.json").write_text(json.dumps({"status": "completed"}))
    (tmp_path / "m" / "checkpoint.json").write_text(json.dumps({"name": "m", "label": "base"}))
    (tmp_path / "m" / "stages" / "01-c4.json").write_text(json.dumps(stage))
    return RunDir(tmp_path)


def test_a_stage_file_reads_as_its_model_with_its_load_and_flags(tmp_path: Path) -> None:
    run = _run(tmp_path, STAGE)
    [result] = run.stage_results("m")
    assert result.load == ("concurrency", 4.0) and result.load_text == "4 users"
    assert result.flags == {"stopped_early": "stopped early"}
    assert run.checkpoint_info("m").label == "base" and run.manifest().status == "completed"


@pytest.mark.parametrize("change, field", [
    ({"rejectd": True}, "rejectd: Extra inputs are not permitted"),
    ({"ended_s": float("nan")}, "ended_s: Input should be a finite number"),
    ({"records": "many"}, "records: Input should be a valid integer"),
])
def test_a_stage_file_a_reader_cannot_trust_is_refused_naming_file_and_field(tmp_path: Path, change: dict,
                                                                           field: str) -> None:
    run = _run(tmp_path, {**STAGE, **change})
    with pytest.raises(ConfigError) as info:
        run.stage_results("m")
    assert "01-c4.json is not a serve-bench StageFile" in str(info.value) and field in str(info.value)
