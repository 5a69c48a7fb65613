"""The streaming Locust user: one OpenAI-compatible streaming request per turn, one record each.

Why ``FastHttpUser`` (geventhttpclient) rather than ``HttpUser`` (requests):
it costs several times less CPU per request, which keeps the load generator
out of the measurement on a small machine. Its session's streaming helper
(``iter_content(1024)``) waits for 1024 bytes before yielding, which would
delay and merge chunk timestamps, and it drops error bodies; so the user
takes a connection from the FastHttpUser's own client pool and reads the
body line by line (``readline`` returns each SSE line as soon as its bytes
arrive). Each record is then reported to Locust as a request event, so
Locust's own statistics still work; serve-bench computes its figures from the
records, not from Locust's rounded ones.
"""

from __future__ import annotations

import json
import os
import re
import socket
from typing import Any

import gevent
from geventhttpclient.url import URL
from locust import FastHttpUser, constant, task
from locust.exception import StopUser

from serve_bench.load.clock import now_s
from serve_bench.load.records import RequestRecord
from serve_bench.load.stage_state import StageState

PATHS = {"chat": "/v1/chat/completions", "completions": "/v1/completions"}
_MAX_ERROR_BODY = 2000


class StreamError(Exception):
    """A response that is not a complete, well-formed stream (reported to Locust as the failure)."""


class StreamingUser(FastHttpUser):
    abstract = True
    wait_time = constant(0)  # closed loop: no think time; open loop waits for its scheduled time instead
    max_retries = 0
    state: StageState  # set on the per-stage subclass by the runner

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        self.user_number = self.state.next_user_number()
        self.path = PATHS[self.state.api]
        self.url = URL(self.host.rstrip("/") + self.path)
        self.headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        key = os.environ.get("OPENAI_API_KEY")
        if key:
            self.headers["Authorization"] = f"Bearer {key}"

    @task
    def send_one(self) -> None:
        state = self.state
        if state.ready is not None:
            state.ready.wait()
        slot = state.take()
        if slot is None:
            if state.finished is not None:
                state.finished.wait()
            raise StopUser()
        index, intended_s = slot
        state.wait_for_warmup(index)
        if intended_s is not None:
            delay = intended_s - now_s()
            if delay > 0:
                gevent.sleep(delay)
        body = {"model": state.model, "max_tokens": state.max_tokens, "stream": True,
                "stream_options": {"include_usage": True}, "ignore_eos": state.ignore_eos,
                **state.prompts.payload(state.prompt_offset + index), **state.extra_body}
        data = json.dumps(body).encode()
        state.in_flight += 1
        try:
            self._request(index, intended_s, data)
        finally:
            state.in_flight -= 1

    def _request(self, index: int, intended_s: float | None, data: bytes) -> None:
        state = self.state
        fields: dict[str, Any] = {
            "request_id": f"{state.stage}-{index}", "stage": state.stage, "profile": state.profile,
            "worker_id": f"{state.worker_id}/u{self.user_number}", "intended_send_s": intended_s,
            "max_tokens": state.max_tokens, "status": 0, "ok": False,
        }
        chunks: list[float] = []
        self.response_bytes = 0
        send_s = now_s()
        fields["send_s"] = send_s
        fields["warmup"] = state.is_warmup(index, send_s, intended_s)
        resp = None
        killed = False
        try:
            with gevent.Timeout(state.timeout_s, StreamError(f"timeout: no complete response after "
                                                            f"{state.timeout_s:g} s")):
                client = self.client.client.clientpool.get_client(self.url)
                resp = client.request("POST", self.url.request_uri, body=data, headers=self.headers)
                fields["status"] = resp.status_code
                if resp.status_code != 200:
                    text = resp.read()[:_MAX_ERROR_BODY].decode("utf-8", "replace")
                    raise StreamError(f"HTTP {resp.status_code}: {text}")
                self._read_stream(resp, chunks, fields)
            fields["ok"] = True
        except gevent.GreenletExit:
            fields["error"] = "the stage stopped before the response finished"
            killed = True
        except StreamError as err:
            fields["error"] = str(err)
        except ConnectionRefusedError as err:
            fields["error"] = f"connection refused: {err}"
        except (OSError, socket.error) as err:
            fields["error"] = f"disconnected: {type(err).__name__}: {err}"
        except Exception as err:  # noqa: BLE001 - a failed request is data, never a stopped run
            fields["error"] = f"{type(err).__name__}: {err}"
        finally:
            fields["end_s"] = now_s()
            if resp is not None:
                resp.release()
            if chunks:
                fields["first_token_s"], fields["last_token_s"] = chunks[0], chunks[-1]
            fields["chunk_times_s"] = chunks
        if fields["ok"] and not chunks:
            fields["ok"], fields["error"] = False, "the stream carried no content"
        record = RequestRecord(**fields)
        state.record(record)
        self._report(record)
        if killed:
            raise gevent.GreenletExit()

    def _read_stream(self, resp: Any, chunks: list[float], fields: dict[str, Any]) -> None:
        content_key = "delta" if self.state.api == "chat" else None
        done = False
        usage = None
        while True:
            line = resp.readline(b"\n")
            t = now_s()
            if not line:
                break
            self.response_bytes += len(line)
            line = line.strip()
            if not line.startswith(b"data:"):
                continue  # blank separators, comments, event: lines
            payload = line[5:].strip()
            if payload == b"[DONE]":
                done = True
                break
            try:
                event = json.loads(payload)
            except ValueError:
                raise StreamError(f"malformed SSE data: {payload[:200]!r}") from None
            if not isinstance(event, dict):
                raise StreamError(f"malformed SSE data: {payload[:200]!r}")
            if "error" in event:
                raise StreamError(f"error event in stream: {json.dumps(event['error'])[:_MAX_ERROR_BODY]}")
            if event.get("usage"):
                usage = event["usage"]
            for choice in event.get("choices") or []:
                text = (choice.get("delta") or {}).get("content") if content_key else choice.get("text")
                if text:
                    chunks.append(t)
                    break
        if usage is not None:
            fields["prompt_tokens"] = usage.get("prompt_tokens")
            fields["output_tokens"] = usage.get("completion_tokens")
        if not done:
            raise StreamError("the stream ended before [DONE] (server disconnected)")
        resp.read()  # drain the terminating chunk so the connection can be reused
        if usage is None:
            raise StreamError("the stream carried no usage (stream_options.include_usage unsupported?)")

    def _report(self, r: RequestRecord) -> None:
        self.environment.events.request.fire(
            request_type="POST", name=self.path, response_time=((r.end_s or r.send_s) - r.send_s) * 1000.0,
            response_length=self.response_bytes, exception=None if r.ok else StreamError(r.error or "failed"),
            context={"stage": r.stage}, response=None, url=str(self.url))


def make_user_class(state: StageState | None, stage: str, url: str, timeout_s: float) -> type[StreamingUser]:
    """A concrete user class for one stage; the name depends only on the stage, so master and workers agree."""
    return type(f"SB_{re.sub(r'[^0-9A-Za-z]', '_', stage)}", (StreamingUser,),
                {"state": state, "host": url.rstrip("/"), "network_timeout": timeout_s,
                 "connection_timeout": min(timeout_s, 30.0), "abstract": False})
