"""Scaling on this machine (issue 19): vLLM CPU, one replica on one core against two replicas on two cores, each
replica pinned as `--replicas` pins it (its process tree on its core, VLLM_CPU_OMP_THREADS_BIND naming it).

    .venv/bin/python scripts/bench_scaling.py [--users 8 16] [--requests 96] [--out /tmp/sb-scaling]

The bundled model, 64 input / 32 output tokens (the quick profile's work), closed loop at each --users count
through serve-bench's own load process (run_profile; the fleet balanced least-outstanding). The load generator
runs on the same two cores, unpinned: its own CPU (cores, from its process's accounts) is printed beside each
result, since it takes from what the replicas get. Scaling efficiency: the fleet's output throughput over two
times the single replica's at the same users. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
from pathlib import Path

from serve_bench.load.process import run_profile
from serve_bench.models.resolve import resolve
from serve_bench.serve.fleet import physical_cores, shares
from serve_bench.serve.server import ServerSpec, VllmServer, vllm_build
from serve_bench.workload.profiles import profile_from_data


def servers(out: Path, n: int, tag: str) -> list[VllmServer]:
    path = resolve("default").path
    split = shares(n, vllm_build(), [], {}, cores=physical_cores()[:n])
    return [VllmServer(ServerSpec(model_path=path, served_name="default", log_path=out / f"{tag}-{s.index}.log",
                                  engine_args=["--max-model-len", "2048"], env=s.env(), cpus=s.cpus))
            for s in split]


def load(out: Path, urls: list[str], users: list[int], requests: int, tag: str) -> list[dict]:
    path = str(resolve("default").path)
    prof = profile_from_data({"name": "scaling", "api": "chat", "input_tokens": 64, "output_tokens": 32,
                              "ignore_eos": True, "timeout_s": 300, "warmup": {"requests": 2},
                              "stages": [{"kind": "concurrency", "name": f"c{u}", "users": u, "requests": requests}
                                         for u in users]})
    results = run_profile(prof, url=urls[0], endpoints=urls if len(urls) > 1 else None, model="default",
                          model_path=path, records_path=out / f"{tag}.jsonl", log_path=out / f"{tag}.log")
    return [{"users": u, "tok_s": r.summary.get("steady_output_throughput") or r.summary["output_throughput"],
             "req_s": r.summary.get("steady_request_throughput") or r.summary["request_throughput"],
             "p50_tpot_ms": r.summary.get("p50_tpot_ms"), "loadgen_cpu": (r.loadgen_cpu or {}).get("master"),
             "flags": r.flags} for u, r in zip(users, results)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, nargs="+", default=[8, 16])
    ap.add_argument("--requests", type=int, default=96)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    out = a.out or Path(tempfile.mkdtemp(prefix="sb-scaling-"))
    out.mkdir(parents=True, exist_ok=True)
    rows = {}
    for n in (1, 2):
        with contextlib.ExitStack() as stack:
            fleet = servers(out, n, f"r{n}")
            for s in fleet:
                stack.callback(s.stop)
                s.start()
            for s in fleet:
                s.wait_ready()
            rows[n] = load(out, [s.url for s in fleet], a.users, a.requests, f"r{n}")
    print("| users | 1 replica, 1 core: tok/s | 2 replicas, 2 cores: tok/s | scaling efficiency | p50 TPOT ms (1 → 2) "
          "| load generator CPU, cores (1 → 2) |")
    print("|---|---|---|---|---|---|")
    for one, two in zip(rows[1], rows[2]):
        eff = two["tok_s"] / (2 * one["tok_s"])
        print(f"| {one['users']} | {one['tok_s']:.1f} | {two['tok_s']:.1f} | {eff:.2f} | "
              f"{one['p50_tpot_ms']:.0f} → {two['p50_tpot_ms']:.0f} | {one['loadgen_cpu'] or 0:.2f} → "
              f"{two['loadgen_cpu'] or 0:.2f} |")
        for row in (one, two):
            if row["flags"]:
                print(f"  flags: {row['flags']}")
    print(f"\nlogs and records: {out}")


if __name__ == "__main__":
    main()
