"""The checkpoints a study serves: each model, and its pruned variants (made
once and reused while the source and the pruning settings are unchanged)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serve_bench import settings
from serve_bench.errors import ConfigError
from serve_bench.models.checkpoint import Checkpoint
from serve_bench.models.resolve import ResolvedModel, resolve
from serve_bench.prune import MANIFEST, Target, prune
from serve_bench.prune.criteria import get as get_criterion
from serve_bench.study import StudySpec


@dataclass(frozen=True)
class ServedCheckpoint:
    name: str
    path: Path
    origin: str  # bundled, local, hub, pruned
    weights_sha256: str
    base: str  # name of the unpruned model it comes from
    pruning: dict[str, Any] | None = None
    label: str = ""  # short, for tables: base, p20, p40 (prefixed by the model's name when a study has several)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "label": self.label or self.name, "path": str(self.path), "origin": self.origin,
                "base": self.base, "weights_sha256": self.weights_sha256, "pruning": self.pruning}


def _silent(*args: Any) -> None:
    pass


def prepare(study: StudySpec, say: Callable[[str], None] = _silent,
            progress: Callable[[str, int, int], None] = _silent) -> list[ServedCheckpoint]:
    """``say(text)``: what is being done now; ``progress(text, done, total)``: how far (pruning, in bytes)."""
    out: list[ServedCheckpoint] = []
    settings_ = study.prune
    targets = [Target(prune=p) for p in settings_.prune]
    targets += [Target(expansion_ratio=r) for r in settings_.expansion_ratio]
    pruned_root = study.checkpoints_dir or settings.home() / "checkpoints"
    several = len(study.models) > 1
    for entry in study.models:
        say(f"resolving {entry.model} (the bundled model is converted on first use)" if entry.model == "default"
            else f"resolving {entry.model}")
        resolved = resolve(entry.model)
        if entry.name:
            resolved = ResolvedModel(entry.name, resolved.path, resolved.source)
        say(f"{resolved.name}: checksum of its weights")
        source_sum = Checkpoint.open(resolved.path).checksum()

        model = entry.name or resolved.name

        def label(short: str, model: str = model) -> str:
            return f"{model}-{short}" if several else short

        if settings_.include_base or not targets:
            out.append(ServedCheckpoint(resolved.name, resolved.path, resolved.source, source_sum, resolved.name,
                                        label=model if several else "base"))
        if not targets:
            continue
        criterion = get_criterion(settings_.criterion)[0]
        reusable, todo = {}, []
        for t in targets:
            dest = pruned_root / f"{resolved.name}-{criterion}-{t.label}"
            m = _manifest(dest)
            if m and m["source"]["weights_sha256"] == source_sum and m["criterion"] == criterion \
                    and m["divisor"] == settings_.divisor \
                    and m["requested"] == {"prune": t.prune, "expansion_ratio": t.expansion_ratio}:
                reusable[t] = (dest, m)
            else:
                todo.append(t)
        if todo:
            what = f"pruning {resolved.name} ({criterion}): {', '.join(t.label for t in todo)}"
            say(what)
            for r in prune(resolved, todo, out=pruned_root, criterion=criterion, divisor=settings_.divisor,
                           overwrite=True, source_sha256=source_sum,
                           progress=lambda done, total: progress(what, done, total)):
                reusable[r.plan.target] = (r.path, r.manifest)
        if reusable:
            say(f"{resolved.name}: checksum of the pruned copies")
        for t in targets:
            dest, m = reusable[t]
            out.append(ServedCheckpoint(dest.name, dest, "pruned", Checkpoint.open(dest).checksum(), resolved.name, m,
                                        label=label(t.label)))
    names = [c.name for c in out]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise ConfigError(f"two checkpoints would share the name {sorted(dupes)[0]!r}",
                          hint="give the models distinct `name:` fields in the study")
    return out


def _manifest(dest: Path) -> dict[str, Any] | None:
    try:
        return json.loads((dest / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError):
        return None
