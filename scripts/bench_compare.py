#!/usr/bin/env python
"""``serve-bench compare`` against servers of known difference: how often it calls a difference where there is
none (false alarms), and how often it finds one that is there (power).

    virtual   runs made in virtual time (serve_bench.simengine.runs: a closed-loop ladder, engine step jitter,
              a seed per trial): the statistics alone, no clock
    real      runs made by `serve-bench run --url` against the known-capacity engine in real time (Locust, the
              load process, this machine's own noise); the two sides' trials interleaved (A1 B1 A2 B2 …)

A pair is two sides of ``--trials`` trials each; the candidate's engine is ``--slowdown`` slower per step (0:
the same engine, a false-alarm pair). Per pair: every tested figure's raw p-value (the per-comparison false
alarm rate at α), and the gate (Holm over all figures, --max-regression 0): did it name any figure worse.

    .venv/bin/python scripts/bench_compare.py virtual --pairs 20 --trials 3 --slowdown 0 0.02 0.05 0.10
    .venv/bin/python scripts/bench_compare.py real --pairs 5 --trials 3 --slowdown 0 0.10
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import yaml

from serve_bench.compare.build import compare
from serve_bench.simengine.params import EngineParams
from serve_bench.simengine.runs import write_ladder_run

ALPHA = 0.05
SLO = {"slo_ms": {"tpot_ms": 40.0}, "percentile": 90.0, "min_attainment": 0.9, "source": "bench_compare"}


def engine(slowdown: float, seed: int, jitter: float) -> EngineParams:
    f = 1.0 + slowdown
    return EngineParams(step_ms=10 * f, per_seq_ms=1 * f, jitter=jitter, seed=seed)


def judge(base: Path, cand: Path) -> dict:
    c = compare(base, cand, alpha=ALPHA, max_regression_pct=0.0)
    tested = [r for r in c.rows if r.test.p is not None]
    raw = [r for r in tested if r.test.p < ALPHA]
    tput = [r for r in tested if r.key == "output_throughput"]
    return {"tested": len(tested), "raw_significant": len(raw), "gate": bool(c.regressions),
            "worse": sorted({r.title for r in c.regressions}),
            "throughput_found": sum(1 for r in tput if r.regression), "throughput_stages": len(tput)}


def tally(pairs: list[dict], n: int) -> str:
    """The table's cells for one setting, from each pair's :func:`judge`."""
    tested = sum(g["tested"] for g in pairs)
    raw = sum(g["raw_significant"] for g in pairs)
    return (f"{tested} | {raw} ({raw / max(tested, 1):.1%}) | {sum(g['gate'] for g in pairs)} of {n} | "
            f"{sum(g['throughput_found'] for g in pairs)} of {sum(g['throughput_stages'] for g in pairs)}")


def virtual(args: argparse.Namespace) -> None:
    print(f"virtual time: ladder {args.users} users, {args.requests} requests a stage, jitter {args.jitter}, "
          f"{args.trials_list} trials a side, {args.pairs} pairs; α = {ALPHA}")
    print("| slowdown | trials | figures tested | raw p < α | pairs the gate flagged | throughput found (stages) |")
    print("|---|---|---|---|---|---|")
    for slowdown in args.slowdown:
        for trials in args.trials_list:
            t0 = time.time()
            judged = []
            for pair in range(args.pairs):
                with tempfile.TemporaryDirectory() as tmp:
                    root = Path(tmp)
                    for t in range(trials):
                        for side, slow in (("a", 0.0), ("b", slowdown)):
                            seed = 100_000 * (side == "b") + 1000 * pair + t
                            write_ladder_run(root / side / f"trial-{t + 1}", {"sim": engine(slow, seed, args.jitter)},
                                             users=args.users, requests=args.requests, slo=SLO)
                    judged.append(judge(root / "a", root / "b"))
            print(f"| {slowdown:.0%} | {trials} | {tally(judged, args.pairs)} | ({time.time() - t0:.0f} s)",
                  flush=True)


def real(args: argparse.Namespace) -> None:
    from serve_bench.pipeline import run_study  # pulls in torch
    from serve_bench.simengine.server import running
    from serve_bench.study import EnergySettings, EvalSettings, ReportSettings, ServerSettings, StudySpec

    work = Path(args.work or tempfile.mkdtemp(prefix="bench-compare-"))
    prompts = work / "prompts.jsonl"
    work.mkdir(parents=True, exist_ok=True)
    prompts.write_text("".join(json.dumps({"prompt": "tok " * 64}) + "\n" for _ in range(16)))
    profile = work / "ladder.yaml"
    profile.write_text(yaml.safe_dump({
        "name": "bench-ladder", "api": "chat", "input_tokens": 64, "output_tokens": 32, "ignore_eos": True,
        "timeout_s": 60, "seed": 0, "prompts": {"kind": "jsonl", "path": str(prompts)},
        "warmup": {"duration_s": 1.0},
        "stages": [{"kind": "concurrency", "name": f"c{u}", "users": u, "duration_s": args.stage_s}
                   for u in args.users]}))
    print(f"real time: {args.pairs} pair(s) a slowdown, {args.trials} trials a side interleaved, stages "
          f"{args.users} users × {args.stage_s:g} s; engine jitter {args.jitter}; work in {work}")
    print("| slowdown | figures tested | raw p < α | pairs the gate flagged | throughput found (stages) | wall |")
    print("|---|---|---|---|---|---|")
    for slowdown in args.slowdown:
        t0 = time.time()
        detail = []
        for pair in range(args.pairs):
            pair_dir = work / f"slow{slowdown:g}-pair{pair}"
            shutil.rmtree(pair_dir, ignore_errors=True)
            pair_dir.mkdir(parents=True)
            engines = {"a": engine(0.0, 1000 * pair + 1, args.jitter), "b": engine(slowdown, 1000 * pair + 2,
                                                                                    args.jitter)}
            with running(engines["a"], log_path=pair_dir / "a.jsonl") as (url_a, _), \
                    running(engines["b"], log_path=pair_dir / "b.jsonl") as (url_b, _):
                for t in range(args.trials):
                    for side, url in (("a", url_a), ("b", url_b)):
                        study = StudySpec(
                            name=f"trial-{t + 1}", profiles=[str(profile)], runs_dir=pair_dir / side,
                            server=ServerSettings(url=url, served_model="sim-engine",
                                                  tokenizer="none: prompts from a file"),
                            eval=EvalSettings(enabled=False), energy=EnergySettings(idle_s=0),
                            slo=dict(SLO["slo_ms"]), metrics={"port": 0},
                            report=ReportSettings(slo_percentile=SLO["percentile"],
                                                  min_attainment=SLO["min_attainment"]))
                        outcome = run_study(study)
                        if outcome.status != "completed":
                            raise SystemExit(f"a run failed: {outcome.problems}")
            detail.append(judge(pair_dir / "a", pair_dir / "b"))
        print(f"| {slowdown:.0%} | {tally(detail, args.pairs)} | {time.time() - t0:.0f} s |", flush=True)
        for i, got in enumerate(detail):
            if got["worse"]:
                print(f"    pair {i}: gate named {', '.join(got['worse'])}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="mode", required=True)
    v = sub.add_parser("virtual")
    v.add_argument("--pairs", type=int, default=20)
    v.add_argument("--trials", dest="trials_list", type=int, nargs="+", default=[3])
    v.add_argument("--slowdown", type=float, nargs="+", default=[0.0, 0.10])
    v.add_argument("--users", type=int, nargs="+", default=[8, 16, 24, 32])
    v.add_argument("--requests", type=int, default=300)
    v.add_argument("--jitter", type=float, default=0.2)
    r = sub.add_parser("real")
    r.add_argument("--pairs", type=int, default=5)
    r.add_argument("--trials", type=int, default=3)
    r.add_argument("--slowdown", type=float, nargs="+", default=[0.0, 0.10])
    r.add_argument("--users", type=int, nargs="+", default=[4, 8])
    r.add_argument("--stage-s", type=float, default=4.0)
    r.add_argument("--jitter", type=float, default=0.2)
    r.add_argument("--work", default=None)
    args = p.parse_args()
    virtual(args) if args.mode == "virtual" else real(args)


if __name__ == "__main__":
    main()
