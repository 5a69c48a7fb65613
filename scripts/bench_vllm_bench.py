"""`serve-bench bench` against `vllm bench serve` (issue 21): one command line, both tools, the known-timing
engine, with the engine's own timings as the truth.

    .venv/bin/python scripts/bench_vllm_bench.py [--concurrency 1 16 64] [--prompts 200] [--out /tmp/sb-vb]

Per concurrency, both tools run `--backend openai --dataset-name random --random-input-len 32
--random-output-len 16 --ignore-eos --max-concurrency C --num-prompts N` against one engine (step 10 ms + 1 ms
per running sequence), in turns (vLLM first at odd concurrencies, serve-bench first at even ones). The truth
is the engine's per-request log over the same requests: TTFT from its receipt of the request to its first
token (nominal, as scheduled), TPOT from first to last token over tokens − 1, output throughput as tokens over
the span from the first receipt to the last token. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from click.testing import CliRunner

from serve_bench.cli.main import cli
from serve_bench.models.resolve import resolve
from serve_bench.simengine.params import EngineParams
from serve_bench.simengine.server import read_log, running

ENGINE = EngineParams(step_ms=10, per_seq_ms=1)
VLLM = ("import sys; from vllm.benchmarks.serve import add_cli_args, main; "
        "from vllm.utils.argparse_utils import FlexibleArgumentParser; p = FlexibleArgumentParser(); "
        "add_cli_args(p); main(p.parse_args(sys.argv[1:]))")


def truth(log: list[dict]) -> dict[str, float]:
    ttft = [r["first_token_s"] - r["recv_s"] for r in log]
    tpot = [(r["last_token_s"] - r["first_token_s"]) / (r["output_tokens"] - 1) for r in log if r["output_tokens"] > 1]
    span = max(r["last_token_s"] for r in log) - min(r["recv_s"] for r in log)
    return {"output_throughput": sum(r["output_tokens"] for r in log) / span,
            "median_ttft_ms": statistics.median(ttft) * 1000, "median_tpot_ms": statistics.median(tpot) * 1000}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    ap.add_argument("--prompts", type=int, default=200)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    out = a.out or Path(tempfile.mkdtemp(prefix="sb-vb-"))
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = str(resolve("default").path)
    print("| concurrency | tool | output tok/s | median TTFT ms | median TPOT ms | truth: tok/s, TTFT, TPOT |")
    print("|---|---|---|---|---|---|")
    for i, c in enumerate(a.concurrency):
        order = ["vllm", "serve-bench"] if i % 2 == 0 else ["serve-bench", "vllm"]
        for tool in order:
            log = out / f"c{c}-{tool}.jsonl"
            with running(ENGINE, log_path=log, model="m") as (url, _):
                args = ["--backend", "openai", "--base-url", url, "--model", "m", "--tokenizer", tokenizer,
                        "--dataset-name", "random", "--random-input-len", "32", "--random-output-len", "16",
                        "--ignore-eos", "--max-concurrency", str(c), "--num-prompts", str(a.prompts), "--seed", "1",
                        "--save-result", "--result-dir", str(out / f"c{c}-{tool}"), "--result-filename", "r.json"]
                if tool == "vllm":
                    subprocess.run([sys.executable, "-c", VLLM, *args], check=True, capture_output=True)
                else:
                    res = CliRunner().invoke(cli, ["bench", *args])
                    assert res.exit_code == 0, res.output
            r = json.loads((out / f"c{c}-{tool}" / "r.json").read_text())
            t = truth(read_log(log))
            print(f"| {c} | {tool} | {r['output_throughput']:.1f} | {r['median_ttft_ms']:.1f} | "
                  f"{r['median_tpot_ms']:.2f} | {t['output_throughput']:.1f}, {t['median_ttft_ms']:.1f}, "
                  f"{t['median_tpot_ms']:.2f} |", flush=True)
    print(f"\nresults: {out}")


if __name__ == "__main__":
    main()
