from __future__ import annotations

from pathlib import Path

import pytest

from serve_bench.errors import ConfigError
from serve_bench.workload.profiles import (
    PROFILES_DIR,
    ConcurrencyStage,
    RateStage,
    find_profile,
    list_profiles,
    load_profile,
)

pytestmark = pytest.mark.unit

BASE = "name: x\ninput_tokens: 64\noutput_tokens: 16\n"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "x.yaml"
    path.write_text(text)
    return path


def _error(tmp_path: Path, text: str) -> str:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_profile(path)
    err = info.value  # no chained traceback to show
    assert err.__cause__ is None and (err.__suppress_context__ or err.__context__ is None)
    return str(info.value)


def test_shipped_profiles_validate_and_quick_is_small() -> None:
    assert {"quick", "single", "ladder", "poisson", "sweep"} <= set(list_profiles())
    for name in list_profiles():
        assert load_profile(name).expanded_stages()
    quick = load_profile()
    assert quick.name == "quick" and quick.input_tokens <= 128 and quick.output_tokens <= 64
    assert sum(s.duration_s or 0 for s in quick.expanded_stages()) < 90
    ladder = [s.users for s in load_profile("ladder").expanded_stages()]
    assert ladder[0] == 1 and ladder[-1] == 256


def test_error_names_file_and_field_path(tmp_path: Path) -> None:
    msg = _error(tmp_path, BASE + "stages:\n  - {kind: concurrency, users: 1, requests: 3}\n"
                                  "  - {kind: rate, rate: 2, duration_s: 5}\n")
    assert "x.yaml: stages[1].rate_rps: Field required" in msg
    assert "x.yaml: stages[1].rate: Extra inputs are not permitted" in msg


def test_unknown_kind_lists_valid_kinds(tmp_path: Path) -> None:
    msg = _error(tmp_path, BASE + "stages:\n  - {kind: soak, users: 1}\n")
    assert "stages[0]" in msg and "'concurrency'" in msg and "'sweep'" in msg and "'ladder'" in msg


@pytest.mark.parametrize("stage,field", [
    ("{kind: concurrency, users: 4}", "stages[0]: Value error, a stage needs duration_s, requests or both"),
    ("{kind: concurrency, users: 0, requests: 1}", "stages[0].users: Input should be greater than 0"),
    ("{kind: rate, rate_rps: 1, requests: 3, arrivals: poisson, burstiness: 2}",
     "burstiness applies to arrivals: gamma"),
    ("{kind: ladder, of: concurrency, values: [1, 2.5], requests: 3}", "whole numbers of users"),
    ("{kind: ramp, start_users: 1, end_users: 8}", "stages[0].duration_s: Field required"),
    # inf validated once and then crashed building the schedule; nan is no one's setting either
    ("{kind: rate, rate_rps: .inf, requests: 3}", "stages[0].rate_rps: Input should be a finite number"),
    ("{kind: concurrency, users: 2, duration_s: .nan}", "stages[0].duration_s: Input should be a finite number"),
])
def test_stage_validation(tmp_path: Path, stage: str, field: str) -> None:
    assert field in _error(tmp_path, BASE + f"stages:\n  - {stage}\n")


def test_top_level_and_yaml_errors(tmp_path: Path) -> None:
    assert "x.yaml: output_tokens: Field required" in _error(tmp_path, "name: x\ninput_tokens: 8\nstages: []\n")
    assert "x.yaml: stages: List should have at least 1 item" in _error(tmp_path, BASE + "stages: []\n")
    assert "x.yaml is not valid YAML (line 2" in _error(tmp_path, "name: x\n  bad: [\n")
    assert "x.yaml: a profile is a mapping" in _error(tmp_path, "- 1\n- 2\n")
    assert "x.yaml: prompts.path: Field required" in _error(tmp_path, BASE + "prompts: {kind: jsonl}\n"
                                                            "stages: [{kind: concurrency, users: 1, requests: 1}]\n")


def test_ladder_expands_and_names_are_unique(tmp_path: Path) -> None:
    path = _write(tmp_path, BASE + "warmup: {requests: 2}\nstages:\n"
                  "  - {kind: ladder, of: concurrency, values: [1, 4], requests: 8}\n"
                  "  - {kind: ladder, of: rate, values: [0.5, 2], duration_s: 5, arrivals: gamma, burstiness: 0.5,"
                  " warmup: {duration_s: 1}}\n"
                  "  - {kind: concurrency, users: 4, duration_s: 3}\n")
    stages = load_profile(path).expanded_stages()
    assert [s.name for s in stages] == ["c1", "c4", "r0.5", "r2", "c4-2"]
    assert isinstance(stages[0], ConcurrencyStage) and stages[0].requests == 8 and stages[0].warmup.requests == 2
    assert isinstance(stages[2], RateStage) and stages[2].burstiness == 0.5 and stages[2].warmup.duration_s == 1


def test_find_profile_by_name_or_path_and_unknown_name_lists_names(tmp_path: Path) -> None:
    assert find_profile("quick") == PROFILES_DIR / "quick.yaml"
    path = _write(tmp_path, BASE + "stages: [{kind: concurrency, users: 1, requests: 1}]\n")
    assert find_profile(str(path)) == path
    with pytest.raises(ConfigError) as info:
        find_profile("nope")
    assert "nope" in str(info.value) and "quick" in str(info.value.hint) and "ladder" in str(info.value.hint)
