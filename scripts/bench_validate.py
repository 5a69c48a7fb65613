"""Plan validation on known-capacity engines (issue 19): a plan made from one engine's open-loop rate ladder
(virtual time), then `serve-bench validate` against N real engines (real Locust, real time): the fleet's
capacity within the SLOs predicted (N × one replica's, the linear assumption) and observed, each against the
truth: the fleet's exact capacity, found by bisection over a long virtual-time simulation of N engines
balanced as the load generator balances them (simengine.truth.open_loop_capacity_truth, 20,000 requests).

    .venv/bin/python scripts/bench_validate.py [--replicas 2 3] [--duration 20] [--out /tmp/sb-validate]

Engine: 4 slots, step 20 ms + 2 ms per running sequence, 8-token prompts and answers; SLO p90 TTFT ≤ 300 ms with
90% attainment. The target traffic is set so that the plan asks for exactly N replicas (N × capacity × 0.8 ×
0.95 req/s, headroom 0.2). Search rates: 0.9, 1.0 and 1.1 × the predicted fleet capacity. Prints a Markdown
table; each validation directory is kept under --out.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
from pathlib import Path

from click.testing import CliRunner

from serve_bench.cli.main import cli
from serve_bench.report import build_report, settings_for
from serve_bench.simengine.params import EngineParams
from serve_bench.simengine.runs import write_ladder_run
from serve_bench.simengine.server import running
from serve_bench.simengine.truth import open_loop_capacity_truth

ENGINE = EngineParams(step_ms=20, per_seq_ms=2, max_num_seqs=4)
SLO = {"slo_ms": {"ttft_ms": 300.0}, "percentile": 90.0, "min_attainment": 0.9, "source": "the study's slo"}


def plan_run(out: Path) -> tuple[Path, float]:
    prompts = out / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": "tok " * 8}) + "\n" for _ in range(8)))
    run = write_ladder_run(out / "plan-run", {"m": ENGINE}, rates=(4, 8, 10, 12, 13, 14, 15, 16, 17), requests=2000,
                           prompt_tokens=8, output_tokens=8, slo=SLO, prompts={"kind": "jsonl", "path": str(prompts)})
    files = build_report([run], out / "one", settings_for([run], {"bootstrap_resamples": 200}))
    return run, json.loads(files.json.read_text())["checkpoints"][0]["plan"]["capacity_rps"]


def validate(run: Path, capacity: float, n: int, duration: float, out: Path) -> dict:
    rps = round(n * capacity * 0.8 * 0.95, 4)
    files = build_report([run], out / f"plan-{n}", settings_for([run], {"bootstrap_resamples": 200,
                                                                        "capacity": {"rps": rps}}))
    assert json.loads(files.json.read_text())["checkpoints"][0]["plan"]["replicas"] == n
    with contextlib.ExitStack() as stack:
        urls = [stack.enter_context(running(ENGINE, log_path=out / f"n{n}-e{i}.jsonl", model="m"))[0]
                for i in range(n)]
        args = ["validate", str(files.directory), "--tokenizer", "none", "--quiet", "--duration", str(duration),
                "--out", str(out / f"validation-{n}"), "--fewer"]
        for u in urls:
            args += ["--url", u]
        for x in (0.9, 1.0, 1.1):
            args += ["--search", str(x)]
        result = CliRunner().invoke(cli, args, catch_exceptions=False)
    v = json.loads((out / f"validation-{n}" / "validation.json").read_text())
    return {"n": n, "rps": rps, "exit": result.exit_code, **v}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicas", type=int, nargs="+", default=[2, 3])
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    out = a.out or Path(tempfile.mkdtemp(prefix="sb-validate-"))
    out.mkdir(parents=True, exist_ok=True)
    run, capacity = plan_run(out)
    slo = dict(slos_ms=SLO["slo_ms"], percentile=SLO["percentile"], min_attainment=SLO["min_attainment"],
               prompt_tokens=8, output_tokens=8)
    truth = {n: open_loop_capacity_truth(ENGINE, replicas=n, low_rps=n * capacity * 0.5, high_rps=n * capacity * 1.6,
                                         **slo)["rate_rps"] for n in [1, *a.replicas]}
    print(f"one replica: {capacity:.3f} req/s within the SLOs by the report (virtual time, open loop); truth "
          f"{truth[1]:.3f} ({capacity / truth[1] - 1:+.1%})\n")
    print("| replicas | traffic req/s | plan holds (exit) | attainment at plan | truth: fleet req/s (efficiency) | "
          "predicted (linear) req/s, error | observed req/s (95% CI), error | observed efficiency (95% CI) | "
          "one fewer |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in a.replicas:  # the virtual-time truth is computed above, before any real-time stage
        v = validate(run, capacity, n, a.duration, out)
        lo, hi = v["observed_fleet_ci"]
        elo, ehi = v["scaling_efficiency_ci"]
        obs, pred, true = v["observed_fleet_rps"], v["predicted_fleet_rps"], truth[n]
        fewer = v["fewer"]
        print(f"| {n} | {v['rps']:.2f} | {v['holds']} ({v['exit']}) | {v['plan_stage']['attainment']:.1%} | "
              f"{true:.2f} ({true / (n * truth[1]):.3f}) | {pred:.2f}, {pred / true - 1:+.1%} | "
              f"{obs:.2f} ({lo:.2f}–{hi:.2f}), {obs / true - 1:+.1%} | {v['scaling_efficiency']:.3f} "
              f"({elo:.3f}–{ehi:.3f}) | {'met' if fewer['met'] else 'missed'} ({fewer['attainment']:.1%}) |")
    print(f"\nvalidation directories: {out}")


if __name__ == "__main__":
    main()
