"""Accuracy read back from a checkpoint's eval/ directory, or None ("not evaluated")."""

from __future__ import annotations

import json

import pytest

from serve_bench.report.accuracy import read_accuracy
from serve_bench.report.capacity import accuracy_deltas

pytestmark = pytest.mark.unit


def test_nothing_evaluated_is_none(tmp_path):
    assert read_accuracy(tmp_path) is None
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "results.json").write_text("not json")
    assert read_accuracy(tmp_path) is None


def test_serve_bench_summary(tmp_path):
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "results.json").write_text(json.dumps({"lm_eval_version": "0.4", "tasks": {
        "mmlu": {"metric": "acc,none", "value": 0.41, "stderr": 0.004, "higher_is_better": True},
        "wikitext": {"metric": "word_perplexity,none", "value": 21.5, "stderr": None, "higher_is_better": False},
        "broken": {"metric": "acc,none", "value": None}}}))
    scores = read_accuracy(tmp_path)
    assert set(scores) == {"mmlu", "wikitext"}
    assert scores["mmlu"].value == 0.41 and scores["mmlu"].stderr == 0.004 and scores["mmlu"].is_fraction
    assert not scores["wikitext"].is_fraction and scores["wikitext"].metric == "word_perplexity"


def test_lm_eval_raw_results(tmp_path):
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "arc.json").write_text(json.dumps({"results": {"arc_easy": {
        "acc,none": 0.6, "acc_stderr,none": 0.01, "acc_norm,none": 0.55, "acc_norm_stderr,none": 0.01}}}))
    score = read_accuracy(tmp_path)["arc_easy"]
    assert (score.metric, score.value, score.stderr) == ("acc_norm", 0.55, 0.01)


def test_deltas_in_points_and_perplexity_relative(tmp_path):
    for name, mmlu, ppl in (("base", 0.42, 20.0), ("p40", 0.30, 25.0)):
        d = tmp_path / name / "eval"
        d.mkdir(parents=True)
        d.joinpath("results.json").write_text(json.dumps({"tasks": {
            "mmlu": {"metric": "acc,none", "value": mmlu, "stderr": 0.01},
            "wikitext": {"metric": "word_perplexity,none", "value": ppl, "higher_is_better": False}}}))
    deltas = accuracy_deltas(read_accuracy(tmp_path / "p40"), read_accuracy(tmp_path / "base"))
    assert deltas == ["−12.0 points mmlu", "wikitext word_perplexity +25%"]
