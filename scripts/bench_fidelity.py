#!/usr/bin/env python
"""Closed-loop fidelity against a server whose timing is known.

Starts scripts/fake_openai_server.py with ``--ttft-ms T --itl-ms I`` (every stream: the first
content chunk T ms after the request arrives, then one chunk every I ms; role chunk with the
first token, usage and [DONE] after the last) and ``--timing-log``, then for each concurrency N
runs the same closed loop with each tool in its own subprocess (chat API, ``--input-len``
prompt tokens, ``--output-len`` output tokens, ignore_eos, R = max(requests-per-user·N, 64)):

    serve-bench   one process: run_stage, a ``concurrency`` stage of N users and R requests,
                  after one request alone (warm-up); records kept in memory
    vllm bench    vllm.benchmarks.serve --max-concurrency N --num-prompts R --request-rate inf
                  --ignore-eos --save-detailed --ready-check-timeout-sec 60 (its one test
                  prompt alone first: the same warm-up)

Every figure is computed here, the same way for both tools, from per-request data (serve-bench:
RequestRecord send_s / first_token_s / last_token_s / end_s / output_tokens; vLLM: start_times,
ttfts, latencies, output_lens), against the truth T and I:

    TTFT p50          median TTFT, and its error against T (ms, %)
    TPOT p50          median (E2EL − TTFT)/(tokens − 1), and its error against I
    in flight / N     Σ E2EL / duration / N, duration = last response − first send (1.0: no idle slot)
    out tok/s         output tokens / duration, and its ratio to the bound N·tokens/(T + (tokens−1)·I)
    first-N spread    max − min of the first N send times (how long the loop took to fill)
    client CPU s      time.process_time() around the load phase in the tool's process
    server TTFT err   from the server's own log: first write − receipt − T (p50/p99, ms): the part
                      of the error that is the fixture's, not the client's

serve-bench's summary keys ``steady_output_throughput`` and ``mean_in_flight`` are shown when the
installed serve-bench has them. ``--pin`` puts the clients on core 0 and the server on core 1.

    .venv/bin/python scripts/bench_fidelity.py --pin --concurrency 1 16 64 256 1024 --repeats 2 --out /tmp/sb-fidelity
    .venv/bin/python scripts/bench_fidelity.py --pin --open-loop-rate 500 --open-loop-requests 5000

The second form runs one serve-bench ``rate`` stage instead (constant arrivals, max_concurrency
1024) and reports the send lag (send_s − intended_send_s) p50/p99/max; target p99 ≤ 2 ms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from fake_openai_server import running  # noqa: E402 - this directory is on sys.path when run as a script

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
MODEL = "fake"


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def pct(values: list[float], p: float) -> float | None:
    import numpy as np

    return float(np.percentile(values, p)) if values else None


def figures(reqs: list[dict], a: argparse.Namespace) -> dict:
    """Per-request dicts (send, ttft, e2el, end in s; out tokens; ok) -> the table's figures, both tools alike."""
    ok = [r for r in reqs if r["ok"]]
    if not ok:
        raise SystemExit(f"none of {len(reqs)} requests completed")
    sends = sorted(r["send"] for r in reqs)
    duration = max(r["end"] for r in reqs if r["end"] is not None) - sends[0]
    n, tokens = a.concurrency, a.output_len
    ttft = statistics.median(r["ttft"] for r in ok) * 1000
    tpot = statistics.median((r["e2el"] - r["ttft"]) / (r["out"] - 1) for r in ok if r["out"] > 1) * 1000
    out = sum(r["out"] for r in ok)
    bound = n * tokens / ((a.ttft_ms + (tokens - 1) * a.itl_ms) / 1000)
    return {"completed": len(ok), "failed": len(reqs) - len(ok), "duration": duration,
            "ttft_ms": ttft, "ttft_err_ms": ttft - a.ttft_ms, "ttft_err_pct": (ttft - a.ttft_ms) / a.ttft_ms * 100,
            "tpot_ms": tpot, "tpot_err_ms": tpot - a.itl_ms,
            "in_flight_per_n": sum(r["e2el"] for r in ok) / duration / n,
            "output_throughput": out / duration, "bound_ratio": out / duration / bound,
            "first_n_spread_ms": (sends[min(n, len(sends)) - 1] - sends[0]) * 1000}


# -- inner: one tool, one run, in its own (pinned) process ---------------------------------------------------------

def _profile(a: argparse.Namespace, stage: dict):
    from serve_bench.workload.profiles import profile_from_data

    return profile_from_data({"name": "fidelity", "api": "chat", "input_tokens": a.input_len,
                              "output_tokens": a.output_len, "ignore_eos": True, "warmup": {"requests": 0},
                              "timeout_s": 300, "stages": [stage]})


def _run_serve_bench(a: argparse.Namespace, stage_data: dict, total: int):
    from serve_bench.load.runner import _prompts, run_stage  # imports Locust (gevent monkey-patching) first

    profile = _profile(a, stage_data)
    prompts = _prompts(profile, a.model_path)
    prompts.prepare(range(total + 1))  # built here, outside the timed phase (run_stage would build them anyway)
    stage = profile.expanded_stages()[0]
    warm = _profile(a, {"kind": "concurrency", "name": "warm", "users": 1, "requests": 1}).expanded_stages()[0]
    run_stage(warm, url=a.url, model=MODEL, profile=profile, prompts=prompts, prompt_offset=total)
    records: list = []
    cpu0 = time.process_time()
    res = run_stage(stage, url=a.url, model=MODEL, profile=profile, prompts=prompts, sink=records.append)
    return res, records, time.process_time() - cpu0


def inner_serve_bench(a: argparse.Namespace) -> dict:
    res, records, cpu = _run_serve_bench(a, {"kind": "concurrency", "users": a.concurrency,
                                             "requests": a.requests}, a.requests)
    reqs = [{"send": r.send_s, "ok": r.ok and r.first_token_s is not None,
             "ttft": (r.first_token_s or r.send_s) - r.send_s, "e2el": (r.last_token_s or r.send_s) - r.send_s,
             "end": max((t for t in (r.end_s, r.last_token_s) if t is not None), default=None),
             "out": r.output_tokens or 0} for r in records]
    s = res.summary
    return {**figures(reqs, a), "cpu_s": cpu, "tool_output_throughput": s.get("output_throughput"),
            "steady_output_throughput": s.get("steady_output_throughput"), "mean_in_flight": s.get("mean_in_flight"),
            "warnings": res.warnings}


def inner_vllm(a: argparse.Namespace) -> dict:
    from vllm.benchmarks import serve as vserve
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    timing: dict = {}
    orig = vserve.benchmark

    async def timed(*args, **kwargs):
        cpu0 = time.process_time()  # includes its one test prompt (one request's CPU)
        out = await orig(*args, **kwargs)
        timing["cpu_s"] = time.process_time() - cpu0
        return out

    vserve.benchmark = timed
    p = FlexibleArgumentParser(prog="vllm bench serve")
    vserve.add_cli_args(p)
    rdir = Path(a.tmp)
    vserve.main(p.parse_args([
        "--backend", "openai-chat", "--base-url", a.url, "--endpoint", "/v1/chat/completions", "--model", MODEL,
        "--tokenizer", a.model_path, "--dataset-name", "random", "--random-input-len", str(a.input_len),
        "--random-output-len", str(a.output_len), "--random-range-ratio", "0", "--ignore-eos", "--seed", "0",
        "--max-concurrency", str(a.concurrency), "--num-prompts", str(a.requests), "--request-rate", "inf",
        "--ready-check-timeout-sec", "60", "--disable-tqdm", "--save-result", "--save-detailed",
        "--result-dir", str(rdir), "--result-filename", "vllm.json"]))
    d = json.loads((rdir / "vllm.json").read_text())
    reqs = [{"send": st, "ok": not err and ttft > 0, "ttft": ttft, "e2el": lat, "end": st + lat, "out": out or 0}
            for st, ttft, lat, out, err in zip(d["start_times"], d["ttfts"], d["latencies"], d["output_lens"],
                                               d["errors"])]
    return {**figures(reqs, a), "cpu_s": timing["cpu_s"], "tool_output_throughput": d["output_throughput"],
            "tool_duration": d["duration"], "tool_median_ttft_ms": d.get("median_ttft_ms"),
            "tool_median_tpot_ms": d.get("median_tpot_ms")}


def inner_open_loop(a: argparse.Namespace) -> dict:
    res, records, cpu = _run_serve_bench(a, {"kind": "rate", "rate_rps": a.open_loop_rate, "arrivals": "constant",
                                             "max_concurrency": 1024, "requests": a.requests}, a.requests)
    lags = [(r.send_s - r.intended_send_s) * 1000 for r in records if r.intended_send_s is not None]
    sends = sorted(r.send_s for r in records)
    ttfts = [(r.first_token_s - r.send_s) * 1000 for r in records if r.ok and r.first_token_s is not None]
    s = res.summary
    return {"requests": len(records), "completed": s["completed"], "failed": s["failed"], "cpu_s": cpu,
            "send_rate": (len(sends) - 1) / (sends[-1] - sends[0]) if len(sends) > 1 else None,
            "lag_p50_ms": pct(lags, 50), "lag_p99_ms": pct(lags, 99), "lag_max_ms": max(lags, default=None),
            "ttft_ms": pct(ttfts, 50), "summary_p99_send_lag_ms": s.get("p99_send_lag_ms"),
            "generator_saturated": res.generator_saturated, "warnings": res.warnings}


# -- outer ---------------------------------------------------------------------------------------------------------

def server_figures(log: Path, offset: int, a: argparse.Namespace) -> dict:
    """The fixture's own timing for the requests logged since ``offset``, the first (the warm-up) left out."""
    with open(log, "rb") as f:
        f.seek(offset)
        lines = [json.loads(x) for x in f.read().splitlines()[1:] if x.strip()]
    err = [(d["first"] - d["recv"]) * 1000 - a.ttft_ms for d in lines]
    itl = [(d["last"] - d["first"]) / (d["n"] - 1) * 1000 - a.itl_ms for d in lines if d["n"] > 1]
    return {"server_requests": len(lines), "server_ttft_err_p50_ms": pct(err, 50),
            "server_ttft_err_p99_ms": pct(err, 99), "server_tpot_err_p50_ms": pct(itl, 50)}


def measure(tool: str, a: argparse.Namespace, url: str, n: int, requests: int, tmp: Path, log: Path) -> dict:
    tmp.mkdir(parents=True, exist_ok=True)
    out = tmp / "result.json"
    cmd = [*(["taskset", "-c", "0"] if a.pin else []), PY, __file__, "--inner", tool, "--url", url,
           "--model-path", a.model_path, "--concurrency", str(n), "--requests", str(requests),
           "--ttft-ms", str(a.ttft_ms), "--itl-ms", str(a.itl_ms), "--input-len", str(a.input_len),
           "--output-len", str(a.output_len), "--open-loop-rate", str(a.open_loop_rate or 0),
           "--tmp", str(tmp), "--result", str(out)]
    offset, before = log.stat().st_size, loadavg()
    with open(tmp / "log.txt", "w") as f:
        subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, check=True, cwd=ROOT)
    r = {"tool": tool, "concurrency": n, "requests": requests, **json.loads(out.read_text())}
    r |= server_figures(log, offset, a)
    r["loadavg_before"], r["loadavg_after"] = before, loadavg()
    return r


def fmt(v: object, spec: str = ".1f") -> str:
    return "–" if v is None else format(v, spec) if isinstance(v, (int, float)) else str(v)


def closed_table(rows: list[dict], a: argparse.Namespace) -> str:
    e2el = a.ttft_ms + (a.output_len - 1) * a.itl_ms
    lines = [f"\ntruth: TTFT {a.ttft_ms:g} ms, TPOT {a.itl_ms:g} ms, E2EL {e2el:g} ms, "
             f"bound N·{a.output_len}/{e2el / 1000:g} s tok/s; chat, {a.input_len} in / {a.output_len} out; "
             f"{'client core 0, server core 1' if a.pin else 'unpinned'}\n",
             "| tool | N | R | run | TTFT p50 ms (err) | TPOT p50 ms (err) | in flight / N | out tok/s (/ bound) | "
             "first-N spread ms | client CPU s | server TTFT err p50/p99 ms | failed | sb steady tok/s | "
             "sb mean in flight |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['tool']} | {r['concurrency']} | {r['requests']} | {r['repeat']} | {r['ttft_ms']:.1f} "
            f"({r['ttft_err_ms']:+.1f}, {r['ttft_err_pct']:+.1f}%) | {r['tpot_ms']:.2f} ({r['tpot_err_ms']:+.2f}) | "
            f"{r['in_flight_per_n']:.3f} | {r['output_throughput']:.0f} ({r['bound_ratio']:.3f}) | "
            f"{r['first_n_spread_ms']:.1f} | {r['cpu_s']:.2f} | {fmt(r['server_ttft_err_p50_ms'], '.2f')} / "
            f"{fmt(r['server_ttft_err_p99_ms'], '.2f')} | {r['failed']} | "
            f"{fmt(r.get('steady_output_throughput'), '.0f')} | {fmt(r.get('mean_in_flight'), '.1f')} |")
    return "\n".join(lines)


def open_table(r: dict, a: argparse.Namespace) -> str:
    verdict = "met" if r["lag_p99_ms"] is not None and r["lag_p99_ms"] <= 2.0 else "NOT met"
    return "\n".join([
        f"\nserve-bench open loop: constant arrivals at {a.open_loop_rate:g} req/s, {r['requests']} requests, "
        f"max_concurrency 1024; truth TTFT {a.ttft_ms:g} ms, ITL {a.itl_ms:g} ms\n",
        "| send lag p50 ms | p99 ms | max ms | summary p99 ms | achieved send rate | TTFT p50 ms | "
        "server TTFT err p50/p99 ms | client CPU s | failed | saturated |", "|---|---|---|---|---|---|---|---|---|---|",
        f"| {fmt(r['lag_p50_ms'], '.2f')} | {fmt(r['lag_p99_ms'], '.2f')} | {fmt(r['lag_max_ms'], '.2f')} | "
        f"{fmt(r['summary_p99_send_lag_ms'], '.2f')} | {fmt(r['send_rate'], '.1f')} | {fmt(r['ttft_ms'])} | "
        f"{fmt(r['server_ttft_err_p50_ms'], '.2f')} / {fmt(r['server_ttft_err_p99_ms'], '.2f')} | {r['cpu_s']:.2f} | "
        f"{r['failed']} | {r['generator_saturated']} |",
        f"\nTarget (send lag p99 ≤ 2 ms): {verdict}"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64, 256, 1024])
    ap.add_argument("--requests-per-user", type=int, default=4, help="R = max(this · N, 64)")
    ap.add_argument("--ttft-ms", type=float, default=100.0)
    ap.add_argument("--itl-ms", type=float, default=20.0)
    ap.add_argument("--output-len", type=int, default=32)
    ap.add_argument("--input-len", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=1, help="runs per tool and N, order alternating")
    ap.add_argument("--tools", default="serve-bench,vllm")
    ap.add_argument("--pin", action="store_true", help="clients on core 0, the fake server on core 1 (taskset)")
    ap.add_argument("--open-loop-rate", type=float, default=None, help="run the open-loop send-lag check instead")
    ap.add_argument("--open-loop-requests", type=int, default=5000)
    ap.add_argument("--model-path", default=None, help="tokenizer for prompts (default: the bundled model)")
    ap.add_argument("--out", type=Path, default=Path("/tmp/sb-fidelity"))
    ap.add_argument("--inner", choices=["serve-bench", "vllm", "open-loop"], help=argparse.SUPPRESS)
    ap.add_argument("--requests", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--tmp", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    a = ap.parse_args()

    if a.inner:
        a.concurrency = a.concurrency[0]
        r = {"serve-bench": inner_serve_bench, "vllm": inner_vllm, "open-loop": inner_open_loop}[a.inner](a)
        Path(a.result).write_text(json.dumps(r))
        return

    if a.model_path is None:
        from serve_bench.models.resolve import resolve

        a.model_path = str(resolve("default").path)
    tools = [t.strip() for t in a.tools.split(",") if t.strip()]
    out = a.out / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out.mkdir(parents=True, exist_ok=True)
    timing_log = out / "server_timing.jsonl"
    timing_log.touch()
    rows: list[dict] = []
    fake = running(out / "fake_server.log", cpus="1" if a.pin else None, model=MODEL,
                   extra=["--ttft-ms", str(a.ttft_ms), "--itl-ms", str(a.itl_ms), "--timing-log", str(timing_log)])
    with fake as (url, _):
        if a.open_loop_rate:
            r = measure("open-loop", a, url, 1024, a.open_loop_requests, out / "open-loop", timing_log)  # N: max_conc.
            rows.append(r)
            table = open_table(r, a)
        else:
            k = 0
            for n in a.concurrency:
                requests_n = max(a.requests_per_user * n, 64)
                for rep in range(a.repeats):
                    order = tools if k % 2 == 0 else tools[::-1]
                    k += 1
                    for tool in order:
                        r = measure(tool, a, url, n, requests_n, out / f"{tool}-c{n}-r{rep}", timing_log)
                        r["repeat"] = rep
                        rows.append(r)
                        print(f"{tool} N={n} #{rep}: TTFT {r['ttft_ms']:.1f} ms ({r['ttft_err_pct']:+.1f}%), "
                              f"TPOT {r['tpot_ms']:.2f} ms, in flight/N {r['in_flight_per_n']:.3f}, "
                              f"{r['output_throughput']:.0f} tok/s ({r['bound_ratio']:.3f} of bound), "
                              f"CPU {r['cpu_s']:.2f} s, failed {r['failed']}, load {r['loadavg_before']} -> "
                              f"{r['loadavg_after']}", flush=True)
                        (out / "rows.json").write_text(json.dumps(rows, indent=2))
            table = closed_table(rows, a)
    (out / "rows.json").write_text(json.dumps(rows, indent=2))
    (out / "table.md").write_text(table + "\n")
    print(table)
    print(f"\nresults in {out}")


if __name__ == "__main__":
    main()
