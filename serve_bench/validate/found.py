"""Validations kept beside a run (``<run>/validations/*/validation.json``), as the report reads them: light, so
that the report can import it without the replay's machinery."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from serve_bench.rundir import read_json

VALIDATIONS = "validations"
VALIDATION_JSON, VALIDATION_MD = "validation.json", "validation.md"


def validations(run_dirs: Iterable[Path]) -> list[dict[str, Any]]:
    """Each finished validation of these runs, oldest first: where, the checkpoint, replicas, whether the plan
    held, the measured scaling efficiency and its interval."""
    found = []
    for run in run_dirs:
        for path in Path(run).glob(f"{VALIDATIONS}/*/{VALIDATION_JSON}"):
            try:
                v = read_json(path)
            except (OSError, ValueError):
                continue
            if isinstance(v, dict):
                found.append((path.stat().st_mtime, {
                    "path": str(path.parent), "checkpoint": v.get("checkpoint"), "replicas": v.get("replicas"),
                    "holds": v.get("holds"), "scaling_efficiency": v.get("scaling_efficiency"),
                    "scaling_efficiency_ci": v.get("scaling_efficiency_ci"),
                    "capacity_status": v.get("capacity_status")}))
    return [v for _, v in sorted(found, key=lambda x: x[0])]


def measured_efficiency(run_dirs: Iterable[Path]) -> tuple[float, dict[str, Any]] | None:
    """The newest validation's measured scaling efficiency (None: no validation measured one)."""
    measured = [v for v in validations(run_dirs) if v.get("scaling_efficiency")]
    return (float(measured[-1]["scaling_efficiency"]), measured[-1]) if measured else None
