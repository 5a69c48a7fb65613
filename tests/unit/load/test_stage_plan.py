"""Planning a stage and sharing its work between users and worker processes (no Locust needed)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from serve_bench.load.clock import now_s
from serve_bench.load.profiles import profile_from_data
from serve_bench.load.prompts import PromptSet
from serve_bench.load.stage_plan import new_state, plan_stage, start_clock

pytestmark = pytest.mark.unit


def profile(*stages: dict, warmup: dict | None = None):
    return profile_from_data({"name": "t", "input_tokens": 64, "output_tokens": 8, "warmup": warmup or {},
                              "stages": list(stages)})


def drain(state) -> list[tuple[int, float | None]]:
    out = []
    while (slot := state.take()) is not None:
        out.append(slot)
    return out


def test_closed_loop_budget_includes_warmup_and_splits_across_workers() -> None:
    prof = profile({"kind": "concurrency", "users": 4, "requests": 7}, warmup={"requests": 2})
    plan = plan_stage(prof.expanded_stages()[0], prof, seed=0)
    assert plan.requests == 9 and plan.users == 4 and not plan.open_loop
    shares = []
    for w in range(3):
        state = new_state(plan, prof, model="m", prompts=PromptSet("chat"), sink=lambda r: None,
                          worker_index=w, workers=3)
        shares.append([i for i, _ in drain(state)])
        assert state.exhausted() and state.outstanding == len(shares[-1])
        assert [state.is_warmup(i, 0.0, None) for i in shares[-1]] == [i < 2 for i in shares[-1]]
    assert shares == [[0, 3, 6], [1, 4, 7], [2, 5, 8]]


def test_open_loop_schedule_is_shared_and_anchored() -> None:
    prof = profile({"kind": "rate", "rate_rps": 10, "arrivals": "constant", "duration_s": 1,
                    "warmup": {"duration_s": 0.5}, "max_concurrency": 4})
    plan = plan_stage(prof.expanded_stages()[0], prof, seed=0)
    assert plan.open_loop and len(plan.offsets_s) == 15 and plan.users == 4  # 1.5 s at 10/s, capped users
    a = new_state(plan, prof, model="m", prompts=PromptSet("chat"), sink=lambda r: None, worker_index=0, workers=2)
    b = new_state(plan, prof, model="m", prompts=PromptSet("chat"), sink=lambda r: None, worker_index=1, workers=2)
    for s in (a, b):
        start_clock(s, plan, 1000.0)
    slots = drain(a) + drain(b)
    assert sorted(i for i, _ in slots) == list(range(15))
    assert sorted(t for _, t in slots) == pytest.approx([1000.0 + i / 10 for i in range(15)])
    assert a.warmup_end_s == 1000.5 and a.is_warmup(3, 1000.31, 1000.3) and not a.is_warmup(6, 1000.6, 1000.6)


def test_duration_deadline_and_ramp_plan() -> None:
    prof = profile({"kind": "concurrency", "users": 2, "duration_s": 5}, {"kind": "ramp", "start_users": 2,
                                                                         "end_users": 10, "duration_s": 4})
    closed, ramp = (plan_stage(s, prof, seed=0) for s in prof.expanded_stages())
    state = new_state(closed, prof, model="m", prompts=PromptSet("chat"), sink=lambda r: None)
    start_clock(state, closed, now_s() - 10)  # the stage started 10 s ago: past its deadline
    assert state.take() is None and state.exhausted()
    assert ramp.start_users == 2 and ramp.users == 10 and ramp.ramp == (10, 2.0)


def test_importing_the_package_does_not_import_locust() -> None:
    code = "import sys, serve_bench.load; print('locust' in sys.modules, 'gevent' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_sweep_rates_lie_strictly_between() -> None:
    code = "from serve_bench.load.runner import sweep_rates; print(sweep_rates(1.0, 4.0, 2))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[2.0, 3.0]"


def test_public_surface() -> None:
    import serve_bench.load as load

    assert sorted(load.__all__) == sorted(name for name in load.__all__ if hasattr(load, name))
    assert {"RequestRecord", "summarize", "load_profile", "find_profile"} <= set(load.__all__)
