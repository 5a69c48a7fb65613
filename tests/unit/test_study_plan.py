"""The dry-run plan and its wall-time estimate, in-process: known constants, shipped profiles, history."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest

from serve_bench.load.stage_plan import plan_stage
from serve_bench.plan import (
    CPU_HOST,
    CheckpointPlan,
    CostModel,
    EnergyPlan,
    EvalPlan,
    ServerPlan,
    estimate_line,
    make_plan,
    plan_profile,
    read_history,
    render_plan,
    sweep_rates,
)
from serve_bench.workload.profiles import list_profiles, load_profile, profile_from_data

pytestmark = pytest.mark.unit

# Round numbers: E(N) = 0.5 + 0.1·(O − 1) + (N − 1)·(0·P + 0.01·O) seconds.
ROUND = CostModel(name="round numbers", startup_s=1.0, hash_gb_per_s=2.0, convert_bundled_s=20.0,
                  prune_s_per_gb=3.0, server_start_s=10.0, first_client_s=3.0, stop_s=2.0, finish_s=4.0,
                  stage_overhead_s=1.0, ttft_s=0.5, prefill_s_per_token=0.0, decode_step_s=0.1, mlp_share=0.5,
                  user_prompt_s_per_token=0.0, user_output_s_per_token=0.0, report_s=5.0)


def ck(name: str = "m", kept: float = 1.0, **kw) -> CheckpointPlan:
    return CheckpointPlan(name, "local", "serve", "test", name, kept=kept, **kw)


def prof(*stages: dict, warmup: dict | None = None, output: int = 11, prompt: int = 16):
    return profile_from_data({"name": "t", "input_tokens": prompt, "output_tokens": output,
                              "warmup": warmup or {}, "stages": list(stages)})


LAUNCH = ServerPlan("launch", build="cpu")
NO_ENERGY = EnergyPlan(False, "no meter", 10.0)


def test_e2el_and_throughput_follow_the_stated_formula() -> None:
    m = replace(ROUND, prefill_s_per_token=0.01, user_prompt_s_per_token=0.001, user_output_s_per_token=0.01)
    # 0.5 + 0.01·16 + 10·0.1 + 3·(0.001·16 + 0.01·11)
    assert m.e2el(4, 16, 11) == pytest.approx(0.5 + 0.16 + 1.0 + 3 * (0.016 + 0.11))
    # pruning scales the single request's decode step only: half the MLP kept, half the step is MLP
    assert m.e2el(1, 16, 11, kept=0.5) == pytest.approx(0.5 + 0.16 + 10 * 0.1 * 0.75)
    assert m.throughput(4, 16, 11) == pytest.approx(4 / m.e2el(4, 16, 11))


def test_closed_loop_request_bound_stage_with_warmup() -> None:
    p = prof({"kind": "concurrency", "users": 2, "requests": 6}, warmup={"requests": 1})
    [st] = plan_profile(p, [ck()], ROUND).stages
    e = st.per_checkpoint["m"]
    # E = 0.5 + 10·0.1 = 1.5 s; 3 rounds of 2 users; the warm-up request alone first; + overhead
    assert e.seconds == pytest.approx(1.0 + 1.5 + 3 * 1.5)
    assert (e.requests, e.warmup_requests, e.requests_how) == (7, 1, "exact")


def test_closed_loop_time_bound_stage_counts_rounds_and_drains() -> None:
    p = prof({"kind": "concurrency", "users": 3, "duration_s": 10})
    e = plan_profile(p, [ck()], ROUND).stages[0].per_checkpoint["m"]
    rounds = math.ceil(10 / 1.5)  # 7: the 7th request is in flight at the deadline and finishes
    assert e.seconds == pytest.approx(1.0 + rounds * 1.5)
    assert (e.requests, e.requests_how) == (3 * rounds, "estimate")


def test_both_bounds_take_the_shorter() -> None:
    p = prof({"kind": "concurrency", "users": 1, "requests": 48, "duration_s": 15})
    e = plan_profile(p, [ck()], ROUND).stages[0].per_checkpoint["m"]
    assert e.seconds == pytest.approx(1.0 + 10 * 1.5) and e.requests == 10  # time: 10 × 1.5 s ≥ 15 s
    p = prof({"kind": "concurrency", "users": 16, "requests": 48, "duration_s": 15})
    e = plan_profile(p, [ck()], ROUND).stages[0].per_checkpoint["m"]
    assert e.seconds == pytest.approx(1.0 + 3 * 1.5) and (e.requests, e.requests_how) == (48, "exact")


def test_open_loop_uses_the_exact_schedule() -> None:
    p = prof({"kind": "rate", "rate_rps": 2, "arrivals": "constant", "requests": 10})
    e = plan_profile(p, [ck()], ROUND).stages[0].per_checkpoint["m"]
    # 10 sends 0.5 s apart: span 4.5 s; no per-user cost, so the last one takes E = 1.5 s
    assert (e.requests, e.requests_how) == (10, "exact")
    assert e.seconds == pytest.approx(1.0 + 0.05 + 4.5 + 1.5)


def test_open_loop_beyond_capacity_is_flagged_and_queues() -> None:
    m = replace(ROUND, user_output_s_per_token=0.1)  # each request in flight adds 1.1 s: at most ~0.9 req/s
    p = prof({"kind": "rate", "rate_rps": 4, "arrivals": "constant", "requests": 40, "max_concurrency": 8})
    e = plan_profile(p, [ck()], m).stages[0].per_checkpoint["m"]
    assert "overloaded" in e.note
    assert e.seconds == pytest.approx(1.0 + 0.05 + 40 / m.throughput(8, 16, 11) + m.e2el(1, 16, 11))


def test_pruned_checkpoint_is_faster_where_the_stage_is_request_bound() -> None:
    p = prof({"kind": "concurrency", "users": 1, "requests": 4})
    [st] = plan_profile(p, [ck("base"), ck("p50", kept=0.5)], ROUND).stages
    assert st.per_checkpoint["base"].seconds == pytest.approx(1.0 + 4 * 1.5)
    assert st.per_checkpoint["p50"].seconds == pytest.approx(1.0 + 4 * (0.5 + 10 * 0.1 * 0.75))


def test_wall_time_adds_up_its_parts() -> None:
    p = prof({"kind": "concurrency", "users": 2, "requests": 6}, warmup={"requests": 1})
    cks = [ck("a", hash_bytes=2_000_000_000), ck("b", kept=0.5, hash_bytes=1_000_000_000)]
    cks[1].action, cks[1].prune_bytes = "prune", 3_000_000_000
    plan = make_plan("s", Path("out"), cks, [p], LAUNCH, EnergyPlan(True, None, 10.0), ROUND)
    stage_a, stage_b = 1.0 + 1.5 + 3 * 1.5, 1.0 + 1.25 + 3 * 1.25
    expected = (1.0 + 3e9 / 1e9 / 2.0 + 3.0 * 3.0  # start-up, checksums, pruning
                + (10.0 + 10.0 + stage_a + 2.0) + (10.0 + 10.0 + stage_b + 2.0)  # start, idle, stages, stop
                + 3.0 + 4.0 + 5.0)  # first tokenizer, finish, report
    assert plan.total_s == pytest.approx(expected)
    # energy not measurable: no idle baseline; --url: no server start or stop
    plan2 = make_plan("s", Path("out"), cks, [p], ServerPlan("url", url="http://x"), NO_ENERGY, ROUND)
    assert plan2.total_s == pytest.approx(expected - 2 * (10.0 + 10.0 + 2.0))
    assert plan.requests() == (14, 2, False)


def test_evaluation_costs_quick_subsets_and_set_subsets_and_pruned_copies_apart() -> None:
    m = replace(ROUND, eval_start_s=2.0, eval_task_s=1.0, eval_item_s=(("gsm8k", 3.0),),
                eval_set_item_s=(("gsm8k", 1.0, 4.0),))
    assert m.eval_s({"gsm8k": 4}, quick=["gsm8k"]) == pytest.approx(2.0 + 1.0 + 4 * 3.0)
    assert m.eval_s({"gsm8k": 4}, quick=["gsm8k"], pruned=True) == pytest.approx(2.0 + 1.0 + 4 * 3.0)
    assert m.eval_s({"gsm8k": 100}) == pytest.approx(2.0 + 1.0 + 100 * 1.0)
    assert m.eval_s({"gsm8k": 100}, pruned=True) == pytest.approx(2.0 + 1.0 + 100 * 4.0)
    assert m.eval_s({"mmlu": 57}) == pytest.approx(2.0 + 1.0 + 57 * 2.0)  # a task with no figure: 2 s an item
    # in the plan: each checkpoint's evaluation by whether it is pruned
    p = prof({"kind": "concurrency", "users": 1, "requests": 1})
    ev = EvalPlan({"gsm8k": 100}, "d", m.eval_s({"gsm8k": 100}), m.eval_s({"gsm8k": 100}, pruned=True))
    plan = make_plan("s", Path("out"), [ck("a"), ck("b", kept=0.5)], [p], LAUNCH, NO_ENERGY, m, evaluation=ev)
    without = make_plan("s", Path("out"), [ck("a"), ck("b", kept=0.5)], [p], LAUNCH, NO_ENERGY, m)
    assert plan.total_s - without.total_s == pytest.approx(103.0 + 403.0)
    assert "evaluation 1 min 43 s" in render_plan(plan) and "evaluation 6 min 43 s" in render_plan(plan)


def test_sweep_expands_like_the_runner() -> None:
    p = prof({"kind": "sweep", "rates": 3, "max_users": 8, "duration_s": 20})
    stages = plan_profile(p, [ck()], ROUND).stages
    assert [s.name for s in stages] == ["sweep-sync", "sweep-throughput", "sweep-1", "sweep-2", "sweep-3"]
    lo, hi = ROUND.throughput(1, 16, 11), ROUND.throughput(8, 16, 11)
    assert sweep_rates(lo, hi, 3) == pytest.approx([lo + (hi - lo) * k / 4 for k in (1, 2, 3)])
    assert all(s.per_checkpoint["m"].requests_how == "estimate" for s in stages[2:])


@pytest.mark.parametrize("name", list_profiles())
def test_every_shipped_profile_is_planned_stage_by_stage(name: str) -> None:
    profile = load_profile(name)
    plans = plan_profile(profile, [ck()], CPU_HOST).stages
    expanded = profile.expanded_stages()
    runnable = [s for s in expanded if s.kind != "sweep"]
    sweeps = [s for s in expanded if s.kind == "sweep"]
    assert len(plans) == len(runnable) + sum(2 + s.rates for s in sweeps)
    for index, (stage, info) in enumerate(zip(runnable, plans)):
        assert info.name == stage.name
        est = info.per_checkpoint["m"]
        warm = stage.warmup.requests if stage.warmup else 0
        turns = profile.conversation.turns.mean() if profile.conversation else 1  # a request per turn
        if stage.kind in ("rate", "replay"):  # the seeded schedule or the trace, exactly as the runner has it
            assert est.requests == len(plan_stage(stage, profile, profile.seed + index).offsets_s)
            assert est.requests_how == "exact"
        elif stage.kind == "concurrency" and stage.requests and est.requests_how == "exact":
            assert est.requests == (stage.requests + warm) * turns
        else:  # bounded by time: it lasts at least its duration, and how many it sends is an estimate
            assert est.requests_how == "estimate"
            assert est.seconds >= stage.duration_s + (stage.warmup.duration_s if stage.warmup else 0)
        assert est.seconds > 0


def test_quick_profile_plan_matches_its_yaml() -> None:
    quick = load_profile("quick")
    [ladder] = quick.stages
    stages = plan_profile(quick, [ck()], CPU_HOST).stages
    assert [s.name for s in stages] == [f"c{int(v)}" for v in ladder.values]
    assert all(s.bound == f"{ladder.requests} req or {ladder.duration_s:g} s" for s in stages)
    # 16 users finish 48 requests in 3 rounds, well within 15 s: the request bound, exact
    assert stages[-1].per_checkpoint["m"].requests == ladder.requests + quick.warmup.requests
    assert stages[-1].per_checkpoint["m"].requests_how == "exact"
    # one user cannot send 48 in 15 s: time-bound, an estimate
    assert stages[0].per_checkpoint["m"].requests_how == "estimate"


def _fake_run(root: Path, profile, seconds: float, records: int, cpu=("cpu X", 2), **stage_extra) -> Path:
    run = root / "20260101-000000-s"
    (run / "m" / "stages").mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({
        "hardware": {"cpu_model": cpu[0], "logical_cpus": cpu[1]},
        "profiles": [profile.model_dump(mode="json")], "status": "completed"}))
    (run / "m" / "checkpoint.json").write_text(json.dumps({"name": "m"}))
    (run / "m" / "stages" / "01-c1.json").write_text(json.dumps({
        "checkpoint": "m", "profile": profile.name, "stage": "c1", "kind": "concurrency", "target": {"users": 1},
        "started_s": 100.0, "ended_s": 100.0 + seconds, "warmup_end_s": None, "records": records,
        "summary": {"warmup_excluded": 1}, **stage_extra}))
    return run


def test_an_earlier_run_on_the_same_cpu_replaces_the_model(tmp_path) -> None:
    p = prof({"kind": "concurrency", "users": 1, "duration_s": 30}, warmup={"requests": 1})
    _fake_run(tmp_path, p, seconds=33.3, records=17)
    history = read_history(tmp_path, cpu=("cpu X", 2))
    e = plan_profile(p, [ck(), ck("other")], ROUND, history).stages[0].per_checkpoint
    assert e["m"].seconds == pytest.approx(33.3)
    assert (e["m"].requests, e["m"].warmup_requests, e["m"].how) == (17, 1, "measured")
    assert e["other"].how == "model"  # another checkpoint: modelled
    assert read_history(tmp_path, cpu=("cpu Y", 2)) is None  # another machine: not used
    changed = prof({"kind": "concurrency", "users": 1, "duration_s": 30}, warmup={"requests": 2})
    assert plan_profile(changed, [ck()], ROUND, history).stages[0].per_checkpoint["m"].how == "model"


def test_a_stage_whose_server_died_is_not_a_measurement(tmp_path) -> None:
    p = prof({"kind": "concurrency", "users": 1, "duration_s": 30})
    _fake_run(tmp_path, p, seconds=3.0, records=2, server_died=True)
    assert read_history(tmp_path, cpu=("cpu X", 2)) is None


def test_rendered_plan_is_narrow_and_names_everything() -> None:
    profiles = [load_profile(n) for n in list_profiles()]
    cks = [ck("smollm2-135m-instruct"), ck("smollm2-135m-instruct-ppm-p40", kept=896 / 1536, k=896,
                                            intermediate_size=1536, requested="p40")]
    plan = make_plan("default", Path("runs"), cks, profiles, LAUNCH, NO_ENERGY, CPU_HOST, notes=["a note"])
    text = render_plan(plan)
    assert max(len(line) for line in text.splitlines()) < 100
    for name in ("smollm2-135m-instruct-ppm-p40", "k=896 of 1536", "sweep-throughput", "c256", "r8",
                 "estimated wall time", "note: a note", "energy: not measured: no meter"):
        assert name in text
    line = estimate_line(plan)
    assert "2 checkpoints" in line and f"{len(profiles)} profiles" in line and "estimated wall time" in line



def test_a_conversation_is_its_turns_one_after_the_other_with_think_time() -> None:
    p = profile_from_data({"name": "t", "api": "chat", "input_tokens": 16, "output_tokens": 11, "stages": [
        {"kind": "concurrency", "users": 1, "requests": 2}],
        "conversation": {"turns": {"kind": "fixed", "tokens": 3}, "think_time_s": 2.0}})
    [st] = plan_profile(p, [ck()], ROUND).stages
    est = st.per_checkpoint["m"]
    # ROUND ignores prompt length: each turn 0.5 + 10·0.1 = 1.5 s; a conversation 3·1.5 + 2·2 = 8.5 s
    assert est.seconds == pytest.approx(1.0 + 2 * 8.5)
    assert (est.requests, est.requests_how) == (6, "exact")  # 2 conversations of 3 turns
    slow = replace(ROUND, prefill_s_per_token=0.01)  # history counts: turns average (3 − 1)/2 earlier turns
    [st] = plan_profile(p, [ck()], slow).stages
    per_turn = 1.5 + 0.01 * (16 + 1 * (16 + 11))
    assert st.per_checkpoint["m"].seconds == pytest.approx(1.0 + 2 * (3 * per_turn + 2 * 2.0))
