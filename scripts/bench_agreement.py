#!/usr/bin/env python
"""Does serve-bench measure what ``vllm bench serve`` measures?

Starts ONE vLLM CPU server on the bundled model (serve-bench's default engine
arguments: ``--max-model-len 2048``, plus the CPU defaults ``--enforce-eager``
and ``VLLM_CPU_KVCACHE_SPACE=4`` that VllmServer adds), then for each
concurrency runs the same closed-loop workload with both tools, alternating
which goes first:

    vllm bench serve   --backend openai-chat --endpoint /v1/chat/completions
                       --dataset-name random --random-input-len (128 - chat template overhead)
                       --random-output-len 64 --ignore-eos --max-concurrency C
                       --num-prompts N --request-rate inf
                       --ready-check-timeout-sec 120 (in vLLM 0.32 the "initial single prompt test
                       run" is only sent when this is > 0; the default 0 skips it, so no warm-up at all)
    serve-bench run    --url ... --profile <generated yaml>: api chat, 128 input tokens
                       (counted with the chat template, as the server counts them), 64 output,
                       ignore_eos; stage 1 sends one request alone (the same warm-up), stage 2
                       is the measured closed loop: C users, N requests

Both use the chat endpoint. vLLM's random dataset sizes the *raw* prompt, and
the server adds the chat template's tokens (SmolLM2's template adds a default
system prompt), so vLLM's input length is reduced by that overhead; the
prompt token totals both tools report (both take them from the server's
``usage``) and the server's own ``vllm:prompt_tokens_total`` counter are
compared to verify the lengths match.

Writes a comparison table (markdown) to stdout and everything to --out.

    .venv/bin/python scripts/bench_agreement.py --concurrency 4 16 --prompts 64 --out /tmp/sb-agreement
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import requests
import yaml

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
SERVE_BENCH = str(Path(PY).with_name("serve-bench"))
SERVED = "smollm2"

# `vllm` (the console script) fails with vllm-cpu (it looks up the distribution `vllm`);
# run the benchmark module the way its CLI does.
VLLM_BENCH = ("import sys; from vllm.utils.argparse_utils import FlexibleArgumentParser; "
              "from vllm.benchmarks.serve import add_cli_args, main; "
              "p = FlexibleArgumentParser(prog='vllm bench serve'); add_cli_args(p); "
              "main(p.parse_args(sys.argv[1:]))")

METRICS = [  # (label, summary key, compare against the target?)
    ("output throughput (tok/s)", "output_throughput", True),
    ("request throughput (req/s)", "request_throughput", False),
    ("median TTFT (ms)", "median_ttft_ms", True),
    ("p99 TTFT (ms)", "p99_ttft_ms", False),
    ("median TPOT (ms)", "median_tpot_ms", True),
    ("p99 TPOT (ms)", "p99_tpot_ms", False),
    ("median ITL (ms)", "median_itl_ms", False),
    ("median E2EL (ms)", "median_e2el_ms", False),
    ("mean E2EL (ms)", "mean_e2el_ms", False),
    ("mean TTFT (ms)", "mean_ttft_ms", False),
    ("duration (s)", "duration", False),
    ("total input tokens", "total_input_tokens", False),
    ("total output tokens", "total_output_tokens", False),
    ("completed", "completed", False),
]


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def server_counters(url: str) -> dict[str, float]:
    text = requests.get(f"{url}/metrics", timeout=10).text
    out: dict[str, float] = {}
    for name in ("vllm:prompt_tokens_total", "vllm:generation_tokens_total", "vllm:request_success_total"):
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                total += float(line.rsplit(" ", 1)[1])
        out[name] = total
    return out


def prime(url: str, model_path: str, in_len: int, out_len: int) -> None:
    """Untimed: the first forward passes of a fresh vLLM CPU server are slow; pay for them before measuring."""
    from concurrent.futures import ThreadPoolExecutor

    words = " ".join(["hello"] * (in_len - 40))

    def one(i: int) -> None:
        requests.post(f"{url}/v1/chat/completions", timeout=600, json={
            "model": SERVED, "messages": [{"role": "user", "content": f"{i} {words}"}], "max_tokens": out_len,
            "ignore_eos": True}).raise_for_status()

    for n in (16, 4):
        with ThreadPoolExecutor(n) as pool:
            list(pool.map(one, range(n)))


def run_vllm(url: str, model_path: str, out: Path, conc: int, prompts: int, in_len: int, out_len: int,
             tag: str) -> dict:
    result_dir = out / "vllm"
    result_dir.mkdir(parents=True, exist_ok=True)
    filename = f"{tag}.json"
    cmd = [PY, "-c", VLLM_BENCH, "--backend", "openai-chat", "--base-url", url, "--endpoint", "/v1/chat/completions",
           "--model", SERVED, "--tokenizer", model_path, "--dataset-name", "random",
           "--random-input-len", str(in_len), "--random-output-len", str(out_len), "--random-range-ratio", "0",
           "--ignore-eos", "--max-concurrency", str(conc), "--num-prompts", str(prompts), "--request-rate", "inf",
           "--seed", "0", "--ready-check-timeout-sec", "120",
           "--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", "50,99",
           "--save-result", "--save-detailed", "--result-dir", str(result_dir), "--result-filename", filename]
    log = out / f"{tag}.log"
    with open(log, "w") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, check=True, cwd=ROOT)
    data = json.loads((result_dir / filename).read_text())
    data["total_output_tokens"] = data.get("total_output_tokens", sum(data.get("output_lens") or []))
    return data


def run_serve_bench(url: str, model_path: str, out: Path, conc: int, prompts: int, in_len: int, out_len: int,
                    tag: str) -> dict:
    profile = {
        "name": f"agree-{tag}", "description": "agreement with vllm bench serve", "api": "chat",
        "input_tokens": in_len, "output_tokens": out_len, "ignore_eos": True, "seed": 0,
        "warmup": {"requests": 0}, "prompts": {"kind": "synthetic"}, "timeout_s": 600,
        "stages": [
            # vLLM bench serve's warm-up: one test prompt, alone, before the measured run
            {"kind": "concurrency", "name": "warmup", "users": 1, "requests": 1},
            {"kind": "concurrency", "name": f"c{conc}", "users": conc, "requests": prompts},
        ],
    }
    path = out / f"{tag}.yaml"
    path.write_text(yaml.safe_dump(profile, sort_keys=False))
    run_parent = out / f"{tag}-run"
    cmd = [SERVE_BENCH, "run", "--url", url, "--served-model", SERVED, "--tokenizer", model_path,
           "--profile", str(path), "--runs-dir", str(run_parent)]
    log = out / f"{tag}.log"
    with open(log, "w") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, check=True, cwd=ROOT,
                       env={**os.environ, "NO_COLOR": "1", "TERM": "dumb"})
    stage_files = sorted(run_parent.glob(f"*/*/stages/*-c{conc}.json"))
    if not stage_files:
        raise SystemExit(f"no stage file for c{conc} under {run_parent}; see {log}")
    return json.loads(stage_files[-1].read_text())["summary"]


def rel(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return (a - b) / b * 100.0


def fmt(v: object) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[4, 16])
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--input-len", type=int, default=128)
    ap.add_argument("--output-len", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=1, help="pairs per concurrency (order alternates)")
    ap.add_argument("--target-pct", type=float, default=5.0)
    ap.add_argument("--out", type=Path, default=Path("/tmp/sb-agreement"))
    args = ap.parse_args()

    from serve_bench.models.resolve import resolve
    from serve_bench.serve.server import ServerSpec, VllmServer
    from serve_bench.workload.prompts import SyntheticPromptSet

    out: Path = args.out / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out.mkdir(parents=True, exist_ok=True)
    model_path = str(resolve("default").path)
    overhead = SyntheticPromptSet(model_path, "chat", args.input_len).count("")
    vllm_in = args.input_len - overhead
    print(f"model {model_path}; chat template overhead {overhead} tokens -> vllm --random-input-len {vllm_in}",
          flush=True)

    rows: list[dict] = []
    spec = ServerSpec(Path(model_path), SERVED, out / "server.log", engine_args=["--max-model-len", "2048"])
    t0 = time.time()
    with VllmServer(spec) as server:
        url = server.url
        print(f"server ready at {url} in {time.time() - t0:.0f} s", flush=True)
        t1 = time.time()
        prime(url, model_path, args.input_len, args.output_len)
        print(f"server primed in {time.time() - t1:.0f} s", flush=True)
        k = 0
        for conc in args.concurrency:
            for rep in range(args.repeats):
                order = ["vllm", "serve-bench"] if k % 2 == 0 else ["serve-bench", "vllm"]
                k += 1
                for tool in order:
                    tag = f"{'vllm' if tool == 'vllm' else 'sb'}-c{conc}-r{rep}"
                    before_load = loadavg()
                    before = server_counters(url)
                    t = time.time()
                    if tool == "vllm":
                        s = run_vllm(url, model_path, out, conc, args.prompts, vllm_in, args.output_len, tag)
                    else:
                        s = run_serve_bench(url, model_path, out, conc, args.prompts, args.input_len,
                                            args.output_len, tag)
                    after = server_counters(url)
                    server.check_alive()
                    row = {"tool": tool, "concurrency": conc, "repeat": rep, "position": order.index(tool),
                           "wall_s": time.time() - t, "loadavg_before": before_load, "loadavg_after": loadavg(),
                           "server_prompt_tokens": after["vllm:prompt_tokens_total"]
                           - before["vllm:prompt_tokens_total"],
                           "server_generation_tokens": after["vllm:generation_tokens_total"]
                           - before["vllm:generation_tokens_total"],
                           "server_requests": after["vllm:request_success_total"]
                           - before["vllm:request_success_total"]}
                    for _, key, _ in METRICS:
                        row[key] = s.get(key)
                    rows.append(row)
                    print(f"{tag}: out {fmt(row['output_throughput'])} tok/s, ttft {fmt(row['median_ttft_ms'])} ms, "
                          f"tpot {fmt(row['median_tpot_ms'])} ms, input {row['total_input_tokens']} "
                          f"(server {row['server_prompt_tokens']:.0f} incl. warm-up), load {before_load} -> "
                          f"{row['loadavg_after']}", flush=True)
                    (out / "rows.json").write_text(json.dumps(rows, indent=2))

    # -- the comparison table ---------------------------------------------------------------------------------
    lines = []
    verdict = True
    for conc in args.concurrency:
        v = [r for r in rows if r["tool"] == "vllm" and r["concurrency"] == conc]
        b = [r for r in rows if r["tool"] == "serve-bench" and r["concurrency"] == conc]
        lines.append(f"\n### concurrency {conc}, {args.prompts} prompts, {args.input_len} in / {args.output_len} out "
                     f"({len(v)} run(s) each; mean over runs)\n")
        lines.append("| metric | vllm bench serve | serve-bench | serve-bench vs vLLM | target |")
        lines.append("|---|---|---|---|---|")
        for label, key, gated in METRICS:
            vv = [r[key] for r in v if r[key] is not None]
            bb = [r[key] for r in b if r[key] is not None]
            mv = sum(vv) / len(vv) if vv else None
            mb = sum(bb) / len(bb) if bb else None
            d = rel(mb, mv)
            ok = "" if not gated else ("met" if d is not None and abs(d) <= args.target_pct else "NOT met")
            verdict &= ok != "NOT met"
            lines.append(f"| {label} | {fmt(mv)} | {fmt(mb)} | {'–' if d is None else f'{d:+.1f}%'} | {ok} |")
        inflight = [[r["mean_e2el_ms"] * r["completed"] / 1000 / r["duration"] for r in x] for x in (v, b)]
        lines.append(f"| mean in flight (Σ E2EL / duration; = C if the client never idles) | "
                     f"{', '.join(f'{x:.3f}' for x in inflight[0])} | "
                     f"{', '.join(f'{x:.3f}' for x in inflight[1])} | | |")
        sp_v = [r["server_prompt_tokens"] for r in v]
        sp_b = [r["server_prompt_tokens"] for r in b]
        lines.append(f"| server-counted prompt tokens (incl. the 1 warm-up request) | {fmt(sp_v)} | {fmt(sp_b)} | | |")
        loads = ["; ".join(r["loadavg_before"] + " → " + r["loadavg_after"] for r in x) for x in (v, b)]
        lines.append(f"| load average before → after | {loads[0]} | {loads[1]} | | |")
    lines.append(f"\nTarget (|Δ| ≤ {args.target_pct:g}% on output throughput, median TTFT, median TPOT): "
                 f"{'met' if verdict else 'NOT met'}")
    lines.append("\nper run (in the order run):\n")
    lines.append("| tool | C | order in pair | out tok/s | median TTFT ms | p99 TTFT ms | median TPOT ms | "
                 "p99 TPOT ms | "
                 "duration s | load avg before → after |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        lines.append(f"| {r['tool']} | {r['concurrency']} | {'first' if r['position'] == 0 else 'second'} | "
                     f"{fmt(r['output_throughput'])} | {fmt(r['median_ttft_ms'])} | {fmt(r['p99_ttft_ms'])} | "
                     f"{fmt(r['median_tpot_ms'])} | {fmt(r['p99_tpot_ms'])} | {fmt(r['duration'])} | "
                     f"{r['loadavg_before']} → {r['loadavg_after']} |")
    table = "\n".join(lines)
    (out / "table.md").write_text(table + "\n")
    print(table)
    print(f"\nresults in {out}")


if __name__ == "__main__":
    main()
