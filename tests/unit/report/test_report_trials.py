"""The report of a repeated run: run-to-run statistics across trials, and verdicts that hold only when the
difference is larger than the trials' noise. Trials made in virtual time against engines of known cost."""

from __future__ import annotations

import json

import pytest

from serve_bench.report.analysis import analyse
from serve_bench.report.build import build_report, expand_series, settings_for
from serve_bench.report.inputs import read_run
from serve_bench.report.trials import spread
from serve_bench.simengine.params import EngineParams
from serve_bench.simengine.runs import write_series

pytestmark = pytest.mark.unit

SLO = {"slo_ms": {"tpot_ms": 40.0}, "percentile": 90.0, "min_attainment": 0.9, "source": "test"}


def series(root, pruned_speed: float, trials: int = 3):
    engines = [{"base": EngineParams(step_ms=10, per_seq_ms=1, jitter=0.2, seed=10 + i),
                "p40": EngineParams(step_ms=10 / pruned_speed, per_seq_ms=1 / pruned_speed, jitter=0.2, seed=50 + i)}
               for i in range(trials)]
    return write_series(root, engines, slo=SLO, requests=200, users=(8, 16, 24, 32), bases={"p40": "base"})


def report(series_dir):
    settings = settings_for([series_dir / "trial-1"]).model_copy(update={"bootstrap_resamples": 200})
    return build_report([series_dir], settings=settings)


def test_a_faster_pruned_copy_is_established_across_trials(tmp_path):
    files = report(series(tmp_path / "s", 1.25))
    [verdict] = files.verdicts
    assert "established, more capacity per replica" in verdict and "over 3 trials" in verdict
    data = json.loads(files.json.read_text())
    trials = data["trials"]
    assert trials["trials"] == 3 and trials["runs"] == ["trial-1", "trial-2", "trial-3"]
    p40 = next(c for c in trials["checkpoints"] if c["name"] == "p40")
    cap = p40["capacity_rps"]
    assert len(cap["values"]) == 3 and cap["ci"][0] < cap["mean"] < cap["ci"][1]
    assert "noise dominates" in p40["noise"]
    text = files.markdown.read_text()
    assert "## Run to run (3 trials)" in text and "Student-t" in text and "Each trial's own verdicts" in text


def test_the_same_engine_is_not_established(tmp_path):
    root = series(tmp_path / "s", 1.0)
    settings = settings_for([root / "trial-1"]).model_copy(update={"bootstrap_resamples": 200})
    [verdict] = analyse([read_run(p) for p in expand_series([root])], settings).verdicts  # no files: quicker
    assert "not established" in verdict


def test_spread_states_its_limits():
    one = spread("x", "u", [5.0])
    assert one.ci is None and "one trial" in one.note
    two = spread("x", "u", [5.0, 6.0])
    assert two.ci is not None and "three or more" in two.note
    wide = spread("x", "u", [1.0, 1.5, 2.0])
    assert wide.unstable and wide.cv == pytest.approx(0.5 / 1.5)
    floor = spread("x", "u", [1.0, 1.0, 1.0], within_var=0.25)  # agreeing trials: the bootstrap's width stands
    assert floor.ci[1] - floor.ci[0] > 1.0
