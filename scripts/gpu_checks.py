#!/usr/bin/env python
"""The GPU checks of issue 20, as one prepared run of under 10 minutes on a machine with an NVIDIA GPU, PyTorch,
nvidia-ml-py and zeus (no vLLM, no internet: ``scripts/gpu_checks.sh`` installs zeus and its dependencies
from wheels carried beside the tree):

1. energy (serve_bench.observe.gpu_check): serve-bench's own sampler in a run's process layout against NVML's
   integrated power readings over a bf16 matmul load in a child process, and two idle baselines; targets
   5% and 5%; the sampler's achieved period and cost per reading;
2. pruned MLP widths (serve_bench.prune.width_timing): one bf16 GLU MLP block at Llama-3.2-1B's shape
   (hidden 2048, width 8192) at the paper's pruning levels and their 128-rounded widths, at 1 to 4096
   tokens: speed-up against the weight-bytes limit, and whether 128 alignment is faster.

Writes gpu-checks.json and gpu-checks.md to --out and prints the Markdown. Exit 0 when the energy targets
are met, 1 when not, 2 without an NVIDIA GPU.

    python scripts/gpu_checks.py [--gpu 0] [--out DIR] [--quick]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from serve_bench.observe.gpu_check import check_energy, no_gpu_reason  # noqa: E402
from serve_bench.prune import width_timing  # noqa: E402


def _n(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def energy_markdown(e: dict) -> str:
    if "error" in e:
        return f"energy check: {e['error']} ({e.get('reason')})\n"
    load, s, a, b = e["load"], e["sampler"], e["idle_a"], e["idle_b"]
    return "\n".join([
        f"Energy through serve-bench's sampler, {e['gpu']} (machine GPU {e['machine_gpu']}), bf16 "
        f"{e['matmul']['n']}² matmuls in a child process:", "",
        "| window | serve-bench's series | NVML power integral | ratio | readings | target |",
        "|---|---|---|---|---|---|",
        f"| load {load['duration_s']:.1f} s | {_n(load['series_joules'], '.1f')} J | "
        f"{_n(load['nvml_power_integral_joules'], '.1f')} J | {_n(load['ratio_series_over_integral'], '.4f')} | "
        f"{load['series_samples']} | {'met' if load['within_5pct'] else 'MISSED'} (5%) |",
        f"| idle A {a['duration_s']:.1f} s | {_n(a['series_watts'], '.2f')} W | {_n(a['nvml_power_watts'], '.2f')} W "
        f"| | {a['series_samples']} | |",
        f"| idle B {b['duration_s']:.1f} s | {_n(b['series_watts'], '.2f')} W | {_n(b['nvml_power_watts'], '.2f')} W "
        f"| B/A {_n(e['idle_ratio_b_over_a'], '.4f')} | {b['series_samples']} | "
        f"{'met' if e['idle_within_5pct'] else 'MISSED'} (5%) |", "",
        f"Sampler: target period {s['target_period_s'] * 1000:.0f} ms, median {s['median_period_s'] * 1000:.1f} ms, "
        f"p99 {s['p99_period_s'] * 1000:.1f} ms over {s['readings']} readings; cost per reading median "
        f"{s['median_cost_ms']:.3f} ms, max {s['max_cost_ms']:.3f} ms.", ""])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpu", type=int, default=0, help="machine GPU number")
    ap.add_argument("--out", type=Path, default=Path("gpu-checks"))
    ap.add_argument("--quick", action="store_true", help="shorter windows (idle 10 s, load 15 s): the gpu tests")
    a = ap.parse_args()
    why = no_gpu_reason()
    if why:
        print(why, file=sys.stderr)
        return 2
    a.out.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    spans = dict(idle_s=10.0, warmup_s=5.0, load_s=15.0) if a.quick else {}
    energy = check_energy(a.gpu, **spans)
    widths = width_timing.check_widths()
    result = {"machine": {"python": platform.python_version(), "host": platform.node()},
              "wall_s": time.monotonic() - began, "energy": energy, "mlp_widths": widths}
    (a.out / "gpu-checks.json").write_text(json.dumps(result, indent=2) + "\n")
    text = energy_markdown(energy) + "\n" + width_timing.markdown(widths)
    (a.out / "gpu-checks.md").write_text(text)
    print(text)
    print(f"wall time {result['wall_s']:.0f} s; results in {a.out}")
    return 0 if energy.get("passed") else 1


if __name__ == "__main__":
    sys.exit(main())
