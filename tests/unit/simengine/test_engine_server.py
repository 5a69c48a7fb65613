"""The engine as a server: OpenAI-compatible streams, usage, its own log, and steps shared by requests."""

from __future__ import annotations

import json
import threading

import pytest
import requests

from serve_bench.simengine.params import EngineParams
from serve_bench.simengine.server import read_log, running

pytestmark = pytest.mark.system


def stream(url: str, body: dict, rid: str) -> list[bytes]:
    with requests.post(url, json={**body, "stream": True, "stream_options": {"include_usage": True}}, stream=True,
                       headers={"X-Request-Id": rid}, timeout=30) as resp:
        assert resp.status_code == 200
        return [line for line in resp.iter_lines() if line]


def test_streams_usage_and_the_engines_own_timings(tmp_path):
    log = tmp_path / "engine.jsonl"
    with running(EngineParams(step_ms=20, per_seq_ms=5), log_path=log) as (url, _):
        chat = stream(f"{url}/v1/chat/completions",
                      {"model": "m", "messages": [{"role": "user", "content": "one two three"}], "max_tokens": 6}, "a")
        assert chat[-1] == b"data: [DONE]"
        usage = json.loads(chat[-2][len(b"data: "):])["usage"]
        assert usage == {"prompt_tokens": 3, "completion_tokens": 6, "total_tokens": 9}
        tokens = [c for c in chat[:-2] if b'" tok"' in c]
        assert len(tokens) == 6 and b'"role":"assistant"' in chat[0] and b'"finish_reason":"length"' in tokens[-1]
        cmpl = requests.post(f"{url}/v1/completions", json={"model": "m", "prompt": "a b", "max_tokens": 3},
                             timeout=30).json()
        assert cmpl["choices"][0]["text"] == " tok tok tok" and cmpl["usage"]["prompt_tokens"] == 2
        threads = [threading.Thread(target=stream, args=(f"{url}/v1/completions",
                                                         {"model": "m", "prompt": "x", "max_tokens": 8}, f"p{i}"))
                   for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert "vllm:request_success_total" in requests.get(f"{url}/metrics", timeout=5).text
    by_id = {e["id"]: e for e in read_log(log)}
    a = by_id["a"]
    # one step alone (20 + 5 ms) from its admission to its first token, then 5 more such steps
    assert a["first_token_s"] - a["admitted_s"] == pytest.approx(0.025, abs=1e-6)
    assert a["last_token_s"] - a["first_token_s"] == pytest.approx(5 * 0.025, abs=1e-6)
    assert 0 <= a["first_write_s"] - a["first_token_s"] < 0.02  # the writes follow the schedule
    p0, p1 = by_id["p0"], by_id["p1"]
    both = [p for p in (p0, p1) if p["admitted_s"] == max(p0["admitted_s"], p1["admitted_s"])]
    # while both ran, a step cost 20 + 2 × 5 ms: the later one's steps are all shared
    later = both[0]
    assert (later["last_token_s"] - later["first_token_s"]) / 7 == pytest.approx(0.030, abs=1e-6)
