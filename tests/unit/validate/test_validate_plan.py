"""`serve-bench validate`: a plan made from one known-capacity engine (virtual time, open-loop rates) replayed on
the fleet it asks for (real engines, real Locust, real time): it holds on two replicas and says predicted against
observed, it fails on one (exit 9), and `report --scaling-efficiency` plans with what was measured."""

from __future__ import annotations

import contextlib
import json

import pytest
from click.testing import CliRunner

from serve_bench.cli.main import cli
from serve_bench.errors import EXIT_PLAN_FAILED
from serve_bench.report import build_report
from serve_bench.simengine.params import EngineParams
from serve_bench.simengine.runs import write_ladder_run
from serve_bench.simengine.server import running

pytestmark = pytest.mark.system

# 4 slots of 8 tokens at 20 ms + 2 ms/sequence a step: about 18 req/s at most, 15.6 within p90 TTFT ≤ 300 ms
ENGINE = EngineParams(step_ms=20, per_seq_ms=2, max_num_seqs=4)
SLO = {"slo_ms": {"ttft_ms": 300.0}, "percentile": 90.0, "min_attainment": 0.9, "source": "the study's slo"}


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    """A run of one engine at open-loop rates and its report: 18 req/s with 20% headroom asks for 2 replicas."""
    root = tmp_path_factory.mktemp("plan")
    prompts = root / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": "tok " * 8}) + "\n" for _ in range(8)))
    run = write_ladder_run(root / "run", {"m": ENGINE}, rates=(4, 8, 12, 14, 16), requests=400, prompt_tokens=8,
                           output_tokens=8, slo=SLO, prompts={"kind": "jsonl", "path": str(prompts)},
                           report={"capacity": {"rps": 18, "headroom": 0.2}})
    build_report([run])
    return run


@contextlib.contextmanager
def engines(tmp_path, n):
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(running(ENGINE, log_path=tmp_path / f"e{i}.jsonl", model="m"))[0]
               for i in range(n)]


def validate(*args):
    return CliRunner().invoke(cli, ["validate", *map(str, args), "--tokenizer", "none: prompts from a file",
                                    "--quiet"], catch_exceptions=False)


def test_the_plan_holds_on_the_fleet_it_asks_for_and_says_predicted_against_observed(planned, tmp_path):
    plan = json.loads((planned / "report" / "report.json").read_text())["checkpoints"][0]["plan"]
    assert plan["replicas"] == 2 and plan["input_tokens"] == 8 and plan["output_tokens"] == 8
    with engines(tmp_path, 2) as urls:
        out = validate(planned, "--url", urls[0], "--url", urls[1], "--fewer", "--duration", 8, "--search", 0.8,
                       "--search", 1.2, "--out", tmp_path / "v")
    assert out.exit_code == 0, out.output
    assert "the plan holds" in out.output and "predicted" in out.output
    v = json.loads((tmp_path / "v" / "validation.json").read_text())
    assert v["holds"] and v["replicas"] == v["planned_replicas"] == 2 and v["fleet"] == urls
    assert v["plan_stage"]["met"] and v["plan_stage"]["attainment"] >= 0.9
    lo, hi = v["plan_stage"]["attainment_ci"]
    assert lo <= v["plan_stage"]["attainment"] <= hi < 1.0 + 1e-9 and lo < hi
    # the fleet's capacity measured around 2 × 15.6 req/s: the engines are alike, so it scales about linearly
    assert v["predicted_fleet_rps"] == pytest.approx(2 * plan["capacity_rps"])
    assert v["observed_fleet_rps"] is not None and 0.7 < v["scaling_efficiency"] < 1.3
    assert v["observed_per_replica_rps"] == pytest.approx(v["observed_fleet_rps"] / 2)
    # one replica fewer carries 18 req/s alone, beyond what one engine serves at all: it misses
    assert v["fewer"]["replicas"] == 1 and v["fewer"]["met"] is False
    assert any("2 is the fewest that holds" in n for n in v["notes"])
    # every request of the fleet's run went to one of its endpoints, and each endpoint's engine served some
    served = [len((tmp_path / f"e{i}.jsonl").read_text().splitlines()) for i in range(2)]
    assert min(served) > 0.3 * max(served)
    md = (tmp_path / "v" / "validation.md").read_text()
    assert "| scaling efficiency" in md and "Wilson" in md
    # the report of the plan's run shows the measured efficiency once it is kept where report looks
    planned_validations = planned / "validations" / "v"
    planned_validations.parent.mkdir(exist_ok=True)
    (tmp_path / "v").rename(planned_validations)
    report = CliRunner().invoke(cli, ["report", str(planned), "--scaling-efficiency", "measured"])
    assert report.exit_code == 0, report.output
    data = json.loads((planned / "report" / "report.json").read_text())
    measured = data["checkpoints"][0]["plan"]["scaling_efficiency"]
    assert measured == pytest.approx(v["scaling_efficiency"], rel=1e-3)
    assert any("validate" in a and "scaling" in a for a in data["assumptions"])


def test_the_plan_fails_on_one_replica_fewer_with_its_own_exit_code(planned, tmp_path):
    with engines(tmp_path, 1) as urls:
        out = validate(planned, "--url", urls[0], "--duration", 6, "--no-search", "--out", tmp_path / "v")
    assert out.exit_code == EXIT_PLAN_FAILED, out.output
    assert "the plan does not hold" in out.output and "missed" in out.output
    v = json.loads((tmp_path / "v" / "validation.json").read_text())
    assert not v["holds"] and v["replicas"] == 1 and v["planned_replicas"] == 2
    assert any("the plan asked for 2" in n for n in v["notes"])
    assert v["observed_fleet_rps"] is None  # no search: the capacity was not measured


@pytest.mark.parametrize("args, says", [
    (["--replicas", "2", "--url", "http://127.0.0.1:9"], "not both"),
    (["--checkpoint", "nope"], "has no checkpoint 'nope'"),
    (["--fewer", "--url", "http://127.0.0.1:9"], "a fleet of one has none to spare"),
    (["--duration", "0"], "--duration must be positive"),
    (["--replicas", "0"], "--replicas must be at least 1"),
])
def test_bad_input_is_refused_before_anything_starts(planned, args, says):
    out = CliRunner().invoke(cli, ["validate", str(planned), *args])
    assert out.exit_code == 2 and says in out.output, out.output


def test_a_report_without_a_plan_or_no_report_at_all_is_refused(tmp_path):
    out = CliRunner().invoke(cli, ["validate", str(tmp_path)])
    assert out.exit_code == 2 and "no capacity report" in out.output
