"""`serve-bench compare` as a CI gate: its exit codes and what it prints."""

import pytest
from test_prune_cli import assert_clean_error, sb

from serve_bench.errors import EXIT_REGRESSION
from serve_bench.simengine.params import EngineParams
from serve_bench.simengine.runs import write_ladder_run

pytestmark = pytest.mark.system  # runs `python -m serve_bench` in subprocesses

SLO = {"slo_ms": {"tpot_ms": 40.0}, "percentile": 90.0, "min_attainment": 0.9, "source": "test"}


def run(root, slower=1.0, seed=0):
    engine = EngineParams(step_ms=10 * slower, per_seq_ms=slower, jitter=0.2, seed=seed)
    return write_ladder_run(root, {"sim": engine}, slo=SLO, requests=200, users=(8, 16, 24))


def test_the_gate_exits_8_naming_what_regressed_and_0_when_nothing_did(tmp_path):
    base, same, slow = run(tmp_path / "base", seed=1), run(tmp_path / "same", seed=2), run(tmp_path / "slow", 1.15, 3)
    bad = sb("compare", str(base), str(slow), "--max-regression", "5", "--out", str(tmp_path / "c1"))
    assert bad.returncode == EXIT_REGRESSION, bad.stderr
    assert "REGRESSION" in bad.stdout and "significantly worse by more than 5%" in bad.stdout
    assert "output throughput" in bad.stdout and (tmp_path / "c1" / "compare.json").is_file()
    ok = sb("compare", str(base), str(same), "--max-regression", "5")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "no figure is significantly worse by more than 5%" in ok.stdout
    assert (same / "compare" / "compare.md").is_file()
    # without --max-regression the comparison is a report, not a gate
    assert sb("compare", str(base), str(slow), "--out", str(tmp_path / "c2")).returncode == 0


def test_bad_inputs_are_clear_errors(tmp_path):
    base = run(tmp_path / "base")
    assert_clean_error(sb("compare", str(base), str(tmp_path / "nothing")), 2, "is not a serve-bench run directory")
    assert_clean_error(sb("compare", str(base), str(base), "--max-regression", "150"), 2, "--max-regression 150")
    assert_clean_error(sb("compare", str(base), str(base), "--alpha", "2"), 2, "--alpha 2")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert_clean_error(sb("compare", str(base), str(base), "--out", str(blocker / "out")), 2,
                       "cannot write the comparison", "--out")
