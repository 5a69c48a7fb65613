"""Where a launched server's start-up went, read from vLLM's own log: loading the weights, initialising the
engine, and within that the time spent compiling (torch.compile) and capturing CUDA graphs, so that a run
shows compilation apart from its measured stages (none of it is inside a stage: stages begin once the server
answers). vLLM 0.11–0.32 log these lines; one that is missing (a CPU build with --enforce-eager compiles
nothing) is simply absent. With several workers (tensor parallelism) each logs its own: the longest counts,
since the engine waits for the slowest."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

_LINES = {
    "weights_load_s": re.compile(r"Loading weights took ([\d.]+) seconds"),
    "model_load_s": re.compile(r"Model loading took [\d.]+ GiB(?: memory)? and ([\d.]+) seconds"),
    "engine_init_s": re.compile(r"init engine \(profile, create kv cache, warmup model\) took ([\d.]+) s"),
    "compile_s": re.compile(r"torch\.compile took ([\d.]+) s in total|\(compilation: ([\d.]+) s"),
    "graph_capture_s": re.compile(r"Graph capturing finished in ([\d.]+) secs"),
}
WORDS = {"weights_load_s": "weights", "model_load_s": "model load", "engine_init_s": "engine init",
         "compile_s": "compilation", "graph_capture_s": "CUDA graphs"}


def read_startup(log: Path, ready_s: float | None = None) -> dict[str, Any]:
    """The start-up phases found in ``log`` (seconds), with ``ready_s``: serve-bench's own wall time from
    launching the server to its first answer."""
    out: dict[str, Any] = {"ready_s": ready_s}
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return out
    for key, pattern in _LINES.items():
        found = [float(next(g for g in m.groups() if g)) for m in pattern.finditer(text)]
        if found:
            out[key] = max(found)
    return out


def describe(startup: dict[str, Any]) -> str:
    """One line: ``ready in 41 s (compilation 18 s, CUDA graphs 6 s, weights 3 s)``."""
    parts = [f"{WORDS[k]} {startup[k]:.0f} s" for k in ("compile_s", "graph_capture_s", "weights_load_s")
             if (startup.get(k) or 0) >= 0.5]  # what rounds to 0 s says nothing
    head = f"ready in {startup['ready_s']:.0f} s" if startup.get("ready_s") is not None else "ready"
    return head + (f" ({', '.join(parts)})" if parts else "")
