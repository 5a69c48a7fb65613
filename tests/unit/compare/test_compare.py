"""`serve-bench compare` against runs of known difference: the same engine with other seeds (no difference)
and an engine slower per token (a known regression), made in virtual time so that the truth is exact."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from serve_bench.compare import significance as sig
from serve_bench.compare.build import compare
from serve_bench.compare.render import JSON, MARKDOWN, write
from serve_bench.errors import ConfigError
from serve_bench.simengine.params import EngineParams
from serve_bench.simengine.runs import write_ladder_run

pytestmark = pytest.mark.unit

SLO = {"slo_ms": {"tpot_ms": 40.0}, "percentile": 90.0, "min_attainment": 0.9, "source": "test"}


def side(root: Path, trials: int, slower: float = 1.0, seed: int = 0, name: str = "sim") -> Path:
    """``trials`` runs of one engine (each its own jitter seed), ``slower`` times its step costs."""
    for t in range(trials):
        engine = EngineParams(step_ms=10 * slower, per_seq_ms=slower, jitter=0.2, seed=seed + t)
        write_ladder_run(root / f"trial-{t + 1}", {name: engine}, slo=SLO, requests=300, users=(8, 16, 24, 32))
    return root


@pytest.fixture(scope="module")
def sides(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sides")
    return {"a": side(root / "a", 3, seed=100), "b": side(root / "b", 3, seed=200),
            "slow": side(root / "slow", 3, slower=1.15, seed=300)}


def test_the_same_engine_twice_is_no_regression_across_trials(sides):
    c = compare(sides["a"], sides["b"], max_regression_pct=5)
    assert c.baseline["trials"] == c.candidate["trials"] == 3
    assert "Welch" in c.method
    tested = [r for r in c.rows if r.test.method == sig.WELCH]
    assert len(tested) >= 30  # every stage figure but energy, and the capacity
    assert not c.regressions, [r.title for r in c.regressions]
    assert all(r.test.ci[0] < 1.0 < r.test.ci[1] or not r.significant for r in tested)


def test_an_engine_15_percent_slower_per_token_is_a_regression(sides):
    c = compare(sides["a"], sides["slow"], max_regression_pct=5)
    by_key = {(r.stage, r.key): r for r in c.rows}
    for stage in ("c8", "c16", "c24", "c32"):
        tput = by_key[(stage, "output_throughput")]
        assert tput.regression and tput.direction == "worse"
        assert 1 / 1.15 - 0.03 < tput.test.ratio < 1 / 1.15 + 0.03
        assert tput.test.ci[0] < tput.test.ratio < tput.test.ci[1] < 1.0
    capacity = by_key[(None, "capacity_rate_rps")]
    assert capacity.test.ratio < 0.92 and capacity.direction == "worse"
    # the gate's threshold: none of these is worse by more than 40%
    assert not compare(sides["a"], sides["slow"], max_regression_pct=40).regressions


def test_one_trial_a_side_uses_the_bootstrap_and_says_what_it_covers(sides):
    same = compare(sides["a"] / "trial-1", sides["b"] / "trial-1", max_regression_pct=5, resamples=200)
    assert "bootstrap" in same.method and "not how far a second run would move" in same.method
    assert {r.test.method for r in same.rows} >= {sig.BOOTSTRAP}
    slow = compare(sides["a"] / "trial-1", sides["slow"] / "trial-1", max_regression_pct=5, resamples=200)
    assert any(r.key == "output_throughput" for r in slow.regressions)
    # a figure from too few samples says so
    p99 = next(r for r in slow.rows if r.key == "p99 tpot_ms")
    assert "too few samples" in p99.note and "1,000" in p99.note


def test_uneven_trials_compare_the_first_of_each_and_say_so(sides):
    c = compare(sides["a"], sides["b"] / "trial-1", resamples=200)
    assert "bootstrap" in c.method
    assert any("only the first trial of each" in n for n in c.notes)


def test_outputs_markdown_and_json(sides, tmp_path):
    c = compare(sides["a"], sides["slow"], max_regression_pct=5)
    md, js = write(c, tmp_path / "out")
    assert md.name == MARKDOWN and js.name == JSON
    data = json.loads(js.read_text())
    assert data["regressions"] and data["gate"].startswith(f"{len(c.regressions)} figure(s) significantly worse")
    assert {row["direction"] for row in data["rows"]} >= {"worse"}
    text = md.read_text()
    assert "REGRESSION" in text and "Welch" in text


def test_different_hardware_is_refused_unless_forced(sides, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(sides["b"], other)
    for manifest in other.glob("trial-*/manifest.json"):
        data = json.loads(manifest.read_text())
        data["hardware"] = {**data["hardware"], "cpu_model": "another CPU"}
        manifest.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="cpu_model"):
        compare(sides["a"], other)
    forced = compare(sides["a"], other, force=True)
    assert any("--force" in n and "cpu_model" in n for n in forced.notes)


def test_profiles_defined_differently_are_left_out_with_a_reason(sides, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(sides["b"], other)
    for manifest in other.glob("trial-*/manifest.json"):
        data = json.loads(manifest.read_text())
        data["profiles"][0]["output_tokens"] = 64
        manifest.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="share no load profile"):
        compare(sides["a"], other)


def test_not_a_run_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="not a serve-bench run directory"):
        compare(tmp_path, tmp_path)


def test_trials_of_different_studies_are_refused(sides, tmp_path):
    mixed = tmp_path / "mixed"
    shutil.copytree(sides["a"], mixed)
    data = json.loads((mixed / "trial-2" / "manifest.json").read_text())
    data["profiles"][0]["requests"] = 5
    (mixed / "trial-2" / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="not the same study"):
        compare(mixed, sides["b"])


def test_welch_matches_scipy_and_holm_adjusts_in_order():
    t = sig.welch([10.0, 10.5, 9.8], [11.0, 11.4, 10.9])
    assert t.method == sig.WELCH and t.p < 0.05 and t.ci[0] > 1.0
    assert sig.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert sig.welch([1.0], [2.0, 2.1]).method == sig.NONE


def test_bootstrap_test_of_identical_draws_is_not_significant():
    rng = np.random.default_rng(0)
    draws = rng.normal(100, 5, 1000)
    t = sig.bootstrap(100.0, 100.0, draws, rng.permutation(draws))
    assert t.p > 0.5 and t.ci[0] < 1.0 < t.ci[1]


def test_labels_tell_the_sides_apart_in_the_comparison_and_the_report(tmp_path):
    from serve_bench.compare.render import render_markdown
    from serve_bench.report import build_report

    a, b = side(tmp_path / "a", 1, seed=1), side(tmp_path / "b", 1, seed=2)
    for root, labels in ((a, {"gpu": "h100", "build": "1"}), (b, {"gpu": "h200", "build": "2"})):
        manifest = root / "trial-1" / "manifest.json"
        data = json.loads(manifest.read_text())
        data["study"]["labels"] = labels
        manifest.write_text(json.dumps(data))
    c = compare(a, b)
    assert c.baseline["labels"] == {"gpu": "h100", "build": "1"} and c.candidate["labels"]["gpu"] == "h200"
    text = render_markdown(c)
    assert "labels gpu=h100, build=1" in text and "labels gpu=h200, build=2" in text
    build_report([a / "trial-1"], out=tmp_path / "report")
    md = (tmp_path / "report" / "report.md").read_text()
    assert "| run | labels |" in md and "gpu=h100, build=1" in md
