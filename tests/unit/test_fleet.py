"""A fleet loaded as one: requests spread over several endpoints, each record naming its endpoint, a dead
replica left out, and endpoints that serve different models refused. Against two known-capacity engines."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal

import pytest
from test_repeats import study

from serve_bench.errors import ConfigError
from serve_bench.load.process import run_profile
from serve_bench.measure.records import read_records
from serve_bench.pipeline import run_study, served_fleet
from serve_bench.plan import plan_study
from serve_bench.plan.text import render_plan
from serve_bench.rundir import RunDir
from serve_bench.simengine.params import EngineParams
from serve_bench.simengine.server import read_log, running
from serve_bench.study import ServerSettings
from serve_bench.summary import collect, recompute
from serve_bench.workload.profiles import profile_from_data

pytestmark = pytest.mark.system

FAST, SLOW = EngineParams(step_ms=4, per_seq_ms=1), EngineParams(step_ms=40, per_seq_ms=1)


def profile(tmp_path, stage):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": "tok " * 8}) + "\n" for _ in range(8)))
    return profile_from_data({"name": "p", "api": "chat", "input_tokens": 8, "output_tokens": 4, "ignore_eos": True,
                              "timeout_s": 30, "prompts": {"kind": "jsonl", "path": str(prompts)},
                              "stages": [stage]})


@contextlib.contextmanager
def fleet(tmp_path):
    with running(FAST, log_path=tmp_path / "fast.jsonl", model="m") as (fast, _), \
            running(SLOW, log_path=tmp_path / "slow.jsonl", model="m") as (slow, slow_proc):
        yield fast, slow, slow_proc


def test_requests_spread_by_policy_and_every_record_names_the_endpoint_that_served_it(tmp_path):
    prof = profile(tmp_path, {"kind": "concurrency", "name": "c4", "users": 4, "requests": 40})
    with fleet(tmp_path) as (fast, slow, _):
        out = {}
        for policy in ("least-outstanding", "round-robin"):
            path = tmp_path / f"{policy}.jsonl"
            [result] = run_profile(prof, url=fast, endpoints=[fast, slow], balance=policy, model="m",
                                   records_path=path, log_path=tmp_path / "load.log")
            out[policy] = (result, read_records(path))
    served = {"fast": read_log(tmp_path / "fast.jsonl"), "slow": read_log(tmp_path / "slow.jsonl")}
    counts = {}
    for policy, (result, records) in out.items():
        assert all(r.ok for r in records) and len(records) == 40
        by = {u: sum(r.endpoint == u for r in records) for u in (fast, slow)}
        assert sum(by.values()) == 40  # every record names one of the fleet's endpoints
        assert {u: e["attempted"] for u, e in result.endpoints.items()} == by
        assert sum(e["share"] for e in result.endpoints.values()) == pytest.approx(1.0)
        assert result.balance == pytest.approx(min(by.values()) / max(by.values()))
        assert result.endpoints[slow]["p50_e2el_ms"] > result.endpoints[fast]["p50_e2el_ms"]
        assert not result.dead_endpoints and not result.flags
        counts[policy] = by
    # the engines' own logs agree with the records on who served how many
    assert len(served["fast"]) == sum(c[fast] for c in counts.values())
    assert len(served["slow"]) == sum(c[slow] for c in counts.values())
    assert counts["round-robin"][fast] == counts["round-robin"][slow] == 20
    # the slow replica (10x the step cost) gets far fewer when each request goes where fewest are in flight
    assert counts["least-outstanding"][fast] > 2 * counts["least-outstanding"][slow] > 0


@pytest.mark.parametrize("stop", [False, True], ids=["goes-on", "stops"])
def test_a_replica_that_dies_mid_stage_is_named_its_records_kept_and_the_fleet_goes_on_or_stops(tmp_path, stop):
    prof = profile(tmp_path, {"kind": "concurrency", "name": "c3", "users": 3, "requests": 60})
    with fleet(tmp_path) as (fast, slow, slow_proc):
        seen = []

        def kill_slow(record):
            seen.append(record)
            if len(seen) == 6:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(slow_proc.pid, signal.SIGKILL)

        [result] = run_profile(prof, url=fast, endpoints=[fast, slow], balance="round-robin", model="m",
                               records_path=tmp_path / "r.jsonl", log_path=tmp_path / "load.log",
                               on_record=kill_slow, stop_on_death=stop)
    records = read_records(tmp_path / "r.jsonl")
    assert result.dead_endpoints == [slow] and "dead_endpoints" in result.flags
    assert any(slow in w and "mid-stage" in w for w in result.warnings)
    before = [r for r in records if r.endpoint == slow and r.ok]
    assert before, "the dead replica's finished requests are kept"
    assert result.server_died is stop and result.stopped_early is stop
    if not stop:
        assert len(records) == 60
        last = records[-10:]  # once found dead it gets no more requests
        assert all(r.endpoint == fast and r.ok for r in last)


def test_endpoints_that_serve_different_models_are_refused_naming_the_one_that_differs(tmp_path):
    with running(FAST, log_path=tmp_path / "a.jsonl", model="m") as (a, _), \
            running(FAST, log_path=tmp_path / "b.jsonl", model="other") as (b, _):
        assert served_fleet([a, a + "/"], None, None)[0] == "m"
        with pytest.raises(ConfigError, match=f"{b} does not serve 'm'"):
            served_fleet([a, b], None, None)


def test_a_run_at_several_urls_loads_the_fleet_and_its_stage_files_say_how_the_load_was_spread(tmp_path):
    with fleet(tmp_path) as (fast, slow, _):
        spec = study(tmp_path, None).model_copy(update={"name": "fleet", "server": ServerSettings(
            endpoints=[fast, slow], tokenizer="none: prompts from a file"), "percentiles": [75.0, 99.0, 99.5]})
        text = render_plan(plan_study(spec, verify=False))
        outcome = run_study(spec)
    assert "server: a fleet of 2 endpoints, already running (not launched), requests spread least-outstanding" \
           in text and f"{fast}, {slow}" in text
    assert outcome.status == "completed"
    run = RunDir(outcome.run_dir)
    [ck] = run.checkpoints()
    assert {r.endpoint for r in read_records(run.records_path(ck))} == {fast, slow}
    for stage in run.stage_results(ck):
        assert set(stage.endpoints) == {fast, slow} and 0 < stage.balance <= 1
        # both replicas run on this host: the server, not other work that would flag the stage as contended
        assert len(stage.host["server_processes"]) == 2
        # each endpoint's /metrics scraped: its own count agrees with the records that name it, and the fleet's
        # is their sum
        by = stage.server["by_endpoint"]
        assert set(by) == {fast, slow} and all(e["scraped"] for e in by.values())
        assert all(e["requests"]["server"] == e["requests"]["client"] > 0 for e in by.values())
        assert stage.server["requests"]["server"] == sum(e["requests"]["server"] for e in by.values())
    kept = sorted(p.name for p in (run.checkpoint_dir(ck) / "server_metrics").glob("*.prom"))
    assert kept == ["00-start-e1.prom", "00-start-e2.prom", "01-after-c2-e1.prom", "01-after-c2-e2.prom",
                    "02-after-c4-e1.prom", "02-after-c4-e2.prom"]
    assert (run.checkpoint_dir(ck) / "server_metrics" / "00-start-e2.prom").read_text().startswith(f"# endpoint {slow}")
    lines = [json.loads(x) for x in (run.checkpoint_dir(ck) / "server_metrics" / "timeseries.jsonl").open()]
    assert {x["endpoint"] for x in lines} == {fast, slow}
    assert run.manifest().study["server"]["endpoints"] == [fast, slow]
    # the study's percentiles in every stage summary (p90 is not asked for), and summarize recomputes them
    summary = run.stage_results(ck)[0].summary
    assert {"p75_ttft_ms", "p99.5_ttft_ms", "p99_e2el_ms"} <= set(summary) and "p90_ttft_ms" not in summary
    assert recompute(run) == collect(run)
    # summary.csv: summary.json's rows, a column per field
    rows = json.loads((outcome.run_dir / "summary.json").read_text())["rows"]
    with open(outcome.run_dir / "summary.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(rows) == 2 and set(table[0]) == set(rows[0])
    assert [t["stage"] for t in table] == ["c2", "c4"]
    assert float(table[1]["request_throughput"]) == rows[1]["request_throughput"]
