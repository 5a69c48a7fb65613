"""Workloads through a real stage, against the in-process fake server of test_user.py: a replay keeps the
trace's send times (open loop, from the intended send), per-request answer lengths reach the request and the
record, and a prompt set used up is cycled and says so, or stops the stage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_user import fake_server

from serve_bench.load.runner import run_stage
from serve_bench.measure.records import RequestRecord
from serve_bench.workload.datasets import FilePromptSet
from serve_bench.workload.profiles import profile_from_data
from serve_bench.workload.prompts import PromptSet
from serve_bench.workload.traces import load_trace

pytestmark = pytest.mark.system  # whole stages against an in-process fake server: seconds each


class TraceLike(PromptSet):
    """The trace's answer lengths, with a fixed text (a TracePromptSet needs the tokenizer)."""

    def __init__(self, outputs: list[int]) -> None:
        super().__init__("chat")
        self.outputs = outputs
        self.limit, self.exhaust = len(outputs), "stop"

    def build(self, index: int) -> str:
        return "hello"

    def request_fields(self, index: int) -> dict[str, Any]:
        return {"requested_output_tokens": self.outputs[index], "requested_input_tokens": 7}


def stage(profile: dict[str, Any], prompts: PromptSet, **kw: Any) -> tuple[Any, list[RequestRecord]]:
    prof = profile_from_data({"name": "wr", "input_tokens": 8, "output_tokens": 3, "timeout_s": 10,
                              "warmup": {"requests": 0}, **profile})
    records: list[RequestRecord] = []
    with fake_server() as url:
        result = run_stage(prof.expanded_stages()[0], url=url, model="ok", profile=prof, prompts=prompts,
                           sink=records.append, **kw)
    return result, records


def test_a_replay_keeps_the_trace_send_times(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    times_ms = np.cumsum(rng.integers(20, 200, 25))
    path = tmp_path / "trace.jsonl"
    path.write_text("".join(json.dumps({"timestamp": int(t), "input_length": 30, "output_length": 3 + i % 4,
                                        "hash_ids": [i]}) + "\n" for i, t in enumerate(times_ms)))
    trace = load_trace(path, "mooncake")
    result, records = stage({"prompts": {"kind": "trace", "path": str(path), "format": "mooncake"},
                             "stages": [{"kind": "replay", "speed": 2.0}]},
                            TraceLike([int(o) for o in trace.output_tokens]))
    assert len(records) == 25 and all(r.ok for r in records)
    by_index = sorted(records, key=lambda r: int(r.request_id.rsplit("-", 1)[1]))
    t0 = by_index[0].intended_send_s
    intended = [r.intended_send_s - t0 for r in by_index]  # type: ignore[operator]
    assert intended == pytest.approx(trace.offsets_s(2.0), abs=1e-6)  # the plan's times, exactly
    assert [r.max_tokens for r in by_index] == [int(o) for o in trace.output_tokens]
    assert [r.requested_output_tokens for r in by_index] == [int(o) for o in trace.output_tokens]
    s = result.summary
    assert s["open_loop"] and s["latency_from"] == "intended send"
    assert s["requested_output_tokens"]["max"] == 6 and s["realised_output_tokens"]["mean"] == 3  # the fake's usage
    assert s["output_exact"] is False  # the fake answers 3 tokens whatever was asked
    assert result.target["speed"] == 2.0 and result.prompts["exhaust"] == "stop"  # type: ignore[index]


def test_a_prompt_file_used_up_cycles_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps({"q": f"q{i}", "n": 2 + i}) + "\n" for i in range(3)))
    prompts = FilePromptSet(path, "chat", "q", output_tokens_field="n")
    result, records = stage({"stages": [{"kind": "concurrency", "users": 1, "requests": 5}]}, prompts)
    assert len(records) == 5
    assert sorted(r.max_tokens for r in records) == [2, 2, 3, 3, 4]
    assert result.prompts == {"kind": "jsonl", "distinct": 3, "exhaust": "cycle", "first_index": 0, "requests": 5,
                              "cycled": True}
    assert any("used up and cycled" in w for w in result.warnings)
    stop = FilePromptSet(path, "chat", "q", exhaust="stop")
    result, records = stage({"stages": [{"kind": "concurrency", "users": 2, "requests": 5}]}, stop)
    assert len(records) == 3 and result.prompts["cycled"] is False  # type: ignore[index]
