"""How much faster is a pruned GLU MLP on a GPU, and does rounding its width to a multiple of 128 help?

One MLP block as vLLM runs it (gate and up fused into one matmul, SiLU(gate) × up, down), in bf16 at a
given shape (default Llama-3.2-1B's: hidden 2048, width 8192), for the widths the paper's pruning levels
give (``k_for_fraction``) and those widths rounded to a multiple of 128 (``round_to_divisor``: 7373 against
7424, 4916 against 4864 …). Timed with CUDA events: per token count, a warm-up, then the median of
``repeats`` runs of ``iters`` calls. The weight-bytes limit of the speed-up is full width / k: at small token
counts the block reads its weights once per call and little else, so time scales with the bytes read;
at large ones it is compute-bound and scales with the flops, the same ratio. Needs PyTorch with CUDA.
"""

from __future__ import annotations

import statistics
from typing import Any

from serve_bench.prune.plan import k_for_fraction, round_to_divisor

PAPER_FRACTIONS = (0.1, 0.2, 0.4)
TOKENS = (1, 16, 256, 4096)  # decode at batch 1 and 16, a batched decode, a prefill chunk


def widths(intermediate: int, fractions: tuple[float, ...] = PAPER_FRACTIONS) -> list[dict[str, Any]]:
    """Each level's exact width and its 128-rounded width."""
    exact = {p: k_for_fraction(intermediate, p) for p in fractions}
    return [{"fraction": p, "k": k, "k128": round_to_divisor(k, 128, intermediate)} for p, k in exact.items()]


def time_mlp(k: int, hidden: int, tokens: int, *, iters: int = 50, repeats: int = 5) -> float:
    """Median milliseconds per call of one bf16 GLU MLP block of width ``k``."""
    import torch

    torch.manual_seed(0)
    dev, dt = "cuda", torch.bfloat16
    gate_up = torch.randn(2 * k, hidden, device=dev, dtype=dt) * 0.02
    down = torch.randn(hidden, k, device=dev, dtype=dt) * 0.02
    x = torch.randn(tokens, hidden, device=dev, dtype=dt)

    def block() -> torch.Tensor:
        gu = x @ gate_up.t()
        g, u = gu.split(k, dim=-1)
        return (torch.nn.functional.silu(g) * u) @ down.t()

    for _ in range(10):
        block()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            block()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / iters)
    return statistics.median(times)


def check_widths(hidden: int = 2048, intermediate: int = 8192, tokens: tuple[int, ...] = TOKENS) -> dict[str, Any]:
    """Every width at every token count: milliseconds, speed-up over the full width, the weight-bytes limit,
    and for each level whether its 128-rounded width is faster than its exact one (per ms, and per kept
    neuron, since the rounded width keeps a different number)."""
    import torch

    levels = widths(intermediate)
    ks = sorted({intermediate, *(w["k"] for w in levels), *(w["k128"] for w in levels)}, reverse=True)
    ms = {t: {k: time_mlp(k, hidden, t) for k in ks} for t in tokens}
    rows = []
    for t in tokens:
        full = ms[t][intermediate]
        for w in levels:
            exact, rounded = ms[t][w["k"]], ms[t][w["k128"]]
            rows.append({"tokens": t, "fraction": w["fraction"], "k": w["k"], "k128": w["k128"],
                         "ms_full": full, "ms_k": exact, "ms_k128": rounded,
                         "speedup_k": full / exact, "limit_k": intermediate / w["k"],
                         "speedup_k128": full / rounded, "limit_k128": intermediate / w["k128"],
                         "k128_faster": rounded < exact,
                         "k128_faster_per_neuron": rounded / w["k128"] < exact / w["k"]})
    return {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "hidden": hidden,
            "intermediate": intermediate, "dtype": "bfloat16", "ms": {str(t): {str(k): v for k, v in row.items()}
                                                                     for t, row in ms.items()}, "rows": rows}


def markdown(result: dict[str, Any]) -> str:
    lines = [f"MLP block, bf16, hidden {result['hidden']}, full width {result['intermediate']}, "
             f"{result['gpu']}, torch {result['torch']}", "",
             "| tokens | pruned | k | ms | speed-up (limit) | k128 | ms | speed-up (limit) | 128 faster |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['tokens']} | {r['fraction']:.0%} | {r['k']} | {r['ms_k']:.4f} | "
                     f"{r['speedup_k']:.2f} ({r['limit_k']:.2f}) | {r['k128']} | {r['ms_k128']:.4f} | "
                     f"{r['speedup_k128']:.2f} ({r['limit_k128']:.2f}) | "
                     f"{'yes' if r['k128_faster'] else 'no'}"
                     f"{' (per neuron: yes)' if r['k128_faster_per_neuron'] else ''} |")
    return "\n".join(lines) + "\n"
