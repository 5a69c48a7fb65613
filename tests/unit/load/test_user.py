"""The streaming user's own handling of streams, against a fake OpenAI-compatible server, in this process.

The fake exists to exercise the client's own handling of broken streams, which
a healthy vLLM never produces: the model name in the request picks the
behaviour. It runs in a thread, which is a greenlet here: tests/conftest.py
patches the process with gevent before anything else, so Locust can be
imported in-process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from serve_bench.load.runner import run_stage  # imports Locust: gevent is patched first (tests/conftest.py)
from serve_bench.workload.profiles import profile_from_data
from serve_bench.workload.prompt_sources import JsonlPromptSet

GAP_S = 0.1
MODES = ["ok", "compact", "http500", "disconnect", "malformed", "nousage", "slow"]
USAGE = b'data: {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3}}\n\n'
# vLLM's spelling: compact JSON, which the user recognises without parsing; the last content chunk also
# carries the usage, which must then be parsed
COMPACT = [b'data: {"id":"c","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\n',
           b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"a"},"finish_reason":null}]}\n\n',
           b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"\\"b\\""},"finish_reason":null}]}\n\n',
           b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"c"},"finish_reason":"length"}],'
           b'"usage":{"prompt_tokens":7,"completion_tokens":3}}\n\n',
           b"data: [DONE]\n\n"]


def chunk(text: str) -> bytes:
    return b"data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": text}}]}).encode() + b"\n\n"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
        try:
            self._respond()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up ("slow"): nothing to report from a fake

    def _respond(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        mode = body["model"]
        if mode == "http500":
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b'{"error": "boom"}')
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        if mode == "compact":
            for line in COMPACT:
                self.wfile.write(line)
                self.wfile.flush()
                time.sleep(GAP_S)
            return
        self.wfile.write(b'data: {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}\n\n')
        self.wfile.flush()
        for i, text in enumerate(["a", "b", "c"]):
            time.sleep(GAP_S)
            self.wfile.write(chunk(text))
            self.wfile.flush()
            if mode == "disconnect" and i == 0:
                return
            if mode == "malformed" and i == 1:
                self.wfile.write(b"data: {not json\n\n")
                self.wfile.flush()
                return
            if mode == "slow":
                time.sleep(5)
        if mode != "nousage":
            self.wfile.write(USAGE)
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()


@contextmanager
def fake_server(handler: type[BaseHTTPRequestHandler] | None = None) -> Iterator[str]:
    """A fake server's base URL while the block runs (``Handler`` unless another is given; also used by other
    load tests)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler or Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    path = tmp_path_factory.mktemp("fake") / "prompts.jsonl"
    path.write_text('{"prompt": "hello"}\n')
    prof = profile_from_data({"name": "fake", "input_tokens": 8, "output_tokens": 3, "timeout_s": 1.5,
                              "stages": [{"kind": "concurrency", "users": 1, "requests": 2}]})
    prompts = JsonlPromptSet(path, "chat")
    out = {}
    with fake_server() as url:
        for mode in MODES:
            records = []
            result = run_stage(prof.expanded_stages()[0], url=url, model=mode, profile=prof, prompts=prompts,
                               sink=records.append)
            out[mode] = {"records": [r.model_dump() for r in records], "summary": result.summary,
                         "locust_requests": result.locust_requests, "locust_failures": result.locust_failures}
    return out


@pytest.mark.unit
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


@pytest.mark.unit
def test_compact_stream_counts_content_chunks_and_finds_usage_beside_content(outcomes: dict[str, Any]) -> None:
    for r in outcomes["compact"]["records"]:
        assert r["ok"] and r["output_tokens"] == 3 and r["prompt_tokens"] == 7
        assert len(r["chunk_times_s"]) == 3  # role chunk (empty content) not counted; the usage one is
        gaps = [b - a for a, b in zip(r["chunk_times_s"], r["chunk_times_s"][1:])]
        assert all(0.08 < g < 0.2 for g in gaps), gaps


@pytest.mark.unit
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


@pytest.mark.system  # a fresh interpreter: this one has imported torch while collecting other tests
def test_the_load_path_does_not_import_torch() -> None:
    code = ("import sys, serve_bench.load.runner, serve_bench.measure.metrics, serve_bench.workload.profiles, "
            "serve_bench.workload.prompts; "
            "print(sorted(m for m in ('torch', 'transformers', 'vllm') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]", "the load path imports torch, transformers or vLLM"
