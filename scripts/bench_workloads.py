"""Which traffic does pruning help? The pruned model's speed-up over the base under prefill-heavy and
decode-heavy traffic, each at concurrency 1 and 16, on the vLLM CPU server.

For each checkpoint (the bundled model, then its pruned copy), ONE vLLM server
(``--max-model-len 2048``, the CPU defaults VllmServer adds) runs, one after
the other, the same closed-loop stages with serve-bench's load runner:

    prefill-heavy   log-normal prompts around --long-in tokens (std 15%), --short-out answers
    decode-heavy    prompts of --short-in tokens, log-normal answers around --long-out (std 15%)

each at concurrency 1 and 16 (``--requests-1`` / ``--requests-16`` requests
after a 2-request warm-up), ``ignore_eos`` (so both models do the same work:
the same seed gives both the same prompts and lengths). Speed-up = pruned /
base for output and total token throughput, and base / pruned for median TTFT
and TPOT. Prints a Markdown table; writes every summary to --out as JSON.

    .venv/bin/python scripts/bench_workloads.py --pruned ~/.cache/serve-bench/checkpoints/smollm2-135m-instruct-ppm-p40
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from serve_bench.load.runner import run_profile  # Locust (gevent) before the server module's requests
from serve_bench.models.resolve import resolve
from serve_bench.serve.server import ServerSpec, VllmServer
from serve_bench.workload.profiles import profile_from_data

KEYS = ("output_throughput", "total_token_throughput", "median_ttft_ms", "median_tpot_ms")


def profile(mix: str, users: int, requests: int, a: argparse.Namespace) -> dict[str, Any]:
    if mix == "prefill-heavy":
        lengths = {"input_lengths": {"kind": "lognormal", "mean_tokens": a.long_in, "std_tokens": 0.15 * a.long_in,
                                     "min_tokens": a.long_in // 2, "max_tokens": a.long_in * 3 // 2},
                   "output_tokens": a.short_out}
    else:
        lengths = {"input_tokens": a.short_in,
                   "output_lengths": {"kind": "lognormal", "mean_tokens": a.long_out,
                                      "std_tokens": 0.15 * a.long_out, "min_tokens": a.long_out // 2,
                                      "max_tokens": a.long_out * 3 // 2}}
    return {"name": f"{mix}-c{users}", "api": "chat", "ignore_eos": True, "seed": 1, "timeout_s": 900,
            "warmup": {"requests": 2}, **lengths,
            "stages": [{"kind": "concurrency", "users": users, "requests": requests}]}


def measure(path: Path, a: argparse.Namespace, log_dir: Path) -> dict[str, dict[str, Any]]:
    spec = ServerSpec(model_path=path, served_name="m", log_path=log_dir / f"{path.name}.log",
                      engine_args=["--max-model-len", "2048"])
    out: dict[str, dict[str, Any]] = {}
    with VllmServer(spec) as server:
        for mix in ("prefill-heavy", "decode-heavy"):
            for users, requests in ((1, a.requests_1), (16, a.requests_16)):
                prof = profile_from_data(profile(mix, users, requests, a), "bench")
                (result,) = run_profile(prof, url=server.url, model="m", model_path=str(path))
                s = result.summary
                out[f"{mix} c{users}"] = {**{k: s[k] for k in KEYS}, "completed": s["completed"],
                                          "failed": s["failed"], "input": s["realised_input_tokens"],
                                          "output": s["realised_output_tokens"], "warnings": result.warnings}
                print(json.dumps({"model": path.name, "cell": f"{mix} c{users}", **out[f"{mix} c{users}"]}),
                      flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pruned", type=Path, required=True, help="the pruned checkpoint directory")
    parser.add_argument("--long-in", type=int, default=1024)
    parser.add_argument("--short-out", type=int, default=8)
    parser.add_argument("--short-in", type=int, default=64)
    parser.add_argument("--long-out", type=int, default=256)
    parser.add_argument("--requests-1", type=int, default=6)
    parser.add_argument("--requests-16", type=int, default=32)
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "sb-workloads.json")
    a = parser.parse_args()
    log_dir = Path(tempfile.mkdtemp(prefix="sb-workloads-"))
    base = measure(resolve("default").path, a, log_dir)
    pruned = measure(a.pruned.expanduser(), a, log_dir)
    a.out.write_text(json.dumps({"base": base, "pruned": pruned, "args": vars(a)}, default=str, indent=1))
    print("\n| traffic | output tok/s base → pruned | speed-up | total tok/s speed-up | TTFT p50 ms base → pruned "
          "| TPOT p50 ms base → pruned |\n|---|---|---|---|---|---|")
    for cell in base:
        b, p = base[cell], pruned[cell]
        print(f"| {cell} | {b['output_throughput']:.1f} → {p['output_throughput']:.1f} | "
              f"{p['output_throughput'] / b['output_throughput']:.2f}x | "
              f"{p['total_token_throughput'] / b['total_token_throughput']:.2f}x | "
              f"{b['median_ttft_ms']:.0f} → {p['median_ttft_ms']:.0f} | "
              f"{b['median_tpot_ms']:.1f} → {p['median_tpot_ms']:.1f} |")


if __name__ == "__main__":
    main()
