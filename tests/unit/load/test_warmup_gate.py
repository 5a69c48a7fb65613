"""Closed-loop warm-up requests finish before any measured request is sent."""

import pytest
from test_user import fake_server  # the fake OpenAI-compatible server, in this process

from serve_bench.load.runner import run_stage  # imports Locust: gevent is patched first (tests/conftest.py)
from serve_bench.workload.profiles import profile_from_data
from serve_bench.workload.prompts import PromptSet

pytestmark = pytest.mark.unit


class Fixed(PromptSet):
    def build(self, index):
        return "hello"


def test_measured_requests_wait_for_warmup():
    prof = profile_from_data({"name": "w", "input_tokens": 8, "output_tokens": 3,
                              "warmup": {"requests": 2},
                              "stages": [{"kind": "concurrency", "users": 4, "requests": 8}]}, "t")
    records = []
    with fake_server() as url:
        r = run_stage(prof.expanded_stages()[0], url=url, model="ok", profile=prof,
                      prompts=Fixed("chat"), sink=records.append)
    warm = [x for x in records if x.warmup]
    measured = [x for x in records if not x.warmup]
    assert len(warm) == 2 and len(measured) == 8, (len(warm), len(measured))
    assert min(m.send_s for m in measured) >= max(w.end_s for w in warm), "a measured request met the warm-up"
    assert r.summary["completed"] == 8
