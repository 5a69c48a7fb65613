"""`serve-bench bench` against `vllm bench serve` (issue 21): one command line, both tools, the known-timing
engine, with the engine's own timings as the truth.

    .venv/bin/python scripts/bench_vllm_bench.py [--concurrency 1 16 64] [--prompts 200] [--out /tmp/sb-vb]
    .venv/bin/python scripts/bench_vllm_bench.py --real [--concurrency 1 16 64] [--prompts 64]
    .venv/bin/python scripts/bench_vllm_bench.py --capacity [--prompts 200 1000]

Per concurrency, both tools run `--backend openai --dataset-name random --random-input-len 32
--random-output-len 16 --ignore-eos --max-concurrency C --num-prompts N` against one engine (step 10 ms + 1 ms
per running sequence), in turns (vLLM first at odd concurrencies, serve-bench first at even ones). The truth
is the engine's per-request log over the same requests: TTFT from its receipt of the request to its first
token (nominal, as scheduled), TPOT from first to last token over tokens − 1, output throughput as tokens over
the span from the first receipt to the last token. Prints a Markdown table.

``--real``: the same against a real vLLM CPU server on the bundled model (started here with serve-bench's
engine arguments for this host); the server's own view beside each tool: its mean TTFT and mean TPOT over the
tool's requests, from the change in its ``vllm:time_to_first_token_seconds`` and
``vllm:request_time_per_output_token_seconds`` histograms (sum over count: exact means, no bucketing).

``--capacity``: each client's CPU cost per request, as a subprocess against an engine fast enough not to be
the limit (step 1 ms + 0.05 ms per running sequence), at concurrency 64, 16 output tokens: the user + system
CPU time of the tool's whole process tree (every process in it polled with psutil every 20 ms, its last
reading kept: ``RUSAGE_CHILDREN`` would miss a child that its parent never waits for) at two request counts,
the difference over the difference in requests, so start-up (imports, tokenizer, the run directory) cancels.
Requests per core-second = 1 / that.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from click.testing import CliRunner

from serve_bench.cli.main import cli
from serve_bench.models.resolve import resolve
from serve_bench.observe.server_metrics import fetch, parse
from serve_bench.simengine.params import EngineParams
from serve_bench.simengine.server import read_log, running

ENGINE = EngineParams(step_ms=10, per_seq_ms=1)
FAST_ENGINE = EngineParams(step_ms=1, per_seq_ms=0.05)
SERVED = "smollm2"
VLLM = ("import sys; from vllm.benchmarks.serve import add_cli_args, main; "
        "from vllm.utils.argparse_utils import FlexibleArgumentParser; p = FlexibleArgumentParser(); "
        "add_cli_args(p); main(p.parse_args(sys.argv[1:]))")


def truth(log: list[dict]) -> dict[str, float]:
    ttft = [r["first_token_s"] - r["recv_s"] for r in log]
    tpot = [(r["last_token_s"] - r["first_token_s"]) / (r["output_tokens"] - 1) for r in log if r["output_tokens"] > 1]
    span = max(r["last_token_s"] for r in log) - min(r["recv_s"] for r in log)
    return {"output_throughput": sum(r["output_tokens"] for r in log) / span,
            "median_ttft_ms": statistics.median(ttft) * 1000, "median_tpot_ms": statistics.median(tpot) * 1000}


def bench_args(url: str, model: str, tokenizer: str, c: int, prompts: int, result_dir: Path) -> list[str]:
    return ["--backend", "openai", "--base-url", url, "--model", model, "--tokenizer", tokenizer,
            "--dataset-name", "random", "--random-input-len", "32", "--random-output-len", "16",
            "--ignore-eos", "--max-concurrency", str(c), "--num-prompts", str(prompts), "--seed", "1",
            "--save-result", "--result-dir", str(result_dir), "--result-filename", "r.json"]


def tree_cpu_s(cmd: list[str]) -> float:
    """Run ``cmd``; the user + system CPU seconds of it and every process it started."""
    import psutil

    proc = psutil.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                        env={**os.environ, "HF_HUB_OFFLINE": "1"})
    last: dict[int, float] = {}
    while proc.poll() is None:
        try:
            for p in [proc, *proc.children(recursive=True)]:
                with_times = p.cpu_times()
                last[p.pid] = with_times.user + with_times.system
        except psutil.Error:
            pass
        time.sleep(0.02)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[:4]} failed ({proc.returncode})")
    return sum(last.values())


def run_tool(tool: str, args: list[str]) -> None:
    if tool == "vllm":
        subprocess.run([sys.executable, "-c", VLLM, *args], check=True, capture_output=True,
                       env={**os.environ, "HF_HUB_OFFLINE": "1"})
    else:
        res = CliRunner().invoke(cli, ["bench", *args])
        assert res.exit_code == 0, res.output


def server_means(url: str) -> dict[str, float]:
    """The server's TTFT and per-request TPOT histograms' sums and counts, as its /metrics has them now."""
    samples = parse(fetch(url, None))
    return {name: sum(samples.get(name, {}).values()) for name in (
        "vllm:time_to_first_token_seconds_sum", "vllm:time_to_first_token_seconds_count",
        "vllm:request_time_per_output_token_seconds_sum", "vllm:request_time_per_output_token_seconds_count")}


def real(a: argparse.Namespace, out: Path) -> None:
    from serve_bench.serve.server import CPU_DEFAULT_ENV, ServerSpec, VllmServer, engine_args_for, vllm_build

    model = resolve("default").path
    spec = ServerSpec(model_path=model, served_name=SERVED, log_path=out / "server.log",
                      engine_args=engine_args_for(vllm_build(), ["--max-model-len", "2048"]), env=CPU_DEFAULT_ENV)
    print(f"server: {' '.join(spec.engine_args)}")
    print("| concurrency | tool | output tok/s | median TTFT ms | median TPOT ms | mean TTFT, TPOT ms | "
          "server's mean TTFT, TPOT ms |")
    print("|---|---|---|---|---|---|---|")
    with VllmServer(spec) as srv:
        warm = bench_args(srv.url, SERVED, str(model), 4, 8, out / "warm")
        run_tool("vllm", warm)  # the first requests pay one-time costs: neither tool measures them
        for i, c in enumerate(a.concurrency):
            for tool in (["vllm", "serve-bench"] if i % 2 == 0 else ["serve-bench", "vllm"]):
                before = server_means(srv.url)
                run_tool(tool, bench_args(srv.url, SERVED, str(model), c, a.prompts[0], out / f"real-c{c}-{tool}"))
                after = server_means(srv.url)
                d = {k: after[k] - before.get(k, 0.0) for k in after}
                s_ttft = d["vllm:time_to_first_token_seconds_sum"] / d["vllm:time_to_first_token_seconds_count"]
                s_tpot = (d["vllm:request_time_per_output_token_seconds_sum"]
                          / d["vllm:request_time_per_output_token_seconds_count"])
                r = json.loads((out / f"real-c{c}-{tool}" / "r.json").read_text())
                print(f"| {c} | {tool} | {r['output_throughput']:.1f} | {r['median_ttft_ms']:.1f} | "
                      f"{r['median_tpot_ms']:.2f} | {r['mean_ttft_ms']:.1f}, {r['mean_tpot_ms']:.2f} | "
                      f"{s_ttft * 1000:.1f}, {s_tpot * 1000:.2f} |", flush=True)


def capacity(a: argparse.Namespace, out: Path) -> None:
    if len(a.prompts) != 2:
        raise SystemExit("--capacity takes two request counts: --prompts SMALL LARGE")
    small, large = a.prompts
    tokenizer = str(resolve("default").path)
    print("| tool | CPU s at " + f"{small} | CPU s at {large} | CPU ms per request | requests per core-second |")
    print("|---|---|---|---|---|")
    for tool in ("vllm", "serve-bench", "vllm", "serve-bench"):
        cpu = []
        for n in (small, large):
            with running(FAST_ENGINE, log_path=out / f"cap-{tool}-{n}.jsonl", model="m") as (url, _):
                args = bench_args(url, "m", tokenizer, 64, n, out / f"cap-{tool}-{n}")
                cmd = [sys.executable, "-c", VLLM] if tool == "vllm" else [sys.executable, "-m", "serve_bench",
                                                                             "bench"]
                cpu.append(tree_cpu_s([*cmd, *args]))
        per = (cpu[1] - cpu[0]) / (large - small)
        print(f"| {tool} | {cpu[0]:.2f} | {cpu[1]:.2f} | {per * 1000:.2f} | {1 / per:.0f} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    ap.add_argument("--prompts", type=int, nargs="+", default=None)
    ap.add_argument("--real", action="store_true", help="a real vLLM CPU server instead of the engine")
    ap.add_argument("--capacity", action="store_true", help="each client's CPU cost per request")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    out = a.out or Path(tempfile.mkdtemp(prefix="sb-vb-"))
    out.mkdir(parents=True, exist_ok=True)
    if a.real:
        a.prompts = a.prompts or [64]
        real(a, out)
        print(f"\nresults: {out}")
        return
    if a.capacity:
        a.prompts = a.prompts or [200, 1000]
        capacity(a, out)
        print(f"\nresults: {out}")
        return
    a.prompts = a.prompts or [200]
    tokenizer = str(resolve("default").path)
    print("| concurrency | tool | output tok/s | median TTFT ms | median TPOT ms | truth: tok/s, TTFT, TPOT |")
    print("|---|---|---|---|---|---|")
    for i, c in enumerate(a.concurrency):
        order = ["vllm", "serve-bench"] if i % 2 == 0 else ["serve-bench", "vllm"]
        for tool in order:
            log = out / f"c{c}-{tool}.jsonl"
            with running(ENGINE, log_path=log, model="m") as (url, _):
                run_tool(tool, bench_args(url, "m", tokenizer, c, a.prompts[0], out / f"c{c}-{tool}"))
            r = json.loads((out / f"c{c}-{tool}" / "r.json").read_text())
            t = truth(read_log(log))
            print(f"| {c} | {tool} | {r['output_throughput']:.1f} | {r['median_ttft_ms']:.1f} | "
                  f"{r['median_tpot_ms']:.2f} | {t['output_throughput']:.1f}, {t['median_ttft_ms']:.1f}, "
                  f"{t['median_tpot_ms']:.2f} |", flush=True)
    print(f"\nresults: {out}")


if __name__ == "__main__":
    main()
