"""bf16 against float32 on this CPU: TTFT and TPOT of the bundled model at one user, one vLLM CPU server per
dtype, the dtypes one after the other (docs/benchmarks.md, "bf16 on a CPU without bf16").

    .venv/bin/python scripts/bench_cpu_dtype.py [--dtypes bfloat16 float32] [--requests 4] [--prompt-words 60]

Each server is the one serve-bench launches (`--enforce-eager --max-model-len 2048`, the given `--dtype`);
each request streams 32 tokens with ignore_eos from a prompt of N words; the first request of each server is
reported with the rest (vLLM's first pass is slower once). Prints one line per dtype and what this CPU has
(serve_bench.environment.cpu_has_bf16).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time

import requests

from serve_bench.environment import cpu_has_bf16
from serve_bench.models import bundled
from serve_bench.serve.server import free_port


def one(url: str, prompt: str) -> tuple[float, float]:
    """(TTFT, mean gap between later tokens), seconds, of one streamed completion."""
    t0 = time.perf_counter()
    times = []
    body = {"model": "m", "prompt": prompt, "max_tokens": 32, "ignore_eos": True, "stream": True}
    with requests.post(f"{url}/v1/completions", json=body, stream=True, timeout=300) as resp:
        resp.raise_for_status()
        for line in resp.iter_lines():
            if line.startswith(b"data: ") and line != b"data: [DONE]":
                times.append(time.perf_counter())
    return times[0] - t0, (times[-1] - times[0]) / (len(times) - 1)


def measure(dtype: str, requests_n: int, prompt: str) -> None:
    port = free_port()
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(bundled.checkpoint_dir()),
           "--served-model-name", "m", "--port", str(port), "--enforce-eager", "--max-model-len", "2048",
           "--dtype", dtype]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ, "VLLM_CPU_KVCACHE_SPACE": "4"})
    url = f"http://127.0.0.1:{port}"
    try:
        start = time.perf_counter()
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"vLLM ({dtype}) exited with code {proc.returncode} before it was ready")
            try:
                if requests.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(1)
        ready = time.perf_counter() - start
        runs = [one(url, prompt) for _ in range(requests_n)]
        ttft = [round(t * 1000) for t, _ in runs]
        tpot = [round(g * 1000, 1) for _, g in runs]
        print(f"{dtype}: ready in {ready:.0f} s; TTFT ms {ttft} (median {statistics.median(ttft):.0f}); "
              f"TPOT ms {tpot} (median {statistics.median(tpot):.1f})", flush=True)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dtypes", nargs="+", default=["bfloat16", "float32"])
    ap.add_argument("--requests", type=int, default=4)
    ap.add_argument("--prompt-words", type=int, default=60)
    args = ap.parse_args()
    print(f"CPU bf16 arithmetic (AVX512-BF16 or AMX): {cpu_has_bf16()}", flush=True)
    bundled.ensure_converted()
    for dtype in args.dtypes:
        measure(dtype, args.requests, "word " * args.prompt_words)


if __name__ == "__main__":
    main()
