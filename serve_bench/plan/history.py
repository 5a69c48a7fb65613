"""Stage timings measured by earlier runs on a machine like this one, used instead of the model."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serve_bench.environment import _cpu_model
from serve_bench.errors import ConfigError
from serve_bench.rundir import MANIFEST, SERIES, RunDir
from serve_bench.workload.profiles import LoadProfile


@dataclass
class History:
    source: str
    stages: dict[tuple[str, str, str], tuple[float, int, int]]  # (checkpoint, profile, stage) → (s, sent, warm-up)


def profile_fingerprint(profile: LoadProfile | dict[str, Any]) -> str:
    data = profile.model_dump(mode="json") if isinstance(profile, LoadProfile) else profile
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def run_dirs(out_dir: Path) -> list[Path]:
    """The run directories in ``out_dir``: each run, and each trial of a repeated run (in its series)."""
    found = []
    for p in out_dir.iterdir():
        if (p / MANIFEST).is_file():
            found.append(p)
        elif (p / SERIES).is_file():
            found += [t for t in p.iterdir() if (t / MANIFEST).is_file()]
    return found


def read_history(out_dir: Path, *, cpu: tuple[str | None, int | None] | None = None) -> History | None:
    """Stage timings of earlier runs in ``out_dir`` on a machine like this one (latest run wins)."""
    if cpu is None:
        cpu = (_cpu_model(), os.cpu_count())
    stages: dict[tuple[str, str, str], tuple[float, int, int]] = {}
    used: list[str] = []
    try:
        runs = sorted(run_dirs(out_dir), reverse=True)
    except OSError:
        return None
    for path in runs:
        run = RunDir(path)
        try:
            manifest = run.manifest()
            hw = manifest.hardware
            if (hw.get("cpu_model"), hw.get("logical_cpus")) != cpu:
                continue
            prints = {p["name"]: profile_fingerprint(p) for p in manifest.profiles}
            found = False
            for result in (r for name in run.checkpoints() for r in run.stage_results(name)):
                if result.server_died or result.stopped_early or result.profile not in prints:
                    continue
                key = (result.checkpoint, prints[result.profile], result.stage)
                if key in stages:
                    continue
                warm = int(result.summary.get("warmup_excluded") or 0)
                stages[key] = (result.ended_s - result.started_s, result.records, warm)
                found = True
            if found:
                used.append(path.name)
        except (ConfigError, KeyError, TypeError):  # a run this version cannot read is no history
            continue
    if not stages:
        return None
    shown = str(out_dir / used[0]) + (f" and {len(used) - 1} earlier run(s)" if len(used) > 1 else "")
    return History(shown, stages)
