"""One directory per run; typed reading and writing of what goes in it: every reader (summary, report,
evaluation table, selfcheck, the dry run's history) reads its files through the models here.

    <run>/manifest.json                  versions, hardware, command line, resolved study, status
    <run>/summary.json                   every checkpoint × stage summary (recomputable from records)
    <run>/summary.csv                    the same rows as CSV
    <run>/results.md                     the comparison table that was printed
    <run>/<checkpoint>/checkpoint.json   path, checksum, pruning manifest of what was served
    <run>/<checkpoint>/server.log        the vLLM server's output
    <run>/<checkpoint>/records.jsonl     every request of every stage, raw timestamps
    <run>/<checkpoint>/stages/NN-<stage>.json          the stage's result and summary
    <run>/<checkpoint>/server_metrics/NN-<when>.prom   the server's /metrics at stage boundaries
    <run>/<checkpoint>/server_metrics/timeseries.jsonl its vllm: samples every few seconds while it served
    <run>/<checkpoint>/eval/                           accuracy: lm-eval's results on the same server
    <run>/dichotomy.md, dichotomy.json                 accuracy against the base across the checkpoints
    <run>/report/                                      the capacity report

A repeated run (``run --repeats N``) is a series directory: ``series.json`` (trials, order, status) and one run
directory per trial, ``trial-1`` … ``trial-N``, each laid out as above.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any, TypeVar

from pydantic import Field, ValidationError

from serve_bench.errors import ConfigError
from serve_bench.measure.stage_result import StageResult
from serve_bench.validation import Strict, validation_messages

MANIFEST = "manifest.json"
SUMMARY = "summary.json"
SUMMARY_CSV = "summary.csv"
RESULTS = "results.md"
RECORDS = "records.jsonl"
LOADGEN_LOG = "loadgen.log"  # the load process's own output (its workers' logs lie beside it)
EVAL_DIR = "eval"
SERIES = "series.json"  # a repeated run's directory: its trials are run directories trial-1, trial-2 … inside
M = TypeVar("M", bound=Strict)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "x"


def write_json(path: Path, data: Any) -> None:
    """Write aside, then rename: a crash never leaves half a JSON file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    tmp.replace(path)


def write_text(path: Path, text: str) -> None:
    """Write aside, then rename: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


class StageFile(StageResult):
    """A stage's result file (``<checkpoint>/stages/NN-<stage>.json``): the load process's result, where it
    ran, and what the orchestrator's observers added."""

    checkpoint: str
    profile: str | None = None
    index: int = Field(0, description="the stage's place in its checkpoint's run, from 1")
    server: dict[str, Any] | None = Field(None, description="the server's own counters over the stage, "
                                                            "reconciled with the records")
    energy: dict[str, Any] | None = None
    host: dict[str, Any] | None = Field(None, description="what else ran on the host during the stage "
                                                          "(observe.host_noise)")
    trial: int | None = Field(None, description="the trial of a repeated run (run --repeats), from 1")


class CheckpointFile(Strict):
    """``<checkpoint>/checkpoint.json``: what was served."""

    name: str
    label: str | None = None
    path: str | None = None
    origin: str | None = None
    base: str | None = Field(None, description="the checkpoint it was pruned from (itself for a base)")
    weights_sha256: str | None = None
    pruning: dict[str, Any] | None = None
    replicas: list[dict[str, Any]] | None = Field(None, description="launched replicas (--replicas N): each one's "
                                                                    "url, share of the machine and log")
    startup: dict[str, float | None] | None = Field(None, description="a launched server's start-up, seconds, "
                                                                      "from its log (serve/startup.py)")


class Manifest(Strict):
    """``manifest.json``: how the run was made and how it ended (written at its start, updated as it goes)."""

    status: str = "running"
    study: dict[str, Any] = Field(default_factory=dict)
    profiles: list[dict[str, Any]] = Field(default_factory=list)
    command: list[str] = Field(default_factory=list)
    started_utc: str | None = None
    ended_utc: str | None = None
    packages: dict[str, Any] = Field(default_factory=dict)
    hardware: dict[str, Any] = Field(default_factory=dict)
    checkpoints: list[Any] = Field(default_factory=list)
    slo: dict[str, Any] | None = None
    metrics_url: str | None = None
    problems: list[Any] = Field(default_factory=list)
    dichotomy: Any = None
    report: Any = None
    trial: dict[str, Any] | None = Field(None, description="a trial of a repeated run: its number, of how many, "
                                                           "the series directory, the checkpoints' order")


def series_runs(path: Path) -> list[Path] | None:
    """The trial run directories of a repeated run's series directory, in the order they ran; None when
    ``path`` is not a series."""
    if not (path / SERIES).is_file():
        return None
    try:
        names = read_json(path / SERIES).get("runs") or []
    except (OSError, ValueError, AttributeError):
        raise ConfigError(f"{path / SERIES} is not a serve-bench series file") from None
    return [path / str(n) for n in names if (path / str(n) / MANIFEST).is_file()]


def read_model(model: type[M], path: Path) -> M:
    """A run-directory file as its model; a file torn or edited by hand is a ConfigError naming it."""
    try:
        data = read_json(path)
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path}: not a readable JSON file ({err})") from None
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"{path} is not a serve-bench {model.__name__}:\n{validation_messages(err, path.name)}",
                          hint="it was edited or torn by hand, or written by another version of serve-bench") from None


def occupied(path: Path) -> bool:
    """Whether ``path`` exists as anything but an empty directory."""
    return path.exists() and (not path.is_dir() or any(path.iterdir()))


class RunDir:
    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls, parent: Path, study_name: str, *, stamped: bool = True) -> RunDir:
        """A new directory ``<time>-<study>`` in ``parent`` (``stamped=False``: ``<study>`` as it is, for a
        trial inside its series)."""
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        base = parent / (f"{stamp}-{_slug(study_name)}" if stamped else _slug(study_name))
        path, n = base, 1
        while path.exists():
            n += 1
            path = base.with_name(f"{base.name}-{n}")
        try:
            path.mkdir(parents=True)
        except OSError as err:
            raise ConfigError(f"cannot create the run directory {path}: {err.strerror}",
                              hint="choose a writable --runs-dir (runs_dir in the study)") from err
        return cls(path)

    @classmethod
    def at(cls, path: Path) -> RunDir:
        """``path`` itself as the run directory (run --out): created, or taken when it exists and is empty;
        never one that holds anything, so no earlier run's files are mixed in or overwritten."""
        if occupied(path):
            raise ConfigError(f"--out {path}: it already exists and is not an empty directory",
                              hint="name a new directory with --out, or give --runs-dir DIR for a new "
                                   "<time>-<name> directory inside DIR")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ConfigError(f"cannot create the run directory {path}: {err.strerror}",
                              hint="choose a writable --out") from err
        return cls(path)

    def checkpoint_dir(self, name: str) -> Path:
        d = self.path / _slug(name)
        d.mkdir(parents=True, exist_ok=True)
        return d

    def records_path(self, checkpoint: str) -> Path:
        return self.checkpoint_dir(checkpoint) / RECORDS

    def loadgen_log_path(self, checkpoint: str) -> Path:
        return self.checkpoint_dir(checkpoint) / LOADGEN_LOG

    def stage_path(self, checkpoint: str, index: int, stage: str) -> Path:
        return self.checkpoint_dir(checkpoint) / "stages" / f"{index:02d}-{_slug(stage)}.json"

    def server_metrics_path(self, checkpoint: str, index: int, when: str) -> Path:
        return self.checkpoint_dir(checkpoint) / "server_metrics" / f"{index:02d}-{_slug(when)}.prom"

    def server_timeseries_path(self, checkpoint: str) -> Path:
        return self.checkpoint_dir(checkpoint) / "server_metrics" / "timeseries.jsonl"

    def checkpoints(self) -> list[str]:
        return [p.name for p in sorted(self.path.iterdir()) if (p / "checkpoint.json").is_file()]

    def stage_results(self, checkpoint: str) -> list[StageFile]:
        return [read_model(StageFile, p) for p in sorted((self.path / checkpoint / "stages").glob("*.json"))]

    def checkpoint_info(self, checkpoint: str) -> CheckpointFile:
        return read_model(CheckpointFile, self.path / checkpoint / "checkpoint.json")

    def manifest(self) -> Manifest:
        return read_model(Manifest, self.path / MANIFEST)
