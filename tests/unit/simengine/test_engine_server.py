"""The engine as a server, in its own process: OpenAI-compatible streams, usage, its own log, steps shared by
concurrent requests, and a nominal schedule equal to the virtual-time scheduler's for the same arrivals."""

from __future__ import annotations

import json
import threading
import time

import pytest
import requests

from serve_bench.simengine.params import EngineParams
from serve_bench.simengine.scheduler import Scheduler
from serve_bench.simengine.server import read_log, running

pytestmark = pytest.mark.system

S, P, PP = 0.020, 0.005, 0.001  # step 20 ms, 5 ms per sequence, 1 ms per prompt token
ENGINE = EngineParams(step_ms=20, per_seq_ms=5, per_prefill_token_ms=1)


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    log = tmp_path_factory.mktemp("engine") / "engine.jsonl"
    with running(ENGINE, log_path=log) as (url, _proc):
        yield url, log


def stream(url: str, body: dict, rid: str, arrivals: list[float] | None = None) -> list[bytes]:
    """Every SSE data line of a streamed request; ``arrivals``: when each line came."""
    with requests.post(url, json={**body, "stream": True, "stream_options": {"include_usage": True}}, stream=True,
                       headers={"X-Request-Id": rid}, timeout=30) as resp:
        assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
        lines = []
        for line in resp.iter_lines():
            if line:
                lines.append(line)
                if arrivals is not None:
                    arrivals.append(time.perf_counter())
        return lines


def content(lines: list[bytes]) -> list[dict]:
    chunks = [json.loads(line[len(b"data: "):]) for line in lines if line != b"data: [DONE]"]
    return [c for c in chunks if c["choices"]]


def entry(log, rid: str) -> dict:
    [e] = [e for e in read_log(log) if e["id"] == rid]
    return e


def test_a_streamed_chat_and_completion_with_usage(engine):
    url, log = engine
    lines = stream(f"{url}/v1/chat/completions", {"model": "sim-engine", "max_tokens": 6,
                                                  "messages": [{"role": "user", "content": "one two three"}]}, "chat")
    assert lines[-1] == b"data: [DONE]"
    assert json.loads(lines[-2][6:])["usage"] == {"prompt_tokens": 3, "completion_tokens": 6, "total_tokens": 9}
    chunks = content(lines)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}  # written with the first token
    tokens = [c for c in chunks if c["choices"][0]["delta"].get("content")]
    assert len(tokens) == 6 and all(c["choices"][0]["delta"]["content"] == " tok" for c in tokens)
    assert [c["choices"][0]["finish_reason"] for c in tokens] == [None] * 5 + ["length"]
    assert {c["id"] for c in chunks} == {"chat"} and chunks[0]["model"] == "sim-engine"

    lines = stream(f"{url}/v1/completions", {"model": "sim-engine", "prompt": "a b c d", "max_tokens": 4}, "cmpl")
    assert json.loads(lines[-2][6:])["usage"] == {"prompt_tokens": 4, "completion_tokens": 4, "total_tokens": 8}
    assert [c["choices"][0]["text"] for c in content(lines)] == [" tok"] * 4

    whole = requests.post(f"{url}/v1/completions", json={"prompt": [1, 2, 3, 4, 5], "max_completion_tokens": 3},
                          timeout=30).json()
    assert whole["choices"][0]["text"] == " tok tok tok" and whole["usage"]["prompt_tokens"] == 5

    # the engine's own view: prefill alone costs 20 + 5 + 3 × 1 ms, then 25 ms a token (no prompt tokens)
    chat = entry(log, "chat")
    assert chat["admitted_s"] == chat["recv_s"] and chat["queued_steps"] == 0  # an idle engine starts at once
    assert chat["first_token_s"] - chat["recv_s"] == pytest.approx(S + P + 3 * PP, abs=1e-6)
    assert chat["last_token_s"] - chat["first_token_s"] == pytest.approx(5 * (S + P), abs=1e-6)
    assert (chat["prompt_tokens"], chat["output_tokens"]) == (3, 6)
    for e in (chat, entry(log, "cmpl")):  # the writes follow the schedule (a loaded machine: a loose bound)
        assert 0 <= e["first_write_s"] - e["first_token_s"] < 0.2 and 0 <= e["last_write_s"] - e["last_token_s"] < 0.2


def test_the_other_endpoints(engine):
    url, _ = engine
    assert requests.get(f"{url}/health", timeout=5).status_code == 200
    [card] = requests.get(f"{url}/v1/models", timeout=5).json()["data"]
    assert card["id"] == card["root"] == "sim-engine" and card["max_model_len"] >= 1 << 20
    metrics = requests.get(f"{url}/metrics", timeout=5).text
    assert 'vllm:num_requests_running{model_name="sim-engine"} 0' in metrics
    assert 'vllm:num_requests_waiting{model_name="sim-engine"} 0' in metrics
    assert "# TYPE vllm:request_success_total counter" in metrics
    bad = requests.post(f"{url}/v1/completions", data=b"not json", timeout=5)
    assert bad.status_code == 400 and "error" in bad.json()


def test_a_client_that_goes_away_frees_its_slot(engine):
    url, log = engine

    def running() -> str:
        text = requests.get(f"{url}/metrics", timeout=5).text
        return next(line for line in text.splitlines() if line.startswith("vllm:num_requests_running")).split()[-1]

    with requests.post(f"{url}/v1/completions", json={"prompt": "x", "max_tokens": 400, "stream": True},
                       headers={"X-Request-Id": "gone"}, stream=True, timeout=30) as resp:
        lines = resp.iter_lines()
        assert next(lines) and running() == "1"
    deadline = time.monotonic() + 5  # aborted at its next write, a step later
    while running() != "0":
        assert time.monotonic() < deadline, "the engine kept the abandoned request"
        time.sleep(0.02)
    assert "gone" not in {e["id"] for e in read_log(log)}  # the log holds finished requests only
    time.sleep(0.1)  # the step under way when it left still runs to its end: let the engine go idle


def test_concurrent_requests_share_steps(engine):
    url, log = engine
    long_arrivals: list[float] = []
    body = {"model": "sim-engine", "prompt": "x", "max_tokens": 30}
    long = threading.Thread(target=stream, args=(f"{url}/v1/completions", body, "long", long_arrivals))
    long.start()
    while len(long_arrivals) < 3:  # the long one is decoding
        time.sleep(0.005)
    short_arrivals: list[float] = []
    stream(f"{url}/v1/completions", {**body, "max_tokens": 5}, "short", short_arrivals)
    long.join()
    short = entry(log, "short")
    # inside the long request's life: prefilled with it (20 + 2 × 5 + 1 ms), then every step holds both
    assert short["first_token_s"] - short["admitted_s"] == pytest.approx(S + 2 * P + PP, abs=1e-6)
    assert (short["last_token_s"] - short["first_token_s"]) / 4 == pytest.approx(S + 2 * P, abs=1e-6)
    assert 0 < short["admitted_s"] - short["recv_s"] <= S + P + 1e-6  # it waited for the step under way
    assert entry(log, "long")["last_token_s"] > short["last_token_s"]
    # what the client saw: 30 ms apart on average (5 content chunks, then usage and [DONE])
    assert (short_arrivals[4] - short_arrivals[0]) / 4 == pytest.approx(S + 2 * P, abs=0.01)


def test_the_nominal_schedule_is_the_virtual_time_one(engine):
    url, log = engine
    threads = [threading.Thread(target=stream, args=(f"{url}/v1/completions",
                                                     {"prompt": "w " * (i + 1), "max_tokens": 3 + i}, f"mix{i}"))
               for i in range(6)]
    for i, t in enumerate(threads):
        t.start()
        time.sleep(0.013 * (i % 3))  # some arrive together, some mid-step
    for t in threads:
        t.join()
    served = sorted(read_log(log), key=lambda e: e["recv_s"])
    assert len(served) >= 6  # these, and the earlier tests' when the module runs whole
    # the same arrivals through the scheduler in virtual time: the same boundaries, to the float
    sched = Scheduler(ENGINE)
    replay, pending = {}, list(served)
    while pending or sched.busy:
        while pending and (sched.next_s is None or pending[0]["recv_s"] <= sched.next_s):
            e = pending.pop(0)
            replay[e["id"]] = sched.submit(e["id"], e["recv_s"], e["prompt_tokens"], e["output_tokens"])
        sched.step()
    for e in served:
        seq = replay[e["id"]]
        assert (seq.admitted_s, seq.first_token_s, seq.last_token_s, seq.queued_steps) == (
            e["admitted_s"], e["first_token_s"], e["last_token_s"], e["queued_steps"]), e["id"]
