"""The streaming user's own handling of streams, against a fake server (see fake_openai_check.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    prompts = tmp_path_factory.mktemp("fake") / "prompts.jsonl"
    script = Path(__file__).with_name("fake_openai_check.py")
    done = subprocess.run([sys.executable, str(script), str(prompts)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_good_stream_timestamps_every_content_chunk_as_it_arrives(outcomes: dict[str, Any]) -> None:
    records = outcomes["ok"]["records"]
    assert len(records) == 2 and all(r["ok"] for r in records)
    r = records[0]
    assert r["prompt_tokens"] == 7 and r["output_tokens"] == 3 and r["status"] == 200
    assert len(r["chunk_times_s"]) == 3  # the empty role chunk is not a content token
    gaps = [b - a for a, b in zip(r["chunk_times_s"], r["chunk_times_s"][1:])]
    assert all(0.08 < g < 0.2 for g in gaps), gaps  # read line by line, not 1024-byte blocks
    assert r["send_s"] < r["first_token_s"] <= r["last_token_s"] <= r["end_s"]
    assert outcomes["ok"]["locust_requests"] == 2 and outcomes["ok"]["locust_failures"] == 0


@pytest.mark.parametrize("mode,status,error", [
    ("http500", 500, 'HTTP 500: {"error": "boom"}'),
    ("disconnect", 200, "the stream ended before [DONE]"),
    ("malformed", 200, "malformed SSE data"),
    ("nousage", 200, "no usage"),
    ("slow", 200, "timeout: no complete response after 1.5 s"),
])
def test_broken_responses_are_recorded_and_the_run_goes_on(outcomes: dict[str, Any], mode: str, status: int,
                                                           error: str) -> None:
    records = outcomes[mode]["records"]
    assert len(records) == 2  # the second request was still sent
    for r in records:
        assert not r["ok"] and r["status"] == status and error in r["error"]
    assert outcomes[mode]["summary"]["failed"] == 2
    assert outcomes[mode]["locust_failures"] == 2
