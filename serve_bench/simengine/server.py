"""The engine in real time: an OpenAI-compatible streaming server (aiohttp) whose one engine task runs
:class:`~serve_bench.simengine.scheduler.Scheduler` on an absolute clock.

Boundaries are nominal times. The engine task sleeps until the next one (an absolute deadline, never a sleep
after the previous wake-up), processes it (the ended step's tokens, then admission of the requests whose
recorded arrival is at or before that nominal time) and wakes every stream. A request that arrived after the
nominal boundary but before a late wake-up waits for the next boundary, as the virtual-time simulation
treats it; an idle engine starts its next step at the next request's arrival time. So for the same arrival
times the nominal schedule is the simulation's exactly, and event-loop lateness only delays writes, never
accumulates.

    POST /v1/chat/completions, /v1/completions   stream: one chunk per token (" tok"), the chat role chunk
                                                  with the first, finish_reason "length" on the last, a
                                                  usage chunk when stream_options.include_usage, [DONE];
                                                  not streamed: one body once the last token is due
    GET  /v1/models, /health, /metrics            /metrics: vllm:num_requests_running / _waiting gauges,
                                                  vllm:request_success_total (label model_name)

Prompt tokens are the prompt's whitespace-separated words (chat: every message's content; completions: the
prompt's words, or the length of a token-id list); output tokens are max_completion_tokens or max_tokens
(default 16), all of them (the engine ignores EOS). A request's arrival is when its JSON body has been read,
on :func:`serve_bench.load.clock.now_s`'s clock (wall seconds from perf_counter). ``--log PATH`` appends
one JSON line per finished request: id (X-Request-Id, else a counter), recv_s, admitted_s, first_token_s
and last_token_s (nominal), first_write_s and last_write_s (just after the writes), prompt_tokens,
output_tokens, queued_steps; flushed per line.

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
import traceback
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from aiohttp import web

from serve_bench.load.clock import now_s
from serve_bench.simengine.params import EngineParams
from serve_bench.simengine.scheduler import Scheduler, Seq

# the chunks of scripts/fake_openai_server.py (vLLM's field order), pre-rendered: little CPU per token
_CHAT_HEAD = b'data: {"id":"%s","object":"chat.completion.chunk","created":%d,"model":"%s","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n'  # noqa: E501
_CHAT_TOK = b'data: {"id":"%s","object":"chat.completion.chunk","created":%d,"model":"%s","choices":[{"index":0,"delta":{"content":" tok"},"finish_reason":null}]}\n\n'  # noqa: E501
_CHAT_LAST = b'data: {"id":"%s","object":"chat.completion.chunk","created":%d,"model":"%s","choices":[{"index":0,"delta":{"content":" tok"},"finish_reason":"length"}]}\n\n'  # noqa: E501
_CMPL_TOK = b'data: {"id":"%s","object":"text_completion","created":%d,"model":"%s","choices":[{"index":0,"text":" tok","finish_reason":null}]}\n\n'  # noqa: E501
_CMPL_LAST = b'data: {"id":"%s","object":"text_completion","created":%d,"model":"%s","choices":[{"index":0,"text":" tok","finish_reason":"length"}]}\n\n'  # noqa: E501
_USAGE = b'data: {"id":"%s","object":"%s","created":%d,"model":"%s","choices":[],"usage":{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d}}\n\n'  # noqa: E501
_DONE = b"data: [DONE]\n\n"
DEFAULT_TOKENS = 16


class Engine:
    """The scheduler, its clock, and the streams waiting on it: every stream awaits one shared future that
    the engine resolves at each boundary (one wake-up per stream per boundary, no per-stream queue)."""

    def __init__(self, params: EngineParams, log_path: str | Path | None) -> None:
        self.sched = Scheduler(params)
        self.loop = asyncio.get_running_loop()
        self.tick: asyncio.Future[int] = self.loop.create_future()
        self.done_k = -1  # the last boundary processed
        self.wake = asyncio.Event()
        self.succeeded = 0
        self.log: IO[str] | None = open(log_path, "a", buffering=1, encoding="utf-8") if log_path else None
        self.task: asyncio.Task[None] | None = None

    def submit(self, rid: str, arrival_s: float, prompt_tokens: int, output_tokens: int) -> Seq:
        seq = self.sched.submit(rid, arrival_s, prompt_tokens, output_tokens)
        self.wake.set()
        return seq

    async def tokens(self, seq: Seq, sent: int) -> int:
        """Wait until ``seq`` has more than ``sent`` tokens; how many it has."""
        while (have := seq.tokens_at(self.done_k)) <= sent:
            # shield: a cancelled stream must not cancel the future every other stream waits on
            await asyncio.shield(self.tick)
        return have

    async def run(self) -> None:
        try:
            await self._run()
        except asyncio.CancelledError:
            raise
        except BaseException as err:  # a bug: fail every stream rather than leave them hanging
            traceback.print_exc()
            self.tick.set_exception(RuntimeError(f"the engine stopped: {err!r}"))
            raise

    async def _run(self) -> None:
        sched = self.sched
        while True:
            deadline = sched.next_s
            if deadline is None:  # idle until a request arrives
                self.wake.clear()
                await self.wake.wait()
                continue
            if (left := deadline - now_s()) > 0:
                # the loop's timers round and can wake early; next_s is read again (an abort can move it)
                await asyncio.sleep(left)
                continue
            boundary = sched.step()
            self.done_k = boundary.k
            tick, self.tick = self.tick, self.loop.create_future()
            tick.set_result(boundary.k)

    def finished(self, seq: Seq, first_write_s: float, last_write_s: float) -> None:
        self.succeeded += 1
        if self.log is not None:
            self.log.write(json.dumps({
                "id": seq.rid, "recv_s": seq.arrival_s, "admitted_s": seq.admitted_s,
                "first_token_s": seq.first_token_s, "first_write_s": first_write_s,
                "last_token_s": seq.last_token_s, "last_write_s": last_write_s, "prompt_tokens": seq.prompt_tokens,
                "output_tokens": seq.output_tokens, "queued_steps": seq.queued_steps}) + "\n")


def prompt_tokens(body: dict[str, Any]) -> int:
    """The prompt's whitespace-separated words (chat: every message's content), or a token-id list's length."""
    if "messages" in body:
        return sum(len(_text(m.get("content"))) for m in body["messages"] if isinstance(m, dict))
    prompt = body.get("prompt", "")
    if isinstance(prompt, list) and all(isinstance(t, int) for t in prompt):
        return len(prompt)
    return len(_text(prompt))


def _text(content: Any) -> list[str]:
    if isinstance(content, list):  # chat content parts, or a batch of prompts
        return [w for part in content for w in _text(part.get("text") if isinstance(part, dict) else part)]
    return str(content or "").split()


def output_tokens(body: dict[str, Any]) -> int:
    value = body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_TOKENS
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"max_tokens must be an integer, not {value!r}")
    return max(1, value)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": {"message": message, "type": "BadRequestError", "code": status}},
                             status=status)


def make_app(params: EngineParams, *, model: str = "sim-engine",
             log_path: str | Path | None = None) -> web.Application:
    counter = itertools.count(1)
    model_b = model.encode()

    async def generate(request: web.Request, chat: bool) -> web.StreamResponse:
        engine: Engine = request.app["engine"]
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
            n, p = output_tokens(body), prompt_tokens(body)
        except ValueError as err:
            return _error(400, str(err))
        recv = now_s()  # the arrival: the scheduler's clock
        rid = request.headers.get("X-Request-Id") or f"cmpl-{next(counter)}"
        seq = engine.submit(rid, recv, p, n)
        args = (json.dumps(rid)[1:-1].encode(), int(time.time()), model_b)
        try:
            if body.get("stream"):
                return await _stream(request, engine, seq, chat, args,
                                     bool((body.get("stream_options") or {}).get("include_usage")))
            return await _whole(request, engine, seq, chat, model)
        finally:
            if not seq.finished:  # the client went away (or the server stops): free its place
                engine.sched.abort(seq)

    async def chat(request: web.Request) -> web.StreamResponse:
        return await generate(request, True)

    async def completions(request: web.Request) -> web.StreamResponse:
        return await generate(request, False)

    async def models(request: web.Request) -> web.Response:
        card = {"id": model, "object": "model", "created": 0, "owned_by": "serve-bench", "root": model,
                "parent": None, "max_model_len": 1 << 20}
        return web.json_response({"object": "list", "data": [card]})

    async def health(request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def metrics(request: web.Request) -> web.Response:
        engine: Engine = request.app["engine"]
        label = f'{{model_name="{model}"}}'
        text = (f"# HELP vllm:num_requests_running Number of requests in model execution batches.\n"
                f"# TYPE vllm:num_requests_running gauge\n"
                f"vllm:num_requests_running{label} {engine.sched.running}\n"
                f"# HELP vllm:num_requests_waiting Number of requests waiting to be processed.\n"
                f"# TYPE vllm:num_requests_waiting gauge\n"
                f"vllm:num_requests_waiting{label} {len(engine.sched.waiting)}\n"
                f"# HELP vllm:request_success_total Count of successfully processed requests.\n"
                f"# TYPE vllm:request_success_total counter\n"
                f"vllm:request_success_total{label} {engine.succeeded}\n")
        return web.Response(text=text, content_type="text/plain", charset="utf-8")

    async def start(app: web.Application) -> None:
        engine = Engine(params, log_path)
        app["engine"] = engine
        engine.task = asyncio.get_running_loop().create_task(engine.run())

    async def stop(app: web.Application) -> None:
        engine: Engine = app["engine"]
        if engine.task is not None:
            engine.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await engine.task
        if engine.log is not None:
            engine.log.close()

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/completions", completions)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    return app


async def _stream(request: web.Request, engine: Engine, seq: Seq, chat: bool, args: tuple[bytes, int, bytes],
                  usage: bool) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await resp.prepare(request)
    try:
        await _write_stream(resp, engine, seq, chat, args, usage)
    except ConnectionResetError:  # the client went away: the caller frees its place; nothing to log
        pass
    return resp


async def _write_stream(resp: web.StreamResponse, engine: Engine, seq: Seq, chat: bool,
                        args: tuple[bytes, int, bytes], usage: bool) -> None:
    n = seq.output_tokens
    tok, last = (_CHAT_TOK, _CHAT_LAST) if chat else (_CMPL_TOK, _CMPL_LAST)
    tok_b, last_b = tok % args, last % args
    sent = 0
    first_write = 0.0
    while sent < n:
        have = await engine.tokens(seq, sent)
        chunks = [tok_b] * (have - sent)  # more than one when this stream fell behind: one write
        if have == n:
            chunks[-1] = last_b
        if sent == 0 and chat:
            chunks.insert(0, _CHAT_HEAD % args)  # the role chunk, with the first token (as vLLM)
        await resp.write(b"".join(chunks))
        if sent == 0:
            first_write = now_s()
        sent = have
    last_write = now_s()
    if usage:
        p = seq.prompt_tokens
        await resp.write(_USAGE % (args[0], b"chat.completion.chunk" if chat else b"text_completion", args[1],
                                   args[2], p, n, p + n))
    await resp.write(_DONE)
    await resp.write_eof()
    engine.finished(seq, first_write, last_write)


async def _whole(request: web.Request, engine: Engine, seq: Seq, chat: bool, model: str) -> web.Response:
    n, p = seq.output_tokens, seq.prompt_tokens
    await engine.tokens(seq, n - 1)
    text = " tok" * n
    choice = ({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "length"}
              if chat else {"index": 0, "text": text, "finish_reason": "length"})
    resp = web.json_response({"id": seq.rid, "object": "chat.completion" if chat else "text_completion",
                              "created": int(time.time()), "model": model, "choices": [choice],
                              "usage": {"prompt_tokens": p, "completion_tokens": n, "total_tokens": p + n}})
    try:
        await resp.prepare(request)  # written here, so the log can say when
        await resp.write_eof()
    except ConnectionResetError:
        return resp
    written = now_s()
    engine.finished(seq, written, written)
    return resp


def read_log(path: Path | str) -> list[dict[str, Any]]:
    """The engine's per-request log (no file: no request finished); a torn last line is skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except ValueError:
                if number != len(lines):
                    raise
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running(params: EngineParams, *, log_path: Path | str, cpus: str | None = None, model: str = "sim-engine",
            start_timeout_s: float = 60.0) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The engine in its own process (its own session; pinned to ``cpus`` with taskset) on a free loopback
    port: yields (url, process) once /health answers, and ends the process group afterwards (SIGTERM, then
    SIGKILL after 10 s). Its console output goes to ``log_path`` with the suffix ``.out``. Starting takes about a
    second (imports); ``start_timeout_s`` allows for a loaded machine."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = Path(log_path)
    console_path = log_path.with_suffix(".out")
    cmd = [*(["taskset", "-c", cpus] if cpus else []), sys.executable, "-m", "serve_bench.simengine",
           "--host", "127.0.0.1", "--port", str(port), "--model", model, "--log", str(log_path), *params.cli_args()]
    with open(console_path, "wb") as console:
        proc = subprocess.Popen(cmd, stdout=console, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            _wait_healthy(url, proc, console_path, start_timeout_s)
            yield url, proc
        finally:
            _stop(proc)


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], console_path: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the engine exited at start (status {proc.returncode}); see {console_path}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"the engine did not answer {url}/health within {timeout_s:g} s; see {console_path}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m serve_bench.simengine", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8999)
    ap.add_argument("--model", default="sim-engine", help="the served model's name (default sim-engine)")
    ap.add_argument("--log", default=None, help="append one JSON line of the engine's own timings per request")
    # one option per engine parameter (--step-ms, --per-seq-ms …), so the two never drift apart
    for name, info in EngineParams.model_fields.items():
        kind = int if info.annotation in (int, int | None) else float
        ap.add_argument(f"--{name.replace('_', '-')}", type=kind, default=info.default,
                        help=f"{info.description} (default {info.default})")
    return ap


def main(argv: list[str] | None = None) -> None:
    args = vars(_parser().parse_args(argv))
    try:
        params = EngineParams(**{k: args[k] for k in EngineParams.model_fields})
    except ValueError as err:
        sys.exit(f"invalid engine parameters: {err}")
    try:
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    app = make_app(params, model=args["model"], log_path=args["log"])
    # everything alive now never needs collecting: a full collection under load then scans only live requests
    # (without this, 15-30 ms collector stalls would delay every stream)
    gc.freeze()
    web.run_app(app, host=args["host"], port=args["port"], access_log=None, print=None, backlog=1024,
                shutdown_timeout=1.0, loop=loop)


if __name__ == "__main__":
    main()
