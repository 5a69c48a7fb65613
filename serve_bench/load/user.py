"""The streaming Locust user: one OpenAI-compatible streaming request per turn, one record each.

Locust drives the users (spawning, stopping, distribution); the HTTP is
geventhttpclient's public ``HTTPClient``, one keep-alive connection per user,
because it costs several times less CPU per request than ``requests`` and
reads the body line by line (``readline`` returns each SSE line as soon as its
bytes arrive), where Locust's own streaming helpers wait for 1024-byte blocks
and drop error bodies. Each record is also reported to Locust as a request
event, so Locust's statistics still work; serve-bench computes its figures
from the records, not from Locust's rounded ones.

Before its first request a user opens its connection (``GET /v1/models``) and
checks in at the stage's start barrier (``state.sync.ready``), so a stage starts
with every user connected and sending together.
"""

from __future__ import annotations

import json
import re
import socket
from typing import Any

import gevent
from geventhttpclient import URL, HTTPClient
from locust import User, constant, task
from locust.exception import StopUser

from serve_bench import auth
from serve_bench.load.stage_state import StageState
from serve_bench.measure.clock import now_s
from serve_bench.measure.records import RequestRecord
from serve_bench.workload.conversations import SEP, ConversationPromptSet
from serve_bench.workload.prompts import PromptError

PATHS = {"chat": "/v1/chat/completions", "completions": "/v1/completions"}
_MAX_ERROR_BODY = 2000
_JOIN_TIMEOUT_S = 10.0
# A content chunk is recognised without parsing its JSON (the load generator's hot path) when it has this
# field with a non-empty string value and neither usage nor an error; every other event is parsed in full.
_CONTENT = {"chat": b'"content":"', "completions": b'"text":"'}


class _Target:
    """One endpoint as a user sees it: its base URL, request paths and keep-alive connection."""

    def __init__(self, base: str, path: str, network_timeout: float, connection_timeout: float) -> None:
        self.base = base
        self.uri = URL(base + path).request_uri
        self.models_uri = URL(base + "/v1/models").request_uri
        # insecure, as Locust's FastHttpUser: a test server's self-signed certificate is accepted
        self.http = HTTPClient.from_url(base + "/", concurrency=1, network_timeout=network_timeout,
                                        connection_timeout=connection_timeout, insecure=True)


class StreamError(Exception):
    """A response that is not a complete, well-formed stream (reported to Locust as the failure)."""


class StreamingUser(User):
    abstract = True
    wait_time = constant(0)  # closed loop: no think time; open loop waits for its scheduled time instead
    state: StageState  # set on the per-stage subclass by the runner
    network_timeout: float = 300.0
    connection_timeout: float = 30.0

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        state = self.state
        self.user_number = state.next_user_number()
        self.path = PATHS[state.config.api]
        # one keep-alive connection per endpoint of the fleet (one endpoint: the stage's host)
        self.targets = [_Target(base, self.path, self.network_timeout, self.connection_timeout)
                        for base in state.config.endpoints or (self.host.rstrip("/"),)]
        self.headers = {"Content-Type": "application/json", "Accept": "text/event-stream",
                        **auth.headers(state.config.api_key)}
        self.marker = _CONTENT[state.config.api]
        self.joined = False
        self.plan: dict[str, Any] = {}  # the current request's planned fields (PromptSet.request_fields)
        self.picked: int | None = None  # the endpoint of this user's last request

    def on_stop(self) -> None:
        for target in self.targets:
            target.http.close()

    def _join(self) -> None:
        """Open this user's connections, then check in at the start barrier."""
        for target in self.targets:
            try:
                with gevent.Timeout(_JOIN_TIMEOUT_S):
                    resp = target.http.get(target.models_uri, headers=self.headers)
                    resp.read()
                    resp.release()
            except (gevent.Timeout, Exception):  # noqa: BLE001 - the first real request records why
                pass
        self.state.counts.users_ready += 1

    @task
    def send_one(self) -> None:
        state = self.state
        if not self.joined:
            self.joined = True
            self._join()
        if state.sync.ready is not None:
            state.sync.ready.wait()
        slot = state.take()
        if slot is None:
            if state.sync.finished is not None:
                state.sync.finished.wait()
            raise StopUser()
        index, intended_s = slot
        if isinstance(state.config.prompts, ConversationPromptSet):
            self._conversation(state.config.prompts, index, intended_s)
            return
        self.plan = state.config.prompts.request_fields(state.config.prompt_offset + index)  # planned before: cheap
        try:
            prompt = state.config.prompts.payload(state.config.prompt_offset + index)
        except PromptError as err:
            self._record({**self._fields(index, intended_s), "send_s": now_s(), "end_s": now_s(),
                          "error": str(err), "chunk_times_s": []})
            return
        data = self._body(prompt)  # serialised before the send time, not between it and the send
        state.wait_for_warmup(index)
        if intended_s is not None:
            delay = intended_s - now_s()
            if delay > 0:
                gevent.sleep(delay)
        state.counts.in_flight += 1
        try:
            self._request(index, intended_s, data)
        finally:
            state.counts.in_flight -= 1

    def _body(self, prompt: dict[str, Any]) -> bytes:
        config = self.state.config
        body = {"model": config.model, "max_tokens": self.plan.get("requested_output_tokens") or config.max_tokens,
                "stream": True, "stream_options": {"include_usage": True}, "ignore_eos": config.ignore_eos,
                **prompt, **config.extra_body}
        return json.dumps(body).encode()

    def _conversation(self, prompts: ConversationPromptSet, index: int, intended_s: float | None) -> None:
        """Every turn of conversation ``index``: the history so far (the server's own replies) plus the next
        user message; a failed turn ends the conversation. Only the first turn has an intended send time."""
        state = self.state
        g = state.config.prompt_offset + index
        self.plan = prompts.turn_fields(g, 0, state.config.stage)
        try:
            texts = prompts.text(g).split(SEP)
        except PromptError as err:
            self._record({**self._fields(index, intended_s), "send_s": now_s(), "end_s": now_s(),
                          "error": str(err), "chunk_times_s": []})
            return
        state.wait_for_warmup(index)
        if intended_s is not None and intended_s > now_s():
            gevent.sleep(intended_s - now_s())
        history: list[dict[str, str]] = []
        endpoint: int | None = None  # every turn goes where the first went, while that endpoint lives
        for turn, text in enumerate(texts):
            if turn:
                if prompts.think_time_s:
                    gevent.sleep(prompts.think_time_s)
                self.plan = prompts.turn_fields(g, turn, state.config.stage)
            history.append({"role": "user", "content": text})
            reply: list[str] = []
            state.counts.in_flight += 1
            try:
                ok = self._request(index, intended_s if turn == 0 else None, self._body({"messages": history}),
                                   reply=reply, last=turn == len(texts) - 1, prefer=endpoint)
            finally:
                state.counts.in_flight -= 1
            endpoint = self.picked
            if not ok:
                return
            history.append({"role": "assistant", "content": "".join(reply)})

    def _fields(self, index: int, intended_s: float | None) -> dict[str, Any]:
        config = self.state.config
        turn = self.plan.get("turn_index")
        return {"request_id": f"{config.stage}-{index}" + (f"-t{turn}" if turn is not None else ""),
                "stage": config.stage, "profile": config.profile,
                "worker_id": f"{config.worker_id}/u{self.user_number}", "intended_send_s": intended_s,
                "max_tokens": self.plan.get("requested_output_tokens") or config.max_tokens, "status": 0, "ok": False,
                "warmup": index < config.warmup_requests,
                **self.plan, "requested_output_tokens": self.plan.get("requested_output_tokens") or config.max_tokens}

    def _request(self, index: int, intended_s: float | None, data: bytes, reply: list[str] | None = None,
                 last: bool = True, prefer: int | None = None) -> bool:
        """Send one request and record it; True when it succeeded. ``reply`` collects the answer's text
        (conversations only: it costs a JSON parse per chunk); ``last``: the index's last request; ``prefer``:
        the endpoint to send to while it lives (a conversation's, whose prefix cache holds its history)."""
        state = self.state
        fields = self._fields(index, intended_s)
        chunks: list[float] = []
        self.response_bytes = 0
        balancer = state.balancer
        pick = balancer.pick(prefer) if balancer is not None else 0
        self.picked = pick
        target = self.targets[pick or 0]
        fields["endpoint"] = target.base
        send_s = now_s()
        fields["send_s"] = send_s
        fields["warmup"] = state.is_warmup(index, send_s, intended_s)
        resp = None
        killed = False
        try:
            if pick is None:
                raise StreamError("the server has died" if len(self.targets) == 1 else
                                  "every endpoint of the fleet has died")
            with gevent.Timeout(state.config.timeout_s, StreamError(f"timeout: no complete response after "
                                                            f"{state.config.timeout_s:g} s")):
                resp = target.http.request("POST", target.uri, body=data, headers=self.headers)
                fields["status"] = resp.status_code
                if resp.status_code != 200:
                    text = resp.read()[:_MAX_ERROR_BODY].decode("utf-8", "replace")
                    raise StreamError(f"HTTP {resp.status_code}: {text}")
                self._read_stream(resp, chunks, fields, reply)
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
            if balancer is not None and pick is not None:
                balancer.done(pick, refused=fields["status"] == 0 and "refused" in (fields.get("error") or "").lower())
            if chunks:
                fields["first_token_s"], fields["last_token_s"] = chunks[0], chunks[-1]
            fields["chunk_times_s"] = chunks
        if fields["ok"] and not chunks:
            fields["ok"], fields["error"] = False, "the stream carried no content"
        self._record(fields, final=last or not fields["ok"])
        if killed:
            raise gevent.GreenletExit()
        return bool(fields["ok"])

    def _record(self, fields: dict[str, Any], final: bool = True) -> None:
        record = RequestRecord(**fields)
        self.state.record(record, final=final)
        self._report(record)

    def _read_stream(self, resp: Any, chunks: list[float], fields: dict[str, Any],
                     reply: list[str] | None = None) -> None:
        chat = self.state.config.api == "chat"
        marker = self.marker
        skip = len(marker)
        done = False
        usage = None
        nbytes = 0
        while True:
            line = resp.readline(b"\n")
            t = now_s()
            if not line:
                break
            nbytes += len(line)
            if line[:5] != b"data:":
                continue  # blank separators, comments, event: lines
            payload = line[5:].strip()
            at = payload.find(marker)
            # a conversation needs the reply's text: its chunks take the parsing path below
            if (reply is None and at >= 0 and payload[at + skip:at + skip + 1] != b'"'
                    and b'"usage":{' not in payload and b'"error"' not in payload):
                chunks.append(t)
                continue
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
                text = (choice.get("delta") or {}).get("content") if chat else choice.get("text")
                if text:
                    chunks.append(t)
                    if reply is not None:
                        reply.append(text)
                    break
        self.response_bytes = nbytes
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
            response_length=getattr(self, "response_bytes", 0),
            exception=None if r.ok else StreamError(r.error or "failed"),
            context={"stage": r.stage}, response=None, url=self.path)


def make_user_class(state: StageState | None, stage: str, url: str, timeout_s: float) -> type[StreamingUser]:
    """A concrete user class for one stage; the name depends only on the stage, so master and workers agree."""
    return type(f"SB_{re.sub(r'[^0-9A-Za-z]', '_', stage)}", (StreamingUser,),
                {"state": state, "host": url.rstrip("/"), "network_timeout": timeout_s,
                 "connection_timeout": min(timeout_s, 30.0), "abstract": False})
