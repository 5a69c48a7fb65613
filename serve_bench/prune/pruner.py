"""Pruning a checkpoint: score every layer's neurons, keep the top k of each target, rewrite once."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from serve_bench import __version__
from serve_bench.errors import ConfigError
from serve_bench.models.checkpoint import Checkpoint
from serve_bench.models.resolve import ResolvedModel
from serve_bench.prune import MANIFEST, criteria
from serve_bench.prune.families import detect
from serve_bench.prune.plan import DEFAULT_DIVISOR, Plan, Target, plan
from serve_bench.prune.rewrite import Output, check_destinations, output_nbytes, write_all


@dataclass(frozen=True)
class PruneResult:
    path: Path
    plan: Plan
    manifest: dict


def prune(model: ResolvedModel, targets: list[Target], *, out: Path, criterion: str = criteria.DEFAULT,
          divisor: int = DEFAULT_DIVISOR, overwrite: bool = False, source_sha256: str | None = None,
          progress: Callable[[int, int], None] | None = None) -> list[PruneResult]:
    """``source_sha256``: the source's weight checksum when the caller has it already
    (hashing a large checkpoint means reading all of it). ``progress(done, total)``: bytes of the source
    read so far, over both passes (scoring the gate and up rows, then rewriting every tensor)."""
    if not targets:
        raise ConfigError("no pruning target given", hint="pass --prune 0.2 0.4 or --expansion-ratio 2.4")
    crit_name, score = criteria.get(criterion)
    ckpt = Checkpoint.open(model.path)
    layout = detect(ckpt)
    plans = [plan(t, layout.intermediate_size, layout.hidden_size, divisor) for t in targets]
    seen: dict[str, Target] = {}
    for p in plans:
        if p.target.label in seen:
            raise ConfigError(f"pruning target {p.target.label} is given twice")
        seen[p.target.label] = p.target
    outputs = [Output(p, Path(out) / f"{model.name}-{crit_name}-{p.target.label}", {}) for p in plans]
    check_destinations(outputs, overwrite)

    def size(name: str) -> int:
        return ckpt.tensors[name].end - ckpt.tensors[name].start

    scored = sum(size(names["gate"]) + size(names["up"]) for names in layout.layers.values())
    total = scored + sum(size(name) for name in ckpt.tensors)
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    for layer, names in layout.layers.items():
        scores = score(ckpt.read(names["gate"]), ckpt.read(names["up"]))
        for o in outputs:
            o.keep[layer] = criteria.keep_indices(scores, o.plan.k)
        advance(size(names["gate"]) + size(names["up"]))

    source_checksum = source_sha256 or ckpt.checksum()
    roles = {name: (layer, role) for layer, names in layout.layers.items() for role, name in names.items()}
    params_before = ckpt.num_parameters()

    def manifest_for(o: Output) -> dict:
        removed = layout.intermediate_size - o.plan.k
        per_layer = sum(ckpt.tensors[n].numel // layout.intermediate_size
                        for names in layout.layers.values() for role, n in names.items() if role != "down_bias")
        return {
            "serve_bench_version": __version__,
            "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "command": sys.argv,
            "source": {
                "name": model.name, "path": str(model.path), "origin": model.source,
                "weights_sha256": source_checksum, "family": layout.family,
                "pruning": ckpt_manifest(ckpt),
            },
            "criterion": crit_name,
            "divisor": o.plan.divisor,
            "requested": {"prune": o.plan.target.prune, "expansion_ratio": o.plan.target.expansion_ratio},
            "k_unrounded": o.plan.k_unrounded,
            "k": o.plan.k,
            "intermediate_size_before": layout.intermediate_size,
            "hidden_size": layout.hidden_size,
            "num_layers": layout.num_layers,
            "realised_prune": o.plan.realised_prune,
            "expansion_ratio_before": o.plan.original_expansion_ratio,
            "expansion_ratio": o.plan.expansion_ratio,
            "parameters_before": params_before,
            "parameters_after": params_before - removed * per_layer,
            "weights_bytes": output_nbytes(ckpt, roles, o.plan.k),
            "kept_indices_sha256": {str(layer): indices_sha256(idx) for layer, idx in o.keep.items()},
            "warnings": o.plan.warnings,
        }

    manifests: dict[Path, dict] = {}

    def remember(o: Output) -> dict:
        manifests[o.dest] = manifest_for(o)
        return manifests[o.dest]

    write_all(ckpt, layout, outputs, remember, overwrite, advance)
    return [PruneResult(o.dest, o.plan, manifests[o.dest]) for o in outputs]


def indices_sha256(idx: torch.Tensor) -> str:
    """sha256 of the kept indices as little-endian int64, so anyone can recompute it."""
    return hashlib.sha256(idx.to(torch.int64).numpy().astype("<i8").tobytes()).hexdigest()


def ckpt_manifest(ckpt: Checkpoint) -> dict | None:
    """The pruning manifest of a source that was itself pruned, kept for lineage."""
    path = ckpt.path / MANIFEST
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except json.JSONDecodeError:
        return None
