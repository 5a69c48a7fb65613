"""The engine in real time: an OpenAI-compatible streaming server (aiohttp) whose one engine task runs
:class:`~serve_bench.simengine.scheduler.Scheduler` on an absolute clock. Boundaries are nominal times; the
task sleeps until each (never for a step after the last one woke), hands every stream its token, then
admits the requests whose recorded arrival is at or before that nominal time, exactly as the virtual-time
simulation does for the same arrivals. A late wake-up delays writes; it never moves the schedule.

    POST /v1/chat/completions, /v1/completions   stream: one chunk per token (" tok"), the chat role chunk
                                                  with the first, finish_reason "length" on the last, a
                                                  usage chunk when stream_options.include_usage, [DONE];
                                                  not streamed: one body when the last token is due
    GET  /v1/models, /health, /metrics            /metrics: vllm:num_requests_running / _waiting gauges,
                                                  vllm:request_success_total

Prompt tokens are the prompt's whitespace-separated words (no tokenizer). ``--log PATH`` appends one JSON
line per finished request: id (X-Request-Id, else a counter), recv_s, admitted_s, first_token_s and
last_token_s (nominal), first_write_s and last_write_s (after the writes), prompt_tokens, output_tokens,
queued_steps; wall-clock seconds on :func:`serve_bench.measure.clock.now_s`'s clock, flushed per line.

    python -m serve_bench.simengine --port 8999 --step-ms 10 --per-seq-ms 1 [--max-num-seqs 16] [--log PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aiohttp import web

from serve_bench.errors import ServerStartError
from serve_bench.measure.clock import now_s
from serve_bench.simengine.params import EngineParams
from serve_bench.simengine.scheduler import Scheduler, Sequence

_ID = b'"id":"%s","created":%d,"model":"%s"'
_CHAT_HEAD = b'data: {' + _ID + b',"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n'  # noqa: E501
_CHAT_TOK = b'data: {' + _ID + b',"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":" tok"},"finish_reason":null}]}\n\n'  # noqa: E501
_CHAT_LAST = b'data: {' + _ID + b',"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":" tok"},"finish_reason":"length"}]}\n\n'  # noqa: E501
_CMPL_TOK = b'data: {' + _ID + b',"object":"text_completion","choices":[{"index":0,"text":" tok","finish_reason":null}]}\n\n'  # noqa: E501
_CMPL_LAST = b'data: {' + _ID + b',"object":"text_completion","choices":[{"index":0,"text":" tok","finish_reason":"length"}]}\n\n'  # noqa: E501
_USAGE = b'data: {' + _ID + b',"object":"%s","choices":[],"usage":{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d}}\n\n'  # noqa: E501
_DONE = b"data: [DONE]\n\n"


class Engine:
    """The scheduler, its clock and the streams waiting on it."""

    def __init__(self, params: EngineParams, log_path: str | None) -> None:
        self.sched = Scheduler(params)
        self.wake = asyncio.Event()
        self.events: dict[int, asyncio.Event] = {}
        self.succeeded = 0
        self.log = open(log_path, "a", buffering=1, encoding="utf-8") if log_path else None
        self.task: asyncio.Task[None] | None = None

    def submit(self, seq: Sequence) -> asyncio.Event:
        event = asyncio.Event()
        self.events[id(seq)] = event
        self.sched.submit(seq)
        self.wake.set()
        return event

    def forget(self, seq: Sequence) -> None:
        self.events.pop(id(seq), None)
        if not seq.finished:
            seq.aborted = True

    async def run(self) -> None:
        sched = self.sched
        while True:
            if not sched.busy:
                self.wake.clear()
                await self.wake.wait()
                sched.idle_until(sched.waiting[0].arrival_s)
            await _until(sched.boundary_s)  # type: ignore[arg-type]
            _, got = sched.advance()
            for seq in got:
                event = self.events.get(id(seq))
                if event is not None:
                    event.set()

    def done(self, seq: Sequence, first_write_s: float | None, last_write_s: float | None) -> None:
        self.succeeded += 1
        if self.log is not None:
            self.log.write(json.dumps({
                "id": seq.rid, "recv_s": seq.arrival_s, "admitted_s": seq.admitted_s,
                "first_token_s": seq.first_token_s, "last_token_s": seq.last_token_s,
                "first_write_s": first_write_s, "last_write_s": last_write_s, "prompt_tokens": seq.prompt_tokens,
                "output_tokens": seq.output_tokens, "queued_steps": seq.queued_steps}) + "\n")


async def _until(deadline_s: float) -> None:
    """Sleep until now_s() reaches ``deadline_s``; the loop's timers round and can wake early: sleep again."""
    while (left := deadline_s - now_s()) > 0:
        await asyncio.sleep(left)


def _prompt_tokens(body: dict[str, Any]) -> int:
    if "messages" in body:
        return sum(len(str(m.get("content", "")).split()) for m in body["messages"] if isinstance(m, dict))
    prompt = body.get("prompt", "")
    return len(prompt) if isinstance(prompt, list) else len(str(prompt).split())


def make_app(params: EngineParams, *, model: str = "sim-engine", log_path: str | None = None) -> web.Application:
    counter = itertools.count(1)
    model_b = model.encode()

    async def generate(request: web.Request, chat: bool) -> web.StreamResponse:
        engine: Engine = request.app["engine"]
        body = await request.json()
        recv = now_s()
        n = max(1, int(body.get("max_completion_tokens") or body.get("max_tokens") or 16))
        rid = request.headers.get("X-Request-Id") or f"cmpl-{next(counter)}"
        seq = Sequence(rid, recv, _prompt_tokens(body), n)
        event = engine.submit(seq)
        args = (rid.encode(), int(time.time()), model_b)
        try:
            if not body.get("stream"):
                while not seq.finished:
                    await event.wait()
                    event.clear()
                engine.done(seq, None, None)
                text = " tok" * n
                choice = ({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "length"}
                          if chat else {"index": 0, "text": text, "finish_reason": "length"})
                usage = {"prompt_tokens": seq.prompt_tokens, "completion_tokens": n,
                         "total_tokens": seq.prompt_tokens + n}
                return web.json_response({"id": rid, "object": "chat.completion" if chat else "text_completion",
                                          "created": args[1], "model": model, "choices": [choice], "usage": usage})
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
            await resp.prepare(request)
            tok, last = ((_CHAT_TOK, _CHAT_LAST) if chat else (_CMPL_TOK, _CMPL_LAST))
            tok_b, last_b = tok % args, last % args
            sent, first_write = 0, None
            while sent < n:
                await event.wait()
                event.clear()
                k = seq.emitted - sent
                if k <= 0:
                    continue
                chunks = [tok_b] * k
                if seq.emitted >= n:
                    chunks[-1] = last_b
                if sent == 0 and chat:
                    chunks.insert(0, _CHAT_HEAD % args)  # the role chunk, with the first token (as vLLM)
                await resp.write(b"".join(chunks))
                if sent == 0:
                    first_write = now_s()
                sent += k
            last_write = now_s()
            if (body.get("stream_options") or {}).get("include_usage"):
                obj = b"chat.completion.chunk" if chat else b"text_completion"
                p = seq.prompt_tokens
                await resp.write(_USAGE % (*args, obj, p, n, p + n))
            await resp.write(_DONE)
            await resp.write_eof()
            engine.done(seq, first_write, last_write)
            return resp
        finally:
            engine.forget(seq)

    async def chat(request: web.Request) -> web.StreamResponse:
        return await generate(request, True)

    async def completions(request: web.Request) -> web.StreamResponse:
        return await generate(request, False)

    async def models(request: web.Request) -> web.Response:
        card = {"id": model, "object": "model", "created": 0, "owned_by": "serve-bench", "root": model,
                "max_model_len": 1 << 20}
        return web.json_response({"object": "list", "data": [card]})

    async def health(request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def metrics(request: web.Request) -> web.Response:
        engine: Engine = request.app["engine"]
        label = f'{{model_name="{model}"}}'
        text = (f"# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{label} "
                f"{len(engine.sched.running)}\n# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting"
                f"{label} {len(engine.sched.waiting)}\n# TYPE vllm:request_success_total counter\n"
                f"vllm:request_success_total{label} {engine.succeeded}\n")
        return web.Response(text=text, content_type="text/plain")

    async def start(app: web.Application) -> None:
        engine = Engine(params, log_path)
        app["engine"] = engine
        engine.task = asyncio.get_running_loop().create_task(engine.run())

    async def stop(app: web.Application) -> None:
        task = app["engine"].task
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/completions", completions)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    return app


def read_log(path: Path | str) -> list[dict[str, Any]]:
    """The engine's per-request log (no file: no request finished)."""
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@contextlib.contextmanager
def running(params: EngineParams, *, log_path: Path, cpus: str | None = None,
            model: str = "sim-engine") -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The engine in its own process (its own session, pinned to ``cpus`` with taskset) on a free loopback
    port: yields (url, process) once /health answers, and ends the process group afterwards."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    out = Path(log_path).with_suffix(".out")
    with open(out, "wb") as console:
        proc = subprocess.Popen([*(["taskset", "-c", cpus] if cpus else []), sys.executable, "-m",
                                 "serve_bench.simengine", "--port", str(port), "--model", model, "--log",
                                 str(log_path), *params.cli_args()], stdout=console, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            for _ in range(300):
                if proc.poll() is not None:
                    raise ServerStartError(f"the known-capacity engine exited at start ({proc.returncode})",
                                           hint=f"its output is in {out}")
                try:
                    if urllib.request.urlopen(f"{url}/health", timeout=1).status == 200:
                        break
                except OSError:
                    time.sleep(0.05)
            yield url, proc
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m serve_bench.simengine", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8999)
    ap.add_argument("--model", default="sim-engine")
    ap.add_argument("--log", default=None, help="append one JSON line of the engine's own timings per request")
    for name, info in EngineParams.model_fields.items():
        kind = int if info.annotation in (int, int | None) else float
        ap.add_argument(f"--{name.replace('_', '-')}", type=kind, default=info.default, help=info.description)
    args = vars(ap.parse_args(argv))
    params = EngineParams(**{k: args[k] for k in EngineParams.model_fields})
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    app = make_app(params, model=args["model"], log_path=args["log"])
    # what is alive now never needs collecting: a full collection under load then scans only live requests
    gc.freeze()
    web.run_app(app, host=args["host"], port=args["port"], access_log=None, print=None, backlog=1024)


if __name__ == "__main__":
    main()
