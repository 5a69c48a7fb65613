#!/usr/bin/env python
"""The report's capacity arithmetic against the known-capacity engine's exact truth, in virtual time (no
client, no clock: what the report's own method gets wrong, apart from any load generator):

    waves      request throughput of lock-step closed-loop stages (every user finishing together, 1, 2, 3
               and 12 waves, several user counts) by the report's accounting (each request's share of the
               steady window) and by counting whole completions in it (the accounting before), against the
               engine's exact rate (a long simulation, whole cycles per user)
    coverage   nominal-95% intervals over seeded runs: each run is a ladder of closed-loop stages against
               an engine with step-time jitter (its own seed), the report's slo_capacity on it, and whether
               the interval holds the truth (capacity_truth: 20,000 requests per user count); also the
               point estimate's error

    .venv/bin/python scripts/bench_capacity.py waves
    .venv/bin/python scripts/bench_capacity.py coverage --runs 100 --requests 1200 --jitter 0.3

The real-time check, with Locust and the report end to end: ``serve-bench selfcheck``."""

from __future__ import annotations

import argparse
import time

import numpy as np

from serve_bench.measure.metrics import completed, steady_window, summarize
from serve_bench.report.inputs import stage_data
from serve_bench.report.slo import slo_capacity
from serve_bench.rundir import StageFile
from serve_bench.simengine.params import EngineParams
from serve_bench.simengine.simulate import closed_loop, steady_rate
from serve_bench.simengine.truth import capacity_truth


def waves(args: argparse.Namespace) -> None:
    p = EngineParams(step_ms=10, per_seq_ms=1)
    print("| users | waves | truth req/s | report (share of window) | error | whole completions | error |")
    print("|---|---|---|---|---|---|---|")
    worst = 0.0
    for users in (4, 16, 48):
        truth = steady_rate(closed_loop(p, users=users, requests=users * 200, prompt_tokens=64, output_tokens=32))
        for n in (1, 2, 3, 12):
            recs = closed_loop(p, users=users, requests=users * n, prompt_tokens=64, output_tokens=32)
            s = summarize(recs, users=users)
            a, b, _ = steady_window(recs, users)
            whole = sum(1 for r in recs if completed(r) and a <= r.last_token_s <= b) / (b - a)
            got = s["steady_request_throughput"]
            worst = max(worst, abs(got / truth - 1))
            print(f"| {users} | {n} | {truth:.3f} | {got:.3f} | {got / truth - 1:+.2%} | {whole:.3f} | "
                  f"{whole / truth - 1:+.1%} |")
    print(f"\nworst error of the report's accounting: {worst:.2%}")


def stage(records: list, users: int) -> object:
    res = StageFile(stage=f"c{users}", profile="sim", index=users, kind="concurrency", target={"users": users},
                    started_s=min(r.send_s for r in records), ended_s=max(r.end_s or r.send_s for r in records),
                    warmup_end_s=None, records=len(records), summary={}, checkpoint="sim")
    return stage_data(res, records)


def coverage(args: argparse.Namespace) -> None:
    slos = {"tpot_ms": args.tpot_ms}
    base = EngineParams(step_ms=10, per_seq_ms=1, jitter=args.jitter)
    t0 = time.time()
    truth = capacity_truth(base.model_copy(update={"seed": 10_000}), slos_ms=slos, percentile=args.percentile,
                           min_attainment=args.attainment, prompt_tokens=64, output_tokens=32,
                           max_users=max(args.users) + 8, requests_per_point=20_000)
    print(f"truth ({time.time() - t0:.0f} s): {truth['load']:.3f} users, {truth['rate_rps']:.3f} req/s, binding "
          f"{truth['binding']}; engine: {base.describe()}; SLO p{args.percentile:g} tpot_ms ≤ {args.tpot_ms:g}, "
          f"attainment ≥ {args.attainment:.0%}")
    held_load = held_rate = 0
    errors, rate_errors, widths = [], [], []
    t0 = time.time()
    for run in range(args.runs):
        curve = []
        for users in args.users:
            params = base.model_copy(update={"seed": run * 1000 + users})
            curve.append(stage(closed_loop(params, users=users, requests=args.requests, prompt_tokens=64,
                                           output_tokens=32), users))
        cap = slo_capacity(curve, slos, percentile=args.percentile, min_attainment=args.attainment,
                           resamples=args.resamples, seed=run)
        lo, hi = cap.ci_load
        rlo, rhi = cap.ci_rate_rps
        held_load += lo <= truth["load"] <= hi
        held_rate += rlo <= truth["rate_rps"] <= rhi
        errors.append(cap.load / truth["load"] - 1)
        rate_errors.append(cap.rate_rps / truth["rate_rps"] - 1)
        widths.append(hi - lo)
    e, re_ = np.array(errors), np.array(rate_errors)
    print(f"{args.runs} runs ({time.time() - t0:.0f} s), ladder {args.users}, {args.requests} requests per stage, "
          f"{args.resamples} resamples:")
    print(f"  interval holds the truth: load {held_load}/{args.runs}, rate {held_rate}/{args.runs}")
    print(f"  point error: load mean {e.mean():+.2%}, |max| {np.abs(e).max():.2%}; rate mean {re_.mean():+.2%}, "
          f"|max| {np.abs(re_).max():.2%}; interval width (users) median {np.median(widths):.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    sub.add_parser("waves")
    c = sub.add_parser("coverage")
    c.add_argument("--runs", type=int, default=100)
    c.add_argument("--requests", type=int, default=1200)
    c.add_argument("--jitter", type=float, default=0.3)
    c.add_argument("--tpot-ms", type=float, default=40.0)
    c.add_argument("--resamples", type=int, default=1000)
    c.add_argument("--percentile", type=float, default=99.0)
    c.add_argument("--attainment", type=float, default=0.95)
    c.add_argument("--users", type=int, nargs="+", default=[8, 16, 24, 32, 40, 48])
    args = ap.parse_args()
    {"waves": waves, "coverage": coverage}[args.what](args)


if __name__ == "__main__":
    main()
