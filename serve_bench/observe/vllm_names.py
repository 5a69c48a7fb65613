"""vLLM's metric names across releases, so that a dashboard written for one release still draws on another.

The dashboards (``dashboards/``) and the server-side reconciliation are written with the names vLLM 0.32
exports (the version ``pyproject.toml`` pins for both builds). Some of those names are newer than older
releases: :data:`OLDER` maps each to the name earlier releases exported for the same series. Given what a
server actually exports (its ``/metrics``), :func:`adapt` rewrites a query to the exported name where only
the other one is there, and names what neither matches, as a warning: a panel that would be empty is said
so, never left silently broken.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

WRITTEN_FOR = "0.32"
# name as the dashboards have it (vLLM 0.32) → the name vLLM 0.10 and earlier exported for the same series
OLDER = {
    "vllm:kv_cache_usage_perc": "vllm:gpu_cache_usage_perc",
    "vllm:prefix_cache_hits": "vllm:gpu_prefix_cache_hits",
    "vllm:prefix_cache_queries": "vllm:gpu_prefix_cache_queries",
    "vllm:inter_token_latency_seconds": "vllm:time_per_output_token_seconds",
}
_SUFFIXES = ("_created", "_bucket", "_total", "_count", "_sum")  # the longest first where one ends another
_BASES = {*OLDER, *OLDER.values()}


def _split(name: str) -> tuple[str, str]:
    for suffix in _SUFFIXES:
        if name.endswith(suffix) and name[: -len(suffix)] in _BASES:
            return name[: -len(suffix)], suffix
    return name, ""


def alternative(name: str) -> str | None:
    """The other release's name for ``name`` (either way), with the same suffix; None when it has none."""
    base, suffix = _split(name)
    other = OLDER.get(base) or next((new for new, old in OLDER.items() if old == base), None)
    return None if other is None else other + suffix


def adapt(expr: str, have: set[str], names: Iterable[str]) -> tuple[str, list[str], list[str]]:
    """``expr`` with each vLLM name in ``names`` that the server lacks replaced by its exported alternative;
    and the replacements and the names that remain missing, as text."""
    renamed, missing = [], []
    for name in sorted(n for n in names if n.startswith("vllm:") and n not in have):
        other = alternative(name)
        if other is not None and other in have:
            expr = re.sub(rf"(?<![\w:]){re.escape(name)}(?![\w:])", other, expr)
            renamed.append(f"{name} → {other}")
        else:
            missing.append(name)
    return expr, renamed, missing


def adapt_board(board: dict[str, Any], have: set[str]) -> tuple[list[str], list[str]]:
    """Rewrite every panel query of ``board`` in place to the names ``have`` holds; (renamed, missing), each
    entry naming the panel."""
    from serve_bench.observe.dashboards import metric_names, panels

    renamed: list[str] = []
    missing: list[str] = []
    for panel in panels(board):
        for target in panel.get("targets", []):
            expr = target.get("expr")
            if not expr:
                continue
            target["expr"], r, m = adapt(expr, have, metric_names(expr))
            renamed += [f"{panel.get('title')}: {x}" for x in r]
            missing += [f"{panel.get('title')}: {x}" for x in m]
    return sorted(set(renamed)), sorted(set(missing))


def check_text(text: str | None) -> dict[str, list[str]] | None:
    """For a server's ``/metrics`` text: which of the packaged dashboards' vLLM names it lacks, and which of
    those an older name of it stands in for (the dashboards command rewrites those; the rest stay empty)."""
    if not text:
        return None
    import copy

    from serve_bench.observe.dashboards import DASHBOARDS, load
    from serve_bench.observe.server_metrics import parse

    have = set(parse(text))  # the vllm: sample names, as Prometheus stores them (x_bucket, x_total …)
    if not have:
        return None
    renamed: list[str] = []
    missing: list[str] = []
    for path in DASHBOARDS:
        r, m = adapt_board(copy.deepcopy(load(path)), have)
        renamed += r
        missing += m
    return {"renamed": renamed, "missing": missing}
