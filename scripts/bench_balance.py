"""Balance across a fleet (issue 19): each endpoint's share of the requests for 2 and 4 equal replicas under
least-outstanding and round-robin, and what each policy does against one replica twice as slow.

    .venv/bin/python scripts/bench_balance.py [--requests 400] [--users 16] [--out /tmp/sb-balance]

The replicas are known-capacity engines (serve_bench.simengine: step 10 ms + 1 ms per running sequence; the
slow one 20 ms + 2 ms), each counting what it served in its own log, which is the truth the shares are read
from (and checked against the records' endpoint field). One closed-loop stage per setting through serve-bench's
own load process (run_profile), 16-token answers to 8-token prompts. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
from pathlib import Path

from serve_bench.load.balance import BALANCE_POLICIES
from serve_bench.load.process import run_profile
from serve_bench.measure.records import read_records
from serve_bench.simengine.params import EngineParams
from serve_bench.simengine.server import read_log, running
from serve_bench.workload.profiles import profile_from_data

EQUAL = EngineParams(step_ms=10, per_seq_ms=1)
SLOW = EngineParams(step_ms=20, per_seq_ms=2)


def profile(out: Path, users: int, requests: int):
    prompts = out / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": "tok " * 8}) + "\n" for _ in range(64)))
    return profile_from_data({"name": "balance", "api": "chat", "input_tokens": 8, "output_tokens": 16,
                              "ignore_eos": True, "timeout_s": 60, "prompts": {"kind": "jsonl", "path": str(prompts)},
                              "stages": [{"kind": "concurrency", "name": f"c{users}", "users": users,
                                          "requests": requests}]})


def one(out: Path, engines: list[EngineParams], policy: str, users: int, requests: int) -> dict:
    slow = SLOW in engines
    tag = f"{len(engines)}-{policy}-{'slow' if slow else 'equal'}"
    with contextlib.ExitStack() as stack:
        urls = [stack.enter_context(running(p, log_path=out / f"{tag}-e{i}.jsonl", model="m"))[0]
                for i, p in enumerate(engines)]
        [result] = run_profile(profile(out, users, requests), url=urls[0], endpoints=urls, balance=policy,
                               model="m", records_path=out / f"{tag}.jsonl", log_path=out / f"{tag}.log")
    served = [len(read_log(out / f"{tag}-e{i}.jsonl")) for i in range(len(engines))]
    records = read_records(out / f"{tag}.jsonl")
    assert served == [sum(r.endpoint == u for r in records) for u in urls], "records disagree with the engines"
    s = result.summary
    return {"replicas": len(engines), "kind": "one twice as slow" if slow else "equal", "policy": policy,
            "shares": [n / sum(served) for n in served], "balance": result.balance,
            "req_s": s["request_throughput"], "p99_ttft_ms": s["p99_ttft_ms"], "p99_e2el_ms": s["p99_e2el_ms"],
            "loadgen_cpu": result.loadgen_cpu.get("master")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--users", type=int, default=16)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="sb-balance-"))
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for engines in ([EQUAL] * 2, [EQUAL] * 4, [EQUAL, SLOW]):
        for policy in BALANCE_POLICIES:
            rows.append(one(out, engines, policy, args.users, args.requests))
    print("| replicas | policy | share of requests per endpoint | largest deviation from even | balance "
          "| req/s | TTFT p99 ms | E2EL p99 ms | load generator CPU |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        dev = max(abs(x - 1 / len(r["shares"])) for x in r["shares"])
        shares = " / ".join(f"{x:.1%}" for x in r["shares"])
        print(f"| {r['replicas']}, {r['kind']} | {r['policy']} | {shares} | {dev:.1%} | "
              f"{r['balance']:.3f} | {r['req_s']:.1f} | {r['p99_ttft_ms']:.0f} | {r['p99_e2el_ms']:.0f} | "
              f"{r['loadgen_cpu']:.0%} |")
    (out / "balance.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
