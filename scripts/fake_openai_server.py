#!/usr/bin/env python
"""A minimal OpenAI-compatible streaming server that answers at once: a load-generator test fixture.

    POST /v1/chat/completions, /v1/completions   stream=true: N chunks of one "token" each
                                                  (N = max_tokens / max_completion_tokens, default 16),
                                                  then a usage chunk when stream_options.include_usage,
                                                  then ``data: [DONE]``; stream=false: one JSON body
    GET  /v1/models, /health

No model, no tokenizer: prompt_tokens is a word count of the prompt. Every
chunk is written as soon as it is built (no artificial delay), so the client
is the bottleneck. Chunks are pre-rendered byte templates to keep the
server's CPU per request low; one process, one event loop (aiohttp).

    python scripts/fake_openai_server.py --port 8999 [--model fake] [--default-tokens 16]
"""

from __future__ import annotations

import argparse
import time

from aiohttp import web

_CHAT_HEAD = b'data: {"id":"%s","object":"chat.completion.chunk","created":%d,"model":"%s","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n'  # noqa: E501
_CHAT_TOK = b'data: {"id":"%s","object":"chat.completion.chunk","created":%d,"model":"%s","choices":[{"index":0,"delta":{"content":" tok"},"finish_reason":null}]}\n\n'  # noqa: E501
_CHAT_LAST = b'data: {"id":"%s","object":"chat.completion.chunk","created":%d,"model":"%s","choices":[{"index":0,"delta":{"content":" tok"},"finish_reason":"length"}]}\n\n'  # noqa: E501
_CMPL_TOK = b'data: {"id":"%s","object":"text_completion","created":%d,"model":"%s","choices":[{"index":0,"text":" tok","finish_reason":null}]}\n\n'  # noqa: E501
_CMPL_LAST = b'data: {"id":"%s","object":"text_completion","created":%d,"model":"%s","choices":[{"index":0,"text":" tok","finish_reason":"length"}]}\n\n'  # noqa: E501
_USAGE = b'data: {"id":"%s","object":"%s","created":%d,"model":"%s","choices":[],"usage":{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d}}\n\n'  # noqa: E501
_DONE = b"data: [DONE]\n\n"


def make_app(model: str, default_tokens: int) -> web.Application:
    counter = [0]
    model_b = model.encode()

    def prompt_tokens(body: dict) -> int:
        if "messages" in body:
            return sum(len(str(m.get("content", "")).split()) for m in body["messages"])
        p = body.get("prompt", "")
        return len(p) if isinstance(p, list) else len(str(p).split())

    async def generate(request: web.Request, chat: bool) -> web.StreamResponse:
        body = await request.json()
        n = int(body.get("max_completion_tokens") or body.get("max_tokens") or default_tokens)
        n = max(1, n)
        p = prompt_tokens(body)
        counter[0] += 1
        rid = b"cmpl-%d" % counter[0]
        created = int(time.time())
        obj = b"chat.completion.chunk" if chat else b"text_completion"
        if not body.get("stream"):
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
        if chat:
            await resp.write(_CHAT_HEAD % args)
        tok_b = tok % args
        for _ in range(n - 1):
            await resp.write(tok_b)
        await resp.write(last % args)
        if (body.get("stream_options") or {}).get("include_usage"):
            await resp.write(_USAGE % (rid, obj, created, model_b, p, n, p + n))
        await resp.write(_DONE)
        await resp.write_eof()
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
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/completions", completions)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/health", health)
    return app


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8999)
    ap.add_argument("--model", default="fake")
    ap.add_argument("--default-tokens", type=int, default=16)
    args = ap.parse_args()
    try:
        import uvloop  # noqa: F401

        uvloop.install()
    except ImportError:
        pass
    web.run_app(make_app(args.model, args.default_tokens), host=args.host, port=args.port, access_log=None,
                print=None, backlog=1024)


if __name__ == "__main__":
    main()
