"""How much faster does evaluation run with requests in flight? lm-eval's sequential setting (one request
at a time) against serve-bench's concurrency, on ONE warm vLLM CPU server, the same tasks and items.

The server (``--max-model-len 2048``, the CPU defaults VllmServer adds) first answers a small warm-up
evaluation (arc_challenge and gsm8k, 2 items each: vLLM's first prompt-logprobs pass is slow once);
then each task set runs at every --concurrency, one after the other, through serve-bench's own
evaluation path (``evaluate_served``). Wall times per task are lm-eval's, without the interpreter's
start; "total" includes lm-eval's task loading. Prints a Markdown table; writes every result to --out.

    .venv/bin/python scripts/bench_eval_concurrency.py --data-dir ../shared/datasets
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from serve_bench.evaluate.runner import evaluate_served
from serve_bench.evaluate.settings import EvalSettings
from serve_bench.models.resolve import resolve
from serve_bench.serve.server import ServerSpec, VllmServer

# (label, tasks, limit): None is the default study's quick subset
SETS = [("default study's quick subset", None, None),
        ("arc_challenge, 100 questions", ["arc_challenge"], 100),
        ("gsm8k and truthfulqa_mc2, 24 items each", ["gsm8k", "truthfulqa_mc2"], 24)]


def run_set(url: str, tok: Path, data_dir: Path, tasks: list[str] | None, limit: int | None, conc: int,
            out: Path) -> dict[str, float]:
    fields = {"num_concurrent": conc, "data_dir": data_dir, "limit": limit}
    if tasks:
        fields["tasks"] = tasks
    t0 = time.perf_counter()
    result = evaluate_served(url, "m", tok, EvalSettings(**fields), out)
    walls = {name: round(s["wall_s"], 1) for name, s in result.scores.items()}
    return {**walls, "total": round(time.perf_counter() - t0, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="default")
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--concurrency", default="1,8,32", help="comma-separated; the first is the baseline")
    p.add_argument("--out", type=Path, default=Path("/tmp/bench_eval_concurrency"))
    a = p.parse_args()
    levels = [int(c) for c in a.concurrency.split(",")]
    path = resolve(a.model).path
    a.out.mkdir(parents=True, exist_ok=True)
    spec = ServerSpec(model_path=path, served_name="m", log_path=a.out / "server.log",
                      engine_args=["--max-model-len", "2048"])
    rows: list[dict[str, object]] = []
    with VllmServer(spec) as server:
        run_set(server.url, path, a.data_dir, ["arc_challenge", "gsm8k"], 2, 8, a.out / "warm-up")
        for i, (label, tasks, limit) in enumerate(SETS):
            for conc in levels:
                walls = run_set(server.url, path, a.data_dir, tasks, limit, conc, a.out / f"set{i}-c{conc}")
                rows.append({"set": label, "concurrency": conc, "wall_s": walls})
                print(json.dumps(rows[-1]), flush=True)
    (a.out / "results.json").write_text(json.dumps(rows, indent=1))
    print("\n| task set | task | " + " | ".join(f"c{c}" for c in levels) + f" | speed-up c{levels[-1]} |")
    print("|---|---|" + "---|" * (len(levels) + 1))
    for label, _, _ in SETS:
        mine = {r["concurrency"]: r["wall_s"] for r in rows if r["set"] == label}
        for task in mine[levels[0]]:
            cells = " | ".join(f"{mine[c][task]:.1f} s" for c in levels)
            print(f"| {label} | {task} | {cells} | {mine[levels[0]][task] / mine[levels[-1]][task]:.1f}x |")


if __name__ == "__main__":
    main()
