#!/usr/bin/env python
"""How much load can ONE serve-bench load-generator process produce? Beside ``vllm bench serve``'s client.

Starts scripts/fake_openai_server.py (answers at once: ``--output-len`` chunks of one token each,
usage, [DONE]) pinned to core 1, then drives it from core 0 with

    serve-bench   one process (workers=0: Locust in-process, FastHttpUser/gevent), closed loop,
                  ``--concurrency`` users, ``--requests`` requests (+1 warm-up request first), via run_stage,
                  every record written to a JSONL file as it finishes (as ``serve-bench run`` did before issue 17)
    serve-bench-process
                  as ``serve-bench run`` sends since issue 17: an orchestrating process that reads every record
                  back from the file, and its load process (python -m serve_bench.load.driver) that sends, both
                  on the client's cores; ``--workers N`` adds N local worker processes under the load process
    vllm bench    vllm.benchmarks.serve (aiohttp/asyncio), --max-concurrency C, --num-prompts N,
                  --request-rate inf, --dataset-name random, --ignore-eos

both with the chat endpoint, the same input/output lengths and concurrency. Each client runs
in its own pinned subprocess (``taskset -c 0``); the figures are taken inside that process
around the load phase only (imports, tokenizer and prompt generation excluded):

    req/s, chunks/s     completed requests and streamed content chunks / the tool's own duration
    client CPU s        time.process_time() around the load phase (user + system, all threads)
    CPU ms / request    client CPU s / requests
    server CPU %        the fake server's CPU (from /proc) / wall time of the load phase: near 100 %
                        means the fixture, not the client, was the bottleneck

    .venv/bin/python scripts/bench_loadgen.py --concurrency 64 --requests 4000 --repeats 2
    .venv/bin/python scripts/bench_loadgen.py --tools serve-bench --workers 2 --client-core 0,1 --server-core 0,1
    .venv/bin/python scripts/bench_loadgen.py --tools serve-bench --exporter     # the exporter's cost
    .venv/bin/python scripts/bench_loadgen.py --tools vllm,serve-bench,serve-bench-process   # after the split
    .venv/bin/python scripts/bench_loadgen.py --tools serve-bench,serve-bench-process:1      # one local worker
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from fake_openai_server import running  # noqa: E402 - this directory is on sys.path when run as a script

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
MODEL = "fake"
# serve-bench: run_stage in this process (the load loop alone, as before issue 17); serve-bench-process: as
# `serve-bench run` sends since issue 17 (an orchestrator and its load process, both on the client's cores)
TOOLS = ("vllm", "serve-bench", "serve-bench-process")


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- inner: runs pinned, one per measurement ---------------------------------------------------------------------

SCRAPE_LOOP = """
import sys, time, urllib.request
while True:
    urllib.request.urlopen(sys.argv[1], timeout=5).read()
    time.sleep(1)
"""


def _children_cpu_s() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def inner_serve_bench(a: argparse.Namespace) -> dict:
    from serve_bench.load.runner import (
        _prompts,
        run_stage,  # imports Locust (gevent monkey-patching) first
    )
    from serve_bench.workload.profiles import profile_from_data

    profile = profile_from_data({
        "name": "loadgen", "api": "chat", "input_tokens": a.input_len, "output_tokens": a.output_len,
        "ignore_eos": True, "warmup": {"requests": 0}, "timeout_s": 300,
        "stages": [{"kind": "concurrency", "users": a.concurrency, "requests": a.requests}]})
    prompts = _prompts(profile, a.model_path)
    prompts.prepare(range(a.requests + 1))  # built here, outside the timed phase (run_stage would build them anyway)
    # warm-up: one request alone (as vLLM's test prompt), then the measured stage
    warm = profile.expanded_stages()[0].model_copy(update={"name": "warm", "users": 1, "requests": 1})
    run_stage(warm, url=a.url, model=MODEL, profile=profile, prompts=prompts, prompt_offset=a.requests)
    stage = profile.expanded_stages()[0]
    chunks = [0]
    from serve_bench.measure.records import RecordWriter

    # as `serve-bench run` does: every record appended (and flushed) to records.jsonl as it finishes
    writer = RecordWriter(Path(a.tmp) / "records.jsonl").open()

    exporter = None
    if a.exporter:  # as `serve-bench run` does: every record also goes to the live exporter, scraped every second
        from serve_bench.load.live import LiveStage
        from serve_bench.observe.exporter import Exporter

        live = LiveStage(checkpoint="fake")
        exporter = Exporter(live, {"ttft_ms": 1000})
        metrics = exporter.start("127.0.0.1", 0)
        scraper = subprocess.Popen(["taskset", "-c", a.server_core, PY, "-c", SCRAPE_LOOP, metrics])

    def sink(r) -> None:
        chunks[0] += len(r.chunk_times_s)
        writer.write(r)
        if exporter is not None:
            exporter.observe(r, "fake")

    cpu0, wall0, kids0 = time.process_time(), time.perf_counter(), _children_cpu_s()
    res = run_stage(stage, url=a.url, model=MODEL, profile=profile, prompts=prompts, sink=sink,
                    workers=a.workers, model_path=a.model_path, worker_log_dir=Path(a.tmp),
                    live=live if exporter is not None else None)
    # with --workers the load runs in worker processes: their CPU (reaped at the stage's end) counts too
    cpu, wall = time.process_time() - cpu0 + _children_cpu_s() - kids0, time.perf_counter() - wall0
    writer.close()
    if exporter is not None:
        scraper.kill()
        exporter.close()
    s = res.summary
    return {"completed": s["completed"], "failed": s["failed"], "duration": s["duration"], "wall_s": wall,
            "cpu_s": cpu, "chunks": chunks[0], "total_output_tokens": s["total_output_tokens"],
            "total_input_tokens": s["total_input_tokens"], "errors": s["errors"], "median_ttft_ms": s["median_ttft_ms"]}


def inner_serve_bench_process(a: argparse.Namespace) -> dict:
    """As `serve-bench run` sends since issue 17: this process orchestrates (never imports gevent or Locust) and
    reads every record back from the file; the load process (python -m serve_bench.load.driver, a child, pinned
    with it) sends. One profile: the warm-up request alone, then the measured stage."""
    from serve_bench.load.process import run_profile
    from serve_bench.workload.profiles import profile_from_data

    profile = profile_from_data({
        "name": "loadgen", "api": "chat", "input_tokens": a.input_len, "output_tokens": a.output_len,
        "ignore_eos": True, "warmup": {"requests": 0}, "timeout_s": 300,
        "stages": [{"kind": "concurrency", "name": "warm", "users": 1, "requests": 1},
                   {"kind": "concurrency", "users": a.concurrency, "requests": a.requests}]})
    chunks = [0]
    cpu_at: list[float] = []

    def on_record(r) -> None:
        chunks[0] += len(r.chunk_times_s)

    def on_stage(result) -> None:
        cpu_at.append(time.process_time())

    tmp = Path(a.tmp)
    warm, res = run_profile(profile, url=a.url, model=MODEL, records_path=tmp / "records.jsonl",
                            log_path=tmp / "loadgen.log", model_path=a.model_path, workers=a.workers,
                            worker_log_dir=tmp, on_record=on_record, on_stage=on_stage)
    wall = res.ended_s - res.started_s
    # the measured stage's CPU: every load-generator process's (the load process, and its workers with
    # --workers; their own measure over the stage) and this orchestrating process's between the two stage ends
    loadgen_cpu_s = sum(c for c in res.loadgen_cpu.values() if c is not None) * wall
    cpu = loadgen_cpu_s + cpu_at[1] - cpu_at[0]
    s = res.summary
    chunks[0] -= a.output_len  # the warm-up request's (one, ignore_eos: exactly output_len chunks)
    return {"completed": s["completed"], "failed": s["failed"], "duration": s["duration"], "wall_s": wall,
            "cpu_s": cpu, "chunks": chunks[0], "total_output_tokens": s["total_output_tokens"],
            "total_input_tokens": s["total_input_tokens"], "errors": s["errors"], "median_ttft_ms": s["median_ttft_ms"],
            "loadgen_cpu": res.loadgen_cpu}


def inner_vllm(a: argparse.Namespace) -> dict:
    from vllm.benchmarks import serve as vserve
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    timing: dict = {}
    orig = vserve.benchmark

    async def timed(*args, **kwargs):
        cpu0, wall0 = time.process_time(), time.perf_counter()  # includes its one test prompt (ms)
        out = await orig(*args, **kwargs)
        timing["cpu_s"], timing["wall_s"] = time.process_time() - cpu0, time.perf_counter() - wall0
        return out

    vserve.benchmark = timed
    p = FlexibleArgumentParser(prog="vllm bench serve")
    vserve.add_cli_args(p)
    rdir = Path(a.tmp)
    args = p.parse_args([
        "--backend", "openai-chat", "--base-url", a.url, "--endpoint", "/v1/chat/completions", "--model", MODEL,
        "--tokenizer", a.model_path, "--dataset-name", "random", "--random-input-len", str(a.input_len),
        "--random-output-len", str(a.output_len), "--random-range-ratio", "0", "--ignore-eos",
        "--max-concurrency", str(a.concurrency), "--num-prompts", str(a.requests), "--request-rate", "inf",
        "--disable-tqdm", "--save-result", "--save-detailed", "--result-dir", str(rdir),
        "--result-filename", "vllm.json"])
    vserve.main(args)
    d = json.loads((rdir / "vllm.json").read_text())
    # content chunks: the fixture streams one token per content chunk, so output tokens = content chunks.
    # (vLLM's client also parses the chat role chunk, which it times as the first token: 1 + len(itl)
    # events per request; that extra empty chunk is not counted here, nor by serve-bench.)
    chunks = d["total_output_tokens"]
    return {"completed": d["completed"], "failed": d.get("failed", 0), "duration": d["duration"],
            "wall_s": timing["wall_s"], "cpu_s": timing["cpu_s"], "chunks": chunks,
            "total_output_tokens": d["total_output_tokens"], "total_input_tokens": d["total_input_tokens"],
            "errors": [e for e in (d.get("errors") or []) if e][:3], "median_ttft_ms": d.get("median_ttft_ms")}


# -- outer --------------------------------------------------------------------------------------------------------

def measure(tool: str, a: argparse.Namespace, url: str, server_pid: int, tmp: Path) -> dict:
    """One run of ``tool``: a name of TOOLS, or ``name:N`` for N worker processes instead of ``--workers``."""
    name, _, workers = tool.partition(":")
    out = tmp / f"{name}.json"
    cmd = ["taskset", "-c", a.client_core, PY, __file__, "--inner", name, "--url", url, "--model-path", a.model_path,
           "--concurrency", str(a.concurrency), "--requests", str(a.requests), "--input-len", str(a.input_len),
           "--workers", workers or str(a.workers), "--server-core", a.server_core,
           *(["--exporter"] if a.exporter else []), "--output-len", str(a.output_len),
           "--tmp", str(tmp), "--result", str(out)]
    before_load = loadavg()
    s0, w0 = proc_cpu_s(server_pid), time.perf_counter()
    with open(tmp / f"{name}.log", "w") as log:
        subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=True, cwd=ROOT)
    server_cpu, total_wall = proc_cpu_s(server_pid) - s0, time.perf_counter() - w0
    r = json.loads(out.read_text())
    r["tool"] = tool
    r["req_per_s"] = r["completed"] / r["duration"]
    r["chunks_per_s"] = r["chunks"] / r["duration"]
    r["cpu_ms_per_req"] = r["cpu_s"] / r["completed"] * 1000 if r["completed"] else None
    r["client_cpu_pct"] = r["cpu_s"] / r["wall_s"] * 100
    # the server's CPU over the whole subprocess lifetime, but it only works during the load phase
    r["server_cpu_pct"] = server_cpu / r["wall_s"] * 100
    r["loadavg_before"], r["loadavg_after"] = before_load, loadavg()
    r["subprocess_wall_s"] = total_wall
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--requests", type=int, default=4000)
    ap.add_argument("--input-len", type=int, default=128)
    ap.add_argument("--output-len", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2, help="runs per tool, order alternating")
    ap.add_argument("--client-core", default="0", help="taskset list for the client (and its workers): '0,1'")
    ap.add_argument("--workers", type=int, default=0, help="serve-bench: Locust worker processes (0: one process)")
    ap.add_argument("--tools", default="vllm,serve-bench",
                    help="which tools to run, comma-separated, in this order (then reversed, alternating); "
                         "serve-bench-process:1 runs that tool with one worker process")
    ap.add_argument("--exporter", action="store_true",
                    help="serve-bench: feed the live Prometheus exporter too, scraped every second")
    ap.add_argument("--server-core", default="1")
    ap.add_argument("--model-path", default=None, help="tokenizer for prompts (default: the bundled model)")
    ap.add_argument("--out", type=Path, default=Path("/tmp/sb-loadgen"))
    ap.add_argument("--inner", choices=TOOLS, help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--tmp", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    a = ap.parse_args()
    unknown = [t for t in a.tools.split(",") if t.partition(":")[0] not in TOOLS]
    if unknown:
        ap.error(f"unknown tool(s) {unknown}; valid: {list(TOOLS)}, each optionally with :N worker processes")

    if a.inner:
        r = {"serve-bench": inner_serve_bench, "serve-bench-process": inner_serve_bench_process,
             "vllm": inner_vllm}[a.inner](a)
        Path(a.result).write_text(json.dumps(r))
        return

    if a.model_path is None:
        from serve_bench.models.resolve import resolve

        a.model_path = str(resolve("default").path)
    tmp = a.out / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    tmp.mkdir(parents=True, exist_ok=True)
    rows = []
    with running(tmp / "fake_server.log", cpus=a.server_core, model=MODEL) as (url, server):
        for k in range(a.repeats):
            chosen = a.tools.split(",")
            for tool in chosen if k % 2 == 0 else chosen[::-1]:  # order alternating
                d = tmp / f"{tool.replace(':', '-w')}-{k}"
                d.mkdir()
                r = measure(tool, a, url, server.pid, d)
                r["repeat"] = k
                rows.append(r)
                print(f"{tool} #{k}: {r['req_per_s']:.0f} req/s, {r['chunks_per_s']:.0f} chunks/s, "
                      f"client CPU {r['cpu_s']:.1f} s ({r['client_cpu_pct']:.0f}%, {r['cpu_ms_per_req']:.2f} ms/req), "
                      f"server CPU {r['server_cpu_pct']:.0f}%, completed {r['completed']} failed {r['failed']}, "
                      f"load {r['loadavg_before']} -> {r['loadavg_after']}", flush=True)
                (tmp / "rows.json").write_text(json.dumps(rows, indent=2))

    lines = [f"\nconcurrency {a.concurrency}, {a.requests} requests per run, {a.input_len} in / {a.output_len} out "
             f"(chat, one chunk per token), client on core {a.client_core}, fake server on core {a.server_core}\n",
             "| tool | run | req/s | chunks/s | client CPU s | client CPU ms/req | client CPU % | server CPU % | "
             "failed | load avg before → after |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['tool']} | {r['repeat']} | {r['req_per_s']:.0f} | {r['chunks_per_s']:.0f} | "
                     f"{r['cpu_s']:.1f} | {r['cpu_ms_per_req']:.2f} | {r['client_cpu_pct']:.0f} | "
                     f"{r['server_cpu_pct']:.0f} | {r['failed']} | {r['loadavg_before']} → {r['loadavg_after']} |")
    mean = {t: statistics.mean(r["req_per_s"] for r in rows if r["tool"] == t) for t in {r["tool"] for r in rows}}
    lines.append("\nmean req/s: " + ", ".join(f"{t} {mean[t]:.0f}" for t in a.tools.split(",") if t in mean))
    for t in ("serve-bench", "serve-bench-process"):
        if t in mean and "vllm" in mean:
            ratio = mean[t] / mean["vllm"]
            verdict = "met" if ratio >= 1.5 else "NOT met"
            lines.append(f"{t} / vllm bench serve: {ratio:.2f} (target at least 1.5: {verdict})")
    if "serve-bench" in mean and "serve-bench-process" in mean:
        lines.append(f"serve-bench-process / serve-bench: {mean['serve-bench-process'] / mean['serve-bench']:.2f}")
    table = "\n".join(lines)
    (tmp / "table.md").write_text(table + "\n")
    print(table)
    print(f"\nresults in {tmp}")


if __name__ == "__main__":
    main()
