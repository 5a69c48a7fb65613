"""Run the streaming user against a fake OpenAI-compatible server; print the records as JSON.

Run in a subprocess by test_user.py, because importing Locust monkey-patches
the whole process with gevent. The fake exists to exercise the client's own
handling of broken streams, which a healthy vLLM never produces: the model
name in the request picks the behaviour.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from serve_bench.load.profiles import profile_from_data
from serve_bench.load.prompts import JsonlPromptSet
from serve_bench.load.runner import run_stage  # imports Locust: gevent first

GAP_S = 0.1


def chunk(text: str) -> bytes:
    return b"data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": text}}]}).encode() + b"\n\n"


USAGE = b'data: {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3}}\n\n'


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
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


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    with open(sys.argv[1], "w") as f:
        f.write('{"prompt": "hello"}\n')
    prof = profile_from_data({"name": "fake", "input_tokens": 8, "output_tokens": 3, "timeout_s": 1.5,
                              "stages": [{"kind": "concurrency", "users": 1, "requests": 2}]})
    prompts = JsonlPromptSet(sys.argv[1], "chat")
    out = {}
    for mode in ["ok", "http500", "disconnect", "malformed", "nousage", "slow"]:
        records = []
        result = run_stage(prof.expanded_stages()[0], url=url, model=mode, profile=prof, prompts=prompts,
                           sink=records.append)
        out[mode] = {"records": [r.model_dump() for r in records], "summary": result.summary,
                     "locust_requests": result.locust_requests, "locust_failures": result.locust_failures}
    server.shutdown()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
