"""The two sides of a comparison, each one or more trials of the same study, and what must match between them.

A side is a run directory (one trial), a repeated run (``serve-bench run --repeats N``: its trials), a
directory of run directories (each a trial: ``serve-bench run --out DIR`` run N times), or a report directory
(the runs its report.json names). Trials of one side must be the same study (the same load profiles); the two
sides must have the same hardware and models unless the user says otherwise, and only their matching load
profiles are compared.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serve_bench.errors import ConfigError
from serve_bench.report.inputs import RunData, read_run
from serve_bench.rundir import MANIFEST, read_json, series_runs

REPORT_JSON = "report.json"
# what "the same hardware" means: a different platform string (kernel patch level) is not a different machine
HARDWARE_KEYS = ("cpu_model", "logical_cpus", "gpus")


@dataclass
class Side:
    role: str  # baseline / candidate
    given: Path
    runs: list[RunData]  # one per trial
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> definition, as the runs ran it

    @property
    def trials(self) -> int:
        return len(self.runs)

    @property
    def hardware(self) -> dict[str, Any]:
        hw = self.runs[0].manifest.get("hardware") or {}
        return {k: _gpu_names(hw.get(k)) if k == "gpus" else hw.get(k) for k in HARDWARE_KEYS}

    @property
    def labels(self) -> dict[str, str]:
        """The runs' labels (--label); a key whose trials disagree shows every value."""
        out: dict[str, list[str]] = {}
        for run in self.runs:
            for k, v in ((run.manifest.get("study") or {}).get("labels") or {}).items():
                out.setdefault(k, [])
                if v not in out[k]:
                    out[k].append(v)
        return {k: " | ".join(v) for k, v in out.items()}

    @property
    def slo(self) -> dict[str, Any] | None:
        return self.runs[0].manifest.get("slo")

    def weights(self) -> dict[str, str | None]:
        """Checkpoint label -> its weights' checksum (None where the run did not record one)."""
        return {ck.label: ck.info.get("weights_sha256") for ck in self.runs[0].checkpoints}


def run_paths(path: Path) -> list[Path]:
    """The run directories ``path`` stands for, in name order (a run directory's name starts with its time)."""
    path = Path(path)
    if (path / MANIFEST).is_file():
        return [path]
    trials = series_runs(path)  # a repeated run: its trials, in the order they ran
    if trials:
        return trials
    if (path / REPORT_JSON).is_file():
        try:
            named = [Path(r["path"]) for r in read_json(path / REPORT_JSON).get("runs") or []]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            raise ConfigError(f"{path / REPORT_JSON} is not a serve-bench report") from None
        missing = [str(p) for p in named if not (p / MANIFEST).is_file()]
        if missing or not named:
            raise ConfigError(f"the report {path} was made from runs that are not here: {', '.join(missing)}",
                              hint="compare the run directories themselves")
        return named
    if path.is_dir():
        runs = sorted(p for p in path.iterdir() if (p / MANIFEST).is_file())
        if runs:
            return runs
    raise ConfigError(f"{path} is not a serve-bench run directory, a directory of runs, or a report directory",
                      hint="pass what `serve-bench run` printed (e.g. runs/20261204-101500-default), or a "
                           "directory holding several such runs (each a trial)")


def read_side(path: Path, role: str) -> Side:
    runs = [read_run(p) for p in run_paths(path)]
    side = Side(role=role, given=Path(path), runs=runs)
    for run in runs:
        profiles = {p.get("name"): p for p in run.manifest.get("profiles") or []}
        if not side.profiles:
            side.profiles = profiles
        elif profiles != side.profiles:
            raise ConfigError(f"the {role}'s trials are not the same study: {run.path} ran other load profiles "
                              f"than {runs[0].path}",
                              hint="trials of one side are runs of one study; compare them one against another")
    return side


def _gpu_names(gpus: Any) -> list[str]:
    return sorted(str(g.get("name")) for g in gpus or [] if isinstance(g, dict))


def mismatches(baseline: Side, candidate: Side) -> list[str]:
    """What differs between the sides that makes their figures not comparable: hardware and models."""
    out = []
    for key in HARDWARE_KEYS:
        a, b = baseline.hardware.get(key), candidate.hardware.get(key)
        if a != b:
            out.append(f"hardware: {key} is {a!r} in the baseline, {b!r} in the candidate")
    wa, wb = baseline.weights(), candidate.weights()
    for label in sorted(set(wa) & set(wb)):
        if wa[label] and wb[label] and wa[label] != wb[label]:
            out.append(f"model: checkpoint {label} has other weights (sha256 {wa[label][:12]}… against "
                       f"{wb[label][:12]}…)")
    return out


def matching_profiles(baseline: Side, candidate: Side) -> tuple[list[str], list[str]]:
    """The load profiles both sides ran alike, and a sentence for each one left out."""
    same, left = [], []
    for name in sorted(set(baseline.profiles) | set(candidate.profiles), key=str):
        a, b = baseline.profiles.get(name), candidate.profiles.get(name)
        if a is None or b is None:
            left.append(f"profile {name!r}: run by the {'candidate' if a is None else 'baseline'} only")
        elif a != b:
            fields = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            left.append(f"profile {name!r}: defined differently ({', '.join(fields)}), not compared")
        else:
            same.append(name)
    return same, left
