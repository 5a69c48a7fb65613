"""Closed-loop warm-up requests finish before any measured request is sent."""

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.unit


def test_measured_requests_wait_for_warmup(tmp_path):
    # Against the fake streaming server, in a subprocess so gevent does not patch pytest.
    script = textwrap.dedent('''
        import sys, threading
        sys.path.insert(0, sys.argv[1])
        from fake_openai_check import Handler  # imports Locust: gevent first
        from http.server import ThreadingHTTPServer
        from serve_bench.load.runner import run_stage
        from serve_bench.load.profiles import profile_from_data
        from serve_bench.load.prompts import PromptSet

        class Fixed(PromptSet):
            def text(self, index):
                return "hello"

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}"
        prof = profile_from_data({"name": "w", "input_tokens": 8, "output_tokens": 3,
                                  "warmup": {"requests": 2},
                                  "stages": [{"kind": "concurrency", "users": 4, "requests": 8}]}, "t")
        records = []
        r = run_stage(prof.expanded_stages()[0], url=url, model="ok", profile=prof,
                      prompts=Fixed("chat"), sink=records.append)
        server.shutdown()
        warm = [x for x in records if x.warmup]
        measured = [x for x in records if not x.warmup]
        assert len(warm) == 2 and len(measured) == 8, (len(warm), len(measured))
        assert min(m.send_s for m in measured) >= max(w.end_s for w in warm), "a measured request met the warm-up"
        assert r.summary["completed"] == 8
        print("OK")
    ''')
    out = subprocess.run([sys.executable, "-c", script, str(__import__("pathlib").Path(__file__).parent)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "OK" in out.stdout, out.stdout + out.stderr
