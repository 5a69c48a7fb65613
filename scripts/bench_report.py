"""Benchmark: report generation time and peak memory for a run of 100,000 request records (generated).

    .venv/bin/python scripts/bench_report.py [--records 100000] [--runs 3] [--keep DIR]

Writes a run directory like `serve-bench run` does (3 checkpoints × a closed-loop ladder of 8 stages,
32 output tokens per request streamed as 32 chunks, one stage flagged, energy measured on some stages),
then builds the report in a fresh interpreter (imports included) and reads its peak RSS from
os.wait4 (the child's own rusage). Target: ≤ 10 s and ≤ 1 GiB.
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

import numpy as np

LOADS = (1, 2, 4, 8, 16, 32, 64, 128)
CHECKPOINTS = (("base", None, 1.0), ("base-ppm-p20", 0.2, 0.85), ("base-ppm-p40", 0.4, 0.7))
OUTPUT_TOKENS = 32
CHILD = """
import sys, time, json
t0 = time.perf_counter()
from pathlib import Path
from serve_bench.report import build_report, settings_for
t1 = time.perf_counter()
run = Path(sys.argv[1])
files = build_report([run], Path(sys.argv[2]), settings_for([run]))
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "build_s": t2 - t1, "files": len(files.paths)}))
"""


def generate(run: Path, total: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    weights = np.array(LOADS, dtype=float) ** 0.5  # more requests at higher loads, as a ladder sends
    run.mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({"status": "completed", "study": {}, "started_utc":
                                                   "2026-11-29T10:00:00+00:00", "command": ["bench_report.py"]}))
    clock = 1_800_000_000.0
    for c, (name, prune, speed) in enumerate(CHECKPOINTS):
        share = total // len(CHECKPOINTS) + (c < total % len(CHECKPOINTS))
        per_stage = np.maximum(8, (share * weights / weights.sum()).astype(int))
        per_stage[-1] += share - per_stage.sum()
        d = run / name
        (d / "stages").mkdir(parents=True)
        (d / "checkpoint.json").write_text(json.dumps({
            "name": name, "label": "base" if prune is None else f"p{int(prune * 100)}", "base": "base",
            "pruning": None if prune is None else {"realised_prune": prune}}))
        with open(d / "records.jsonl", "w") as out:
            for i, (users, n) in enumerate(zip(LOADS, per_stage), 1):
                stage = f"c{users}"
                busy = min(users, 24)  # the server's batch saturates near 24 requests
                tpot = speed * 0.012 * (1 + busy / 16)
                queue = max(0.0, users / 24 - 1) * tpot * OUTPUT_TOKENS
                starts = {u: clock for u in range(users)}
                for k in range(n):
                    u = k % users
                    send = starts[u]
                    ttft = speed * 0.03 * (1 + busy / 8) + queue * rng.uniform(0.5, 1.5)
                    ttft *= rng.lognormal(0, 0.25)
                    gaps = tpot * rng.lognormal(0, 0.2, OUTPUT_TOKENS - 1)
                    chunks = (send + ttft + np.concatenate(([0.0], np.cumsum(gaps)))).tolist()
                    out.write(json.dumps({
                        "request_id": f"{stage}-{k}", "stage": stage, "profile": "ladder", "worker_id": f"w0/u{u}",
                        "intended_send_s": None, "send_s": send, "first_token_s": chunks[0],
                        "chunk_times_s": chunks, "last_token_s": chunks[-1], "end_s": chunks[-1] + 0.001,
                        "prompt_tokens": 128, "output_tokens": OUTPUT_TOKENS, "max_tokens": OUTPUT_TOKENS,
                        "status": 200, "error": None, "ok": True, "warmup": False}) + "\n")
                    starts[u] = chunks[-1] + 0.002
                end = max(starts.values())
                energy = ({"measured": True, "energy_per_output_token_joules": {"gross": 0.5 * speed / busy ** 0.5,
                                                                                 "net": None},
                           "idle_power_watts": None, "net_reason": "no idle baseline"}
                          if users <= 32 else {"measured": False, "reason": "outside the energy series"})
                (d / "stages" / f"{i:02d}-{stage}.json").write_text(json.dumps({
                    "checkpoint": name, "profile": "ladder", "index": i, "stage": stage, "kind": "concurrency",
                    "target": {"users": users}, "started_s": clock, "ended_s": end, "warmup_end_s": None,
                    "records": int(n), "summary": {}, "generator_saturated": users == 128 and prune == 0.4,
                    "server_died": False, "stopped_early": False, "rejected": False, "energy": energy}))
                clock = end + 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3, help="report builds, each in a fresh interpreter")
    parser.add_argument("--keep", type=Path, default=None, help="generate here and keep it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        run = root / "bench-run"
        t = time.perf_counter()
        generate(run, args.records)
        lines = sum(1 for p in run.glob("*/records.jsonl") for _ in open(p))
        print(f"generated {lines:,} records in {time.perf_counter() - t:.1f} s "
              f"({sum(p.stat().st_size for p in run.glob('*/records.jsonl')) / 2**20:.0f} MiB)")
        walls, peaks, cpus = [], [], []
        for i in range(args.runs):
            t = time.perf_counter()
            proc = subprocess.Popen([sys.executable, "-c", CHILD, str(run), str(root / f"report-{i}")],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            _, _, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS (ru_maxrss, KiB on Linux)
            walls.append(time.perf_counter() - t)
            out, err = proc.stdout.read(), proc.stderr.read()  # type: ignore[union-attr]
            if proc.returncode not in (0, None):
                sys.exit(err)
            peaks.append(usage.ru_maxrss / 1024)
            cpus.append(usage.ru_utime + usage.ru_stime)
            child = json.loads(out.strip().splitlines()[-1])
            print(f"run {i + 1}: {walls[-1]:.2f} s wall in a fresh interpreter (imports {child['import_s']:.2f} s, "
                  f"build {child['build_s']:.2f} s), CPU {cpus[-1]:.2f} s, peak RSS {peaks[-1]:.0f} MiB, "
                  f"{child['files']} files, load average {os.getloadavg()[0]:.1f}")
        wall, peak = statistics.median(walls), max(peaks)
        print(f"median {wall:.2f} s wall (min {min(walls):.2f}), median CPU {statistics.median(cpus):.2f} s, "
              f"peak RSS {peak:.0f} MiB")
        print(f"targets: ≤ 10 s {'met' if wall <= 10 else 'MISSED'}, ≤ 1 GiB {'met' if peak <= 1024 else 'MISSED'}")

if __name__ == "__main__":
    main()
