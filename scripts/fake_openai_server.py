#!/usr/bin/env python
"""A minimal OpenAI-compatible streaming server with known timing: a load-generator test fixture.

    POST /v1/chat/completions, /v1/completions   stream=true: N chunks of one "token" each
                                                  (N = max_tokens / max_completion_tokens, default 16),
                                                  then a usage chunk when stream_options.include_usage,
                                                  then ``data: [DONE]``; stream=false: one JSON body
    GET  /v1/models, /health
    GET  /metrics                                 with ``--metrics-file``: that file's text (Prometheus format),
                                                  e.g. a replay of a scrape recorded from vLLM

No model, no tokenizer: prompt_tokens is a word count of the prompt. Chunks
are pre-rendered byte templates to keep the server's CPU per request low; one
process, one event loop (aiohttp, on uvloop when it is installed).

Timing. By default every chunk is written as soon as it is built, so the
client is the bottleneck. With ``--ttft-ms X --itl-ms Y`` a stream received
at t0 writes content chunk k (k = 0 … N-1) at t0 + X + k·Y: each write waits
for its absolute deadline (never for a sleep after the previous write), so
late wake-ups do not add up along a stream. The chat role chunk goes out in
the same write as the first content chunk (as vLLM sends them), the usage
chunk and [DONE] right after the last. A non-streamed answer is sent at
t0 + X + (N-1)·Y. t0 is when the handler starts (headers received, before
the body is read).

``--timing-log PATH`` appends one JSON line per streamed request, written
when it ends: ``{"recv": t0, "first": …, "last": …, "n": N}``, wall-clock
seconds (time.time()) just after the first and the last content chunk were
handed to the socket, so a benchmark can tell the server's own lateness from
the client's.

    python scripts/fake_openai_server.py --port 8999 [--model fake] [--default-tokens 16]
                                        [--ttft-ms 100 --itl-ms 20] [--timing-log /tmp/fake-timing.jsonl]
                                        [--metrics-file vllm-metrics.txt]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import signal
import sys
import time
from pathlib import Path

from aiohttp import web

_CHAT_HEAD = b'data: {"id":"%s","object":"chat.completion.chunk","created":%d,"model":"%s","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n'  # noqa: E501
_CHAT_TOK = b'data: {"id":"%s","object":"chat.completion.chunk","created":%d,"model":"%s","choices":[{"index":0,"delta":{"content":" tok"},"finish_reason":null}]}\n\n'  # noqa: E501
_CHAT_LAST = b'data: {"id":"%s","object":"chat.completion.chunk","created":%d,"model":"%s","choices":[{"index":0,"delta":{"content":" tok"},"finish_reason":"length"}]}\n\n'  # noqa: E501
_CMPL_TOK = b'data: {"id":"%s","object":"text_completion","created":%d,"model":"%s","choices":[{"index":0,"text":" tok","finish_reason":null}]}\n\n'  # noqa: E501
_CMPL_LAST = b'data: {"id":"%s","object":"text_completion","created":%d,"model":"%s","choices":[{"index":0,"text":" tok","finish_reason":"length"}]}\n\n'  # noqa: E501
_USAGE = b'data: {"id":"%s","object":"%s","created":%d,"model":"%s","choices":[],"usage":{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d}}\n\n'  # noqa: E501
_DONE = b"data: [DONE]\n\n"


async def _until(deadline: float) -> None:
    """Sleep until time.perf_counter() reaches ``deadline``; never return early.

    The event loop's timers round to a millisecond (uvloop) and may start from a
    stale loop time, so a single sleep can wake a little early: sleep again for the rest.
    """
    while (left := deadline - time.perf_counter()) > 0:
        await asyncio.sleep(left)


def make_app(model: str, default_tokens: int, ttft_ms: float = 0.0, itl_ms: float = 0.0,
             timing_log: str | None = None, metrics_text: bytes | None = None) -> web.Application:
    counter = [0]
    model_b = model.encode()
    ttft_s, itl_s = ttft_ms / 1000.0, itl_ms / 1000.0
    log = open(timing_log, "a", buffering=1, encoding="utf-8") if timing_log else None

    def prompt_tokens(body: dict) -> int:
        if "messages" in body:
            return sum(len(str(m.get("content", "")).split()) for m in body["messages"])
        p = body.get("prompt", "")
        return len(p) if isinstance(p, list) else len(str(p).split())

    async def generate(request: web.Request, chat: bool) -> web.StreamResponse:
        t0, w0 = time.perf_counter(), time.time()  # receipt, on both clocks (perf paces, wall is logged)
        body = await request.json()
        n = int(body.get("max_completion_tokens") or body.get("max_tokens") or default_tokens)
        n = max(1, n)
        p = prompt_tokens(body)
        counter[0] += 1
        rid = b"cmpl-%d" % counter[0]
        created = int(time.time())
        obj = b"chat.completion.chunk" if chat else b"text_completion"
        if not body.get("stream"):
            if ttft_s or itl_s:
                await _until(t0 + ttft_s + (n - 1) * itl_s)
            text = " tok" * n
            choice = ({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "length"}
                      if chat else {"index": 0, "text": text, "finish_reason": "length"})
            return web.json_response({"id": rid.decode(), "object": "chat.completion" if chat else "text_completion",
                                      "created": created, "model": model, "choices": [choice],
                                      "usage": {"prompt_tokens": p, "completion_tokens": n, "total_tokens": p + n}})
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        args = (rid, created, model_b)
        tok, last = (_CHAT_TOK, _CHAT_LAST) if chat else (_CMPL_TOK, _CMPL_LAST)
        tok_b = tok % args
        paced = bool(ttft_s or itl_s)
        first_t = last_t = 0.0
        for k in range(n):
            if paced:
                await _until(t0 + ttft_s + k * itl_s)
            chunk = tok_b if k < n - 1 else last % args
            if k == 0 and chat:
                chunk = (_CHAT_HEAD % args) + chunk  # the role chunk, together with the first token
            await resp.write(chunk)
            if k == 0:
                first_t = time.perf_counter()
        last_t = time.perf_counter()
        if (body.get("stream_options") or {}).get("include_usage"):
            await resp.write(_USAGE % (rid, obj, created, model_b, p, n, p + n))
        await resp.write(_DONE)
        await resp.write_eof()
        if log is not None:
            log.write(json.dumps({"recv": w0, "first": w0 + (first_t - t0), "last": w0 + (last_t - t0), "n": n})
                      + "\n")
        return resp

    async def chat(request: web.Request) -> web.StreamResponse:
        return await generate(request, True)

    async def completions(request: web.Request) -> web.StreamResponse:
        return await generate(request, False)

    async def models(request: web.Request) -> web.Response:
        card = {"id": model, "object": "model", "created": 0, "owned_by": "fake", "root": model,
                "max_model_len": 1 << 20}
        return web.json_response({"object": "list", "data": [card]})

    async def health(request: web.Request) -> web.Response:
        return web.Response(status=200)

    app = web.Application()
    if metrics_text is not None:
        async def metrics(request: web.Request) -> web.Response:
            return web.Response(body=metrics_text, content_type="text/plain", charset="utf-8")

        app.router.add_get("/metrics", metrics)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/completions", completions)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/health", health)
    return app


@contextlib.contextmanager
def running(log_path: Path, *, cpus: str | None = None, model: str = "fake", extra: list[str] | None = None):
    """Start this server in its own process (pinned to ``cpus`` with taskset), yield (url, process) once it
    answers /health, and stop it afterwards: the benchmarks' fixture."""
    import socket
    import subprocess
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([*(["taskset", "-c", cpus] if cpus else []), sys.executable, __file__, "--port",
                                 str(port), "--model", model, *(extra or [])], stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            for _ in range(200):
                try:
                    if urllib.request.urlopen(f"{url}/health", timeout=1).status == 200:
                        break
                except OSError:
                    time.sleep(0.1)
            yield url, proc
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8999)
    ap.add_argument("--model", default="fake")
    ap.add_argument("--default-tokens", type=int, default=16)
    ap.add_argument("--ttft-ms", type=float, default=0.0, help="receipt to the first content chunk (default 0)")
    ap.add_argument("--itl-ms", type=float, default=0.0, help="between consecutive content chunks (default 0)")
    ap.add_argument("--timing-log", default=None, help="append one JSON line of server-side times per request")
    ap.add_argument("--metrics-file", type=Path, default=None, help="serve this file's text at GET /metrics")
    args = ap.parse_args()
    try:
        import uvloop  # noqa: F401

        uvloop.install()
    except ImportError:
        pass
    app = make_app(args.model, args.default_tokens, args.ttft_ms, args.itl_ms, args.timing_log,
                   args.metrics_file.read_bytes() if args.metrics_file else None)
    # everything alive now (aiohttp, uvloop…) never needs collecting: keep it out of the cycle collector, so a
    # full collection under load scans only live requests (without this, 15-30 ms stalls delay every stream)
    gc.freeze()
    web.run_app(app, host=args.host, port=args.port, access_log=None,
                print=None, backlog=1024)


if __name__ == "__main__":
    main()
