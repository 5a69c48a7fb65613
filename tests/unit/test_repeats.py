"""`run --repeats N`: a series directory of trial runs, every record and stage marked with its trial, the
prefix cache reset where the server offers it (and said where it does not), and the trials compared run to
run. Against the known-capacity engine at --url (real Locust, real time, short stages)."""

from __future__ import annotations

import json

import pytest
import yaml

from serve_bench.compare.build import compare
from serve_bench.compare.sides import run_paths
from serve_bench.measure.records import read_records
from serve_bench.pipeline import run_study
from serve_bench.plan import plan_study
from serve_bench.rundir import SERIES, RunDir
from serve_bench.simengine.params import EngineParams
from serve_bench.simengine.server import running
from serve_bench.study import EnergySettings, EvalSettings, ServerSettings, StudySpec

pytestmark = pytest.mark.system  # starts the engine and the load process


def study(tmp_path, url, **extra):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": "tok " * 8}) + "\n" for _ in range(8)))
    profile = tmp_path / "p.yaml"
    profile.write_text(yaml.safe_dump({
        "name": "p", "api": "chat", "input_tokens": 8, "output_tokens": 4, "ignore_eos": True, "timeout_s": 30,
        "prompts": {"kind": "jsonl", "path": str(prompts)},
        "stages": [{"kind": "concurrency", "name": "c2", "users": 2, "requests": 12},
                   {"kind": "concurrency", "name": "c4", "users": 4, "requests": 24}]}))
    return StudySpec(name="rep", profiles=[str(profile)], out_dir=tmp_path / "runs",
                     server=ServerSettings(url=url, tokenizer="none: prompts from a file"),
                     eval=EvalSettings(enabled=False), energy=EnergySettings(idle_s=0), slo={"tpot_ms": 40.0},
                     metrics={"port": 0}, **extra)


def test_repeats_make_a_series_of_trials_each_a_run(tmp_path):
    with running(EngineParams(step_ms=5, per_seq_ms=1), log_path=tmp_path / "engine.jsonl") as (url, _):
        spec = study(tmp_path, url, repeats=3, cooldown_s=0.1)
        plan = plan_study(spec, verify=False)
        single = plan_study(spec.model_copy(update={"repeats": 1}), verify=False)
        outcome = run_study(spec)
    assert plan.stage_count() == 3 * single.stage_count() and plan.requests()[0] == 3 * single.requests()[0]
    assert outcome.status == "completed" and len(outcome.trials) == 3
    series = json.loads((outcome.run_dir / SERIES).read_text())
    assert series["runs"] == ["trial-1", "trial-2", "trial-3"] and series["status"] == "completed"
    # the engine offers no prefix-cache reset: said once, not silently skipped
    assert any("prefix cache" in n for n in series["notes"])
    for index, path in enumerate(run_paths(outcome.run_dir), 1):
        run = RunDir(path)
        assert run.manifest().trial["index"] == index and run.manifest().trial["of"] == 3
        [ck] = run.checkpoints()
        assert {r.trial for r in read_records(run.records_path(ck))} == {index}
        assert [(s.stage, s.trial) for s in run.stage_results(ck)] == [("c2", index), ("c4", index)]
        assert (path / "report" / "report.json").is_file()
    # the series is one side of a comparison: Welch's test across its trials
    c = compare(outcome.run_dir, outcome.run_dir)
    assert "Welch" in c.method and not c.significant


def test_checkpoint_blocks_alternate_their_order(tmp_path):
    from serve_bench.pipeline import Trial

    blocks = [Trial(i, 4, tmp_path, reverse=i % 2 == 0).arrange(["A", "B"]) for i in (1, 2, 3, 4)]
    assert sum(blocks, []) == ["A", "B", "B", "A", "A", "B", "B", "A"]
