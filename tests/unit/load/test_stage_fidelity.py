"""What a stage does to its own figures: every user sending from the first measured request, ramp-downs
that drain, prompts that fail without hanging the stage. Against the in-process fake of test_user.py."""

from __future__ import annotations

from typing import Any

import pytest
from test_user import GAP_S, fake_server

from serve_bench.errors import LoadError
from serve_bench.load.runner import run_stage
from serve_bench.measure.records import RequestRecord
from serve_bench.workload.profiles import profile_from_data
from serve_bench.workload.prompts import PromptSet

pytestmark = pytest.mark.unit


class Fixed(PromptSet):
    def __init__(self, fail: set[int] | None = None) -> None:
        super().__init__("chat")
        self.fail = fail or set()

    def build(self, index: int) -> str:
        if index in self.fail:
            raise LoadError("cannot build a prompt of exactly 64 tokens")
        return "hello"


def run(stage: dict[str, Any], prompts: PromptSet | None = None, **profile: Any) -> tuple[Any, list[RequestRecord]]:
    prof = profile_from_data({"name": "f", "input_tokens": 8, "output_tokens": 3, "timeout_s": 10,
                              "stages": [stage], **profile})
    records: list[RequestRecord] = []
    with fake_server() as url:
        result = run_stage(prof.expanded_stages()[0], url=url, model="ok", profile=prof,
                           prompts=prompts or Fixed(), sink=records.append)
    return result, records


def test_closed_loop_users_all_send_together_and_stay_busy() -> None:
    users = 40  # Locust alone would spawn them over 0.4 s at its 100 users/s
    result, records = run({"kind": "concurrency", "users": users, "requests": 2 * users})
    s = result.summary
    sends = sorted(r.send_s for r in records)
    assert len(records) == 2 * users and s["failed"] == 0
    assert sends[users - 1] - sends[0] < 0.1  # the first N sends: one burst, not a spawn ramp
    assert s["steady_basis"] == f"all {users} users busy"
    assert s["steady_mean_in_flight"] >= 0.95 * users
    assert 0 < s["mean_in_flight"] <= users  # over the whole stage, start and drain included
    assert result.loadgen_cpu["master"] is not None


def test_ramp_down_lets_leaving_users_finish_their_request() -> None:
    # each response takes about 4 gaps; users leave every 0.2 s, so most leave mid-request
    result, records = run({"kind": "ramp", "start_users": 8, "end_users": 2, "duration_s": 1.2})
    assert records and not result.stopped_early
    aborted = [r for r in records if not r.ok]
    assert not aborted, aborted[0].error
    assert result.summary["steady_output_throughput"] is None  # a ramp has no steady state
    assert len({r.worker_id for r in records}) == 8


def test_a_prompt_that_cannot_be_built_fails_its_request_only() -> None:
    result, records = run({"kind": "concurrency", "users": 2, "requests": 6}, prompts=Fixed(fail={2}))
    assert len(records) == 6 and not result.stopped_early
    [bad] = [r for r in records if not r.ok]
    assert bad.request_id.endswith("-2") and "cannot build a prompt" in bad.error and bad.status == 0
    assert result.ended_s - result.started_s < 10 * GAP_S * 6  # never waited for a drain deadline
