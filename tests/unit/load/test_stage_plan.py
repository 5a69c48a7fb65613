"""Planning a stage and sharing its work between users and worker processes (no Locust needed)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from serve_bench.load.stage_plan import new_state, plan_stage, start_clock
from serve_bench.load.stage_state import deal
from serve_bench.measure.clock import now_s
from serve_bench.workload.profiles import profile_from_data
from serve_bench.workload.prompts import PromptSet


def profile(*stages: dict, warmup: dict | None = None):
    return profile_from_data({"name": "t", "input_tokens": 64, "output_tokens": 8, "warmup": warmup or {},
                              "stages": list(stages)})


def drain(state) -> list[tuple[int, float | None]]:
    out = []
    while (slot := state.take()) is not None:
        out.append(slot)
    return out


@pytest.mark.unit
def test_closed_loop_budget_includes_warmup_and_splits_across_workers() -> None:
    prof = profile({"kind": "concurrency", "users": 4, "requests": 7}, warmup={"requests": 2})
    plan = plan_stage(prof.expanded_stages()[0], prof, seed=0)
    assert plan.requests == 9 and plan.users == 4 and not plan.open_loop
    shares = []
    # Locust gave the three workers 1, 2 and 1 of the 4 users: each is dealt requests in proportion
    for w, slots in enumerate(deal([1, 2, 1])):
        state = new_state(plan, prof, model="m", prompts=PromptSet("chat"), sink=lambda r: None, worker_index=w)
        state.turns.slots, state.turns.period = slots, 4
        shares.append([i for i, _ in drain(state)])
        assert state.exhausted() and state.outstanding == len(shares[-1])
        assert [state.is_warmup(i, 0.0, None) for i in shares[-1]] == [i < 2 for i in shares[-1]]
    assert sorted(i for share in shares for i in share) == list(range(9))
    assert [len(share) for share in shares] == [2, 5, 2]  # 9 requests: the 2-user worker sends twice as many
    assert shares[1] == [0, 3, 4, 7, 8]  # interleaved, not a block: its share spreads over the stage


@pytest.mark.unit
def test_deal_is_proportional_and_interleaved() -> None:
    assert deal([3]) == [[0, 1, 2]]
    assert deal([2, 2]) == [[0, 2], [1, 3]]
    assert deal([5, 0]) == [[0, 1, 2, 3, 4], []]
    slots = deal([100, 156])
    assert [len(s) for s in slots] == [100, 156] and sorted(slots[0] + slots[1]) == list(range(256))
    gaps = [b - a for a, b in zip(slots[1], slots[1][1:])]
    assert max(gaps) <= 2  # the larger worker never waits long for its next index


@pytest.mark.unit
def test_open_loop_schedule_is_shared_and_anchored() -> None:
    prof = profile({"kind": "rate", "rate_rps": 10, "arrivals": "constant", "duration_s": 1,
                    "warmup": {"duration_s": 0.5}, "max_concurrency": 4})
    plan = plan_stage(prof.expanded_stages()[0], prof, seed=0)
    assert plan.open_loop and len(plan.offsets_s) == 15 and plan.users == 4  # 1.5 s at 10/s, capped users
    a = new_state(plan, prof, model="m", prompts=PromptSet("chat"), sink=lambda r: None, worker_index=0)
    b = new_state(plan, prof, model="m", prompts=PromptSet("chat"), sink=lambda r: None, worker_index=1)
    for s, slots in zip((a, b), deal([2, 2])):
        s.turns.slots, s.turns.period = slots, 4
        start_clock(s, plan, 1000.0)
    slots = drain(a) + drain(b)
    assert sorted(i for i, _ in slots) == list(range(15))
    assert sorted(t for _, t in slots) == pytest.approx([1000.0 + i / 10 for i in range(15)])
    assert a.turns.warmup_end_s == 1000.5 and a.is_warmup(3, 1000.31, 1000.3) and not a.is_warmup(6, 1000.6, 1000.6)


@pytest.mark.unit
def test_duration_deadline_and_ramp_plan() -> None:
    prof = profile({"kind": "concurrency", "users": 2, "duration_s": 5}, {"kind": "ramp", "start_users": 2,
                                                                         "end_users": 10, "duration_s": 4})
    closed, ramp = (plan_stage(s, prof, seed=0) for s in prof.expanded_stages())
    state = new_state(closed, prof, model="m", prompts=PromptSet("chat"), sink=lambda r: None)
    start_clock(state, closed, now_s() - 10)  # the stage started 10 s ago: past its deadline
    assert state.take() is None and state.exhausted()
    assert ramp.start_users == 2 and ramp.users == 10 and ramp.ramp == (10, 2.0)


@pytest.mark.system  # a fresh interpreter: this one has gevent (tests/conftest.py) and Locust (test_user.py)
def test_importing_the_packages_does_not_import_locust() -> None:
    code = ("import sys, serve_bench.load, serve_bench.workload, serve_bench.measure; "
            "print('locust' in sys.modules, 'gevent' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


@pytest.mark.unit
def test_sweep_rates_lie_strictly_between() -> None:
    from serve_bench.measure.stage_result import sweep_rates

    assert sweep_rates(1.0, 4.0, 2) == [2.0, 3.0]


@pytest.mark.unit
def test_public_surface() -> None:
    import serve_bench.measure as measure
    import serve_bench.workload as workload

    for package in (measure, workload):
        assert sorted(package.__all__) == sorted(name for name in package.__all__ if hasattr(package, name))
    assert {"RequestRecord", "summarize"} <= set(measure.__all__)
    assert {"load_profile", "find_profile"} <= set(workload.__all__)
