"""The dichotomy table from a run directory: sizes, scores ± stderr, change against base, the serving
columns at one stated stage, and correlations only with enough checkpoints."""

import json
from pathlib import Path

import numpy as np
import pytest

from serve_bench.errors import ConfigError
from serve_bench.evaluate.results import metrics_of
from serve_bench.evaluate.table import MIN_CHECKPOINTS_FOR_R, TABLE_JSON, TABLE_MD, dichotomy_table
from serve_bench.rundir import write_json

pytestmark = pytest.mark.unit


def _run(tmp_path: Path, scores: list[tuple[float, float, float]], dir_name: str = "run", first: int = 0) -> Path:
    """A run with one checkpoint per (mmlu, truthfulqa_mc2, wikitext) triple; checkpoint 0 is the base."""
    run = tmp_path / dir_name
    rows = []
    for i, (mmlu, tqa, ppl) in enumerate(scores, start=first):
        name = "smol" if i == 0 else f"smol-ppm-p{i * 10}"
        pruning = None if i == 0 else {
            "criterion": "ppm", "requested": {"prune": i / 10, "expansion_ratio": None}, "realised_prune": i / 12,
            "parameters_before": 134_515_008, "parameters_after": 134_515_008 - i * 1_000_000,
            "expansion_ratio_before": 2.667, "expansion_ratio": 2.667 - i / 10, "kept_indices_sha256": {"0": "x"}}
        write_json(run / name / "checkpoint.json", {"name": name, "label": "base" if i == 0 else f"p{i * 10}",
                                                    "path": str(tmp_path / "nowhere"), "pruning": pruning})
        task = lambda v, s, m="acc,none", hib=True: {"metric": m, "value": v, "stderr": s,  # noqa: E731
                                                     "higher_is_better": hib, "limit": 10, "metrics": {}}
        write_json(run / name / "eval" / "results.json", {"lm_eval_version": "0.4.13", "tasks": {
            "mmlu": task(mmlu, 0.01), "truthfulqa_mc2": task(tqa, 0.02),
            "wikitext": task(ppl, None, "word_perplexity,none", False)}})
        for stage, tps in (("c1", 10.0 - i), ("c4", 30.0 - i)):
            rows.append({"checkpoint": name, "stage": stage, "load": stage.replace("c", "") + " users",
                         "output_throughput": tps, "ttft_p50_ms": 100.0 + i, "median_tpot_ms": 20.0,
                         "energy_per_output_token_joules": "n/m"})
    write_json(run / "summary.json", {"rows": rows})
    write_json(run / "manifest.json", {})
    return run


def test_three_checkpoints_give_the_table_and_say_why_no_correlation(tmp_path: Path) -> None:
    run = _run(tmp_path, [(0.30, 0.40, 20.0), (0.27, 0.42, 25.5), (0.25, 0.45, 40.0)])
    d = dichotomy_table(run)
    assert (run / TABLE_MD).read_text() == d.markdown
    assert json.loads((run / TABLE_JSON).read_text())["stage"] == "c4"
    rows = {r["label"]: r for r in d.data["checkpoints"]}
    assert rows["base"]["parameters"] == 134_515_008 and rows["base"]["expansion_ratio"] == 2.667
    assert rows["p10"]["scores"]["mmlu"]["vs_base"] == pytest.approx(-0.03)
    assert rows["p20"]["scores"]["wikitext"]["vs_base"] == pytest.approx(20.0)
    assert "vs_base" not in rows["base"]["scores"]["mmlu"]
    assert rows["p20"]["serving"]["output_throughput"] == 28.0
    assert "kept_indices_sha256" not in json.dumps(d.data)
    md = d.markdown
    assert "| p10 | 133.5 | 2.57 | 8.3% (asked 10%) | 0.270 ± 0.010 (-0.030) |" in md
    assert "25.50 (+5.50)" in md and "stage c4 (4 users)" in md and "| n/m |" in md
    assert f"Correlations need at least {MIN_CHECKPOINTS_FOR_R} checkpoints (this table has 3); not computed." in md
    assert not d.data["correlations"]["computed"]
    assert "mmlu 10 items per subject" in md


def test_enough_checkpoints_give_pearson_r_and_p(tmp_path: Path) -> None:
    mmlu = [0.30, 0.29, 0.27, 0.26, 0.25, 0.24]
    tqa = [0.40, 0.41, 0.41, 0.43, 0.44, 0.47]
    run = _run(tmp_path, [(m, t, 20.0 + i) for i, (m, t) in enumerate(zip(mmlu, tqa))])
    d = dichotomy_table(run, stage="c1", write=False)
    assert not (run / TABLE_MD).exists() and d.data["stage"] == "c1"
    pair = next(p for p in d.data["correlations"]["pairs"] if (p["x"], p["y"]) == ("mmlu", "truthfulqa_mc2"))
    assert pair["n"] == 6 and pair["r"] == pytest.approx(np.corrcoef(mmlu, tqa)[0, 1])
    assert 0 < pair["p"] < 0.05
    assert "Pearson r(mmlu, truthfulqa_mc2) = " in d.markdown


def test_several_runs_give_one_table_side_by_side(tmp_path: Path) -> None:
    first = _run(tmp_path, [(0.30, 0.40, 20.0), (0.20, 0.10, 99.0)], "first")  # base, then p10 (interrupted)
    rest = _run(tmp_path, [(0.27, 0.42, 25.5), (0.25, 0.45, 40.0)], "rest", first=1)  # p10 again, p20
    summary = json.loads((rest / "summary.json").read_text())
    for row in summary["rows"]:
        row["output_throughput"] += 100
    write_json(rest / "summary.json", summary)
    with pytest.raises(ConfigError, match="needs a directory"):
        dichotomy_table([first, rest])
    d = dichotomy_table([first, rest], out_dir=tmp_path / "both")
    assert (tmp_path / "both" / TABLE_MD).read_text() == d.markdown and not (first / TABLE_MD).exists()
    rows = {r["label"]: r for r in d.data["checkpoints"]}
    assert list(rows) == ["first:base", "first:p10", "rest:p10", "rest:p20"]
    assert rows["rest:p10"]["scores"]["mmlu"]["vs_base"] == pytest.approx(-0.03)  # against the first run's base
    assert rows["rest:p20"]["run"] == str(rest) and d.data["base"] == "first:base"
    assert d.data["stage"] == "c4"  # the base's last stage
    # each checkpoint's serving figures come from its own run's summary
    assert [r["serving"]["output_throughput"] for r in rows.values()] == [30.0, 29.0, 129.0, 128.0]
    assert "(this table has 4)" in d.markdown and "(change against first:base)" in d.markdown


def test_lm_eval_metrics_are_paired_with_their_stderr() -> None:
    got = metrics_of({"alias": "gsm8k", "exact_match,strict-match": 0.25, "exact_match_stderr,strict-match": 0.1,
                      "exact_match,flexible-extract": 0.5, "exact_match_stderr,flexible-extract": "N/A",
                      "word_perplexity,none": 21.0})
    assert got == {"exact_match,strict-match": {"value": 0.25, "stderr": 0.1},
                   "exact_match,flexible-extract": {"value": 0.5, "stderr": None},
                   "word_perplexity,none": {"value": 21.0, "stderr": None}}
