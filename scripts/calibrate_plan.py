#!/usr/bin/env python
"""Fit the dry-run estimate's request-latency constants (serve_bench.plan.CostModel) to finished runs.

    .venv/bin/python scripts/calibrate_plan.py RUN_DIR [RUN_DIR ...]

Reads every closed-loop stage of the runs (stages/*.json: mean TTFT, mean
e2el, users; the manifest's profiles: prompt and output tokens; checkpoint.json:
the kept MLP fraction k / intermediate size) and fits, by least squares on
relative error:

    TTFT of one request alone      = ttft_s + prefill_s_per_token · P         (1-user stages)
    E(N) − ttft_s − prefill·P      = (O − 1)·decode_step_s·(1 − mlp_share·(1 − f))
                                     + (N − 1)·(user_prompt_s_per_token·P + user_output_s_per_token·O)

It also prints each stage's overhead (duration − warm-up requests − the
modelled body from the measured e2el) and each checkpoint's server start
(checkpoint.json written → first stage started). Runs with prompts of several
lengths and with pruned checkpoints are needed to tell the terms apart; the
constants in serve_bench/plan/cost.py came from the runs named there.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np


def stages(run: Path) -> list[dict]:
    manifest = json.loads((run / "manifest.json").read_text())
    profiles = {p["name"]: p for p in manifest["profiles"]}
    out = []
    for ck in sorted(p for p in run.iterdir() if (p / "checkpoint.json").is_file()):
        pruning = json.loads((ck / "checkpoint.json").read_text()).get("pruning") or {}
        kept = pruning["k"] / pruning["intermediate_size_before"] if pruning else 1.0
        records = [json.loads(line) for line in (ck / "records.jsonl").open()]
        first = None
        for f in sorted((ck / "stages").glob("*.json")):
            x = json.loads(f.read_text())
            users = x["target"].get("users")
            s = x["summary"]
            if first is None:
                first = x["started_s"] - (ck / "checkpoint.json").stat().st_mtime
                print(f"{run.name}/{ck.name}: server start to first stage {first:.1f} s")
            if not users or not s.get("mean_e2el_ms") or x.get("server_died") or x.get("stopped_early"):
                continue
            p = profiles[x["profile"]]
            warm = sum(r["end_s"] - r["send_s"] for r in records
                       if r["stage"] == x["stage"] and r["profile"] == x["profile"] and r["warmup"])
            out.append({"name": f"{ck.name}/{x['profile']}/{x['stage']}", "P": p["input_tokens"],
                        "O": p["output_tokens"], "N": users, "f": kept, "E": s["mean_e2el_ms"] / 1000,
                        "ttft": s["mean_ttft_ms"] / 1000, "R": x["target"].get("requests"),
                        "D": x["target"].get("duration_s"), "dur": x["ended_s"] - x["started_s"], "warm": warm})
    return out


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    rows = [r for a in argv for r in stages(Path(a))]
    alone = [r for r in rows if r["N"] == 1]
    a = np.array([[1, r["P"]] for r in alone], float)
    y = np.array([r["ttft"] for r in alone])
    (h, c), *_ = np.linalg.lstsq(a / y[:, None], np.ones_like(y), rcond=None)
    a = np.array([[r["O"] - 1, -(r["O"] - 1) * (1 - r["f"]), (r["N"] - 1) * r["P"], (r["N"] - 1) * r["O"]]
                  for r in rows], float)
    e = np.array([r["E"] for r in rows])
    rest = e - h - c * np.array([r["P"] for r in rows])
    (d, dm, p, q), *_ = np.linalg.lstsq(a / e[:, None], rest / e, rcond=None)
    print(f"\nttft_s={h:.4f}, prefill_s_per_token={c:.6f}, decode_step_s={d:.4f}, mlp_share={dm / d:.3f},\n"
          f"user_prompt_s_per_token={p:.6f}, user_output_s_per_token={q:.6f}\n")
    model = a @ np.array([d, dm, p, q]) + h + c * np.array([r["P"] for r in rows])
    for r, m in zip(rows, model):
        body = min(math.ceil(r["R"] / r["N"]) * r["E"] if r["R"] else math.inf,
                   math.ceil(r["D"] / r["E"]) * r["E"] if r["D"] else math.inf)
        print(f"{r['name']:<48} P={r['P']:<5} O={r['O']:<4} N={r['N']:<4} e2el {r['E']:7.3f} s, model {m:7.3f} s "
              f"({(m / r['E'] - 1) * 100:+5.1f}%), stage overhead {r['dur'] - r['warm'] - body:5.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
