"""Expansion-ratio (GLU-MLP width) pruning: score neurons, keep the top k, rewrite.

The package imports torch only when pruning is asked for (:func:`prune` and its results, from
:mod:`serve_bench.prune.pruner`): reading a study, which names criteria and divisors, stays light.
"""

from __future__ import annotations

from typing import Any

from serve_bench.prune.plan import Target

MANIFEST = "pruning_manifest.json"

__all__ = ["MANIFEST", "PruneResult", "Target", "ckpt_manifest", "indices_sha256", "prune"]
_PRUNER = {"PruneResult", "ckpt_manifest", "indices_sha256", "prune"}


def __getattr__(name: str) -> Any:
    if name in _PRUNER:
        from serve_bench.prune import pruner  # pulls in torch: only when pruning

        return getattr(pruner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
