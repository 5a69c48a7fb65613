"""Multi-turn conversations through a real stage, against a small in-process fake that keeps every request
body: each turn sends the whole history (earlier user messages and the server's own replies) plus a new
message; records carry the conversation and turn; the summary separates first turns from later ones."""

from __future__ import annotations

import json
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from test_user import fake_server

from serve_bench.load.runner import run_stage  # imports Locust: gevent is patched first (tests/conftest.py)
from serve_bench.measure.records import RequestRecord
from serve_bench.workload.conversations import ConversationPromptSet
from serve_bench.workload.profiles import profile_from_data
from serve_bench.workload.prompt_sources import prompt_set_from_spec

pytestmark = pytest.mark.system  # a whole stage against an in-process fake server: seconds

BODIES: list[dict[str, Any]] = []


class Echo(BaseHTTPRequestHandler):
    """Answers "r<N>" where N is the number of messages it got; usage counts one token per word sent."""

    protocol_version = "HTTP/1.0"

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        BODIES.append(body)
        words = sum(len(m["content"].split()) for m in body["messages"])
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for text in (f"r{len(body['messages'])}", " done"):
            time.sleep(0.01)
            self.wfile.write(b"data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": text}}]})
                             .encode() + b"\n\n")
        usage = {"prompt_tokens": words, "completion_tokens": 2}
        self.wfile.write(b"data: " + json.dumps({"choices": [], "usage": usage}).encode() + b"\n\n")
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()


def test_turns_send_the_growing_history(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"message {i} " + "w " * i}) + "\n" for i in range(60)))
    prof = profile_from_data({"name": "conv", "input_tokens": 8, "output_tokens": 4, "timeout_s": 10,
                              "warmup": {"requests": 0}, "prompts": {"kind": "jsonl", "path": str(path)},
                              "conversation": {"turns": {"kind": "uniform", "min_tokens": 2, "max_tokens": 4},
                                               "think_time_s": 0.05},
                              "stages": [{"kind": "concurrency", "users": 2, "requests": 4}]})
    from serve_bench.workload.prompt_sources import profile_prompt_set

    prompts = profile_prompt_set(prof, "")
    assert isinstance(prompts, ConversationPromptSet)
    assert isinstance(prompt_set_from_spec(prompts.spec()), ConversationPromptSet)  # the feed can rebuild it
    BODIES.clear()
    records: list[RequestRecord] = []
    with fake_server(Echo) as url:
        result = run_stage(prof.expanded_stages()[0], url=url, model="m", profile=prof, prompts=prompts,
                           sink=records.append)
    turns = {i: prompts.turn_count(i) for i in range(4)}
    assert len(records) == sum(turns.values()) and all(r.ok for r in records)
    by_conv: dict[str, list[RequestRecord]] = {}
    for r in records:
        by_conv.setdefault(r.conversation_id or "", []).append(r)
    assert len(by_conv) == 4
    for conv in by_conv.values():
        conv.sort(key=lambda r: r.turn_index or 0)
        assert [r.turn_index for r in conv] == list(range(len(conv)))
        assert all(b.prompt_tokens > a.prompt_tokens for a, b in zip(conv, conv[1:]))  # type: ignore[operator]
        # the think time between a reply and the next turn (a timer may fire a few ms early on its clock)
        assert all(b.send_s - a.end_s >= 0.045 for a, b in zip(conv, conv[1:]))  # type: ignore[operator]
        assert conv[0].request_id.endswith("-t0")
    longest = max(BODIES, key=lambda b: len(b["messages"]))
    roles = [m["role"] for m in longest["messages"]]
    assert roles == ["user", "assistant"] * (len(roles) // 2) + ["user"]
    assert [m["content"] for m in longest["messages"][1::2]] == [f"r{k} done" for k in range(1, len(roles), 2)]
    s = result.summary["turns"]
    assert s["conversations"] == 4 and s["first"]["completed"] == 4
    assert s["later"]["completed"] == sum(turns.values()) - 4
    assert s["later"]["prompt_tokens"]["mean"] > s["first"]["prompt_tokens"]["mean"]
    assert result.summary["attempted"] == len(records)


def test_a_fleet_keeps_each_conversation_on_one_endpoint(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"message {i} " + "w " * i}) + "\n" for i in range(60)))
    prof = profile_from_data({"name": "conv", "input_tokens": 8, "output_tokens": 4, "timeout_s": 10,
                              "warmup": {"requests": 0}, "prompts": {"kind": "jsonl", "path": str(path)},
                              "conversation": {"turns": {"kind": "uniform", "min_tokens": 3, "max_tokens": 4}},
                              "stages": [{"kind": "concurrency", "users": 2, "requests": 6}]})
    records: list[RequestRecord] = []
    with fake_server(Echo) as a, fake_server(Echo) as b:
        run_stage(prof.expanded_stages()[0], url=a, model="m", profile=prof, sink=records.append,
                  endpoints=[a, b], balance="round-robin")
    assert all(r.ok for r in records) and len(records) >= 18
    by_conv: dict[str, set[str | None]] = {}
    for r in records:
        by_conv.setdefault(r.conversation_id or "", set()).add(r.endpoint)
    assert len(by_conv) == 6 and all(len(e) == 1 for e in by_conv.values())  # the history's cache stays warm
    assert {r.endpoint for r in records} == {a.rstrip("/"), b.rstrip("/")}


def test_a_profiles_sampling_parameters_reach_every_request_as_given(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"message {i}"}) + "\n" for i in range(8)))
    sampling = {"temperature": 0.7, "top_p": 0.9, "top_k": 20, "stop": ["\n\n"], "seed": 3,
                "extra_body": {"min_tokens": 2}}
    prof = profile_from_data({"name": "s", "input_tokens": 8, "output_tokens": 4, "timeout_s": 10,
                              "warmup": {"requests": 0}, "prompts": {"kind": "jsonl", "path": str(path)},
                              "sampling": sampling, "stages": [{"kind": "concurrency", "users": 2, "requests": 4}]})
    BODIES.clear()
    records: list[RequestRecord] = []
    with fake_server(Echo) as url:
        run_stage(prof.expanded_stages()[0], url=url, model="m", profile=prof, sink=records.append)
    assert len(BODIES) == 4 and all(r.ok for r in records)
    for body in BODIES:
        assert {k: body[k] for k in ("temperature", "top_p", "top_k", "stop", "seed", "min_tokens")} == {
            "temperature": 0.7, "top_p": 0.9, "top_k": 20, "stop": ["\n\n"], "seed": 3, "min_tokens": 2}
        assert body["max_tokens"] == 4 and body["ignore_eos"] is True and body["model"] == "m"
    BODIES.clear()
    plain = profile_from_data({**prof.model_dump(mode="json", exclude={"sampling"})})
    with fake_server(Echo) as url:
        run_stage(plain.expanded_stages()[0], url=url, model="m", profile=plain, sink=records.append)
    assert BODIES and not any("temperature" in b or "top_p" in b for b in BODIES)  # unset: the server's defaults
