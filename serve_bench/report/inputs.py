"""Run directories read back into what the report analyses: per checkpoint, per stage, the raw records'
per-request arrays (:func:`metrics.request_arrays`) and the stage summary recomputed from them
(:func:`metrics.summarize`), never the rounded figures printed during the run; beside them the stage's
flags (load generator saturated, server died, stopped early, requests rejected) and its energy, measured
or not, as the run wrote them."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from serve_bench.errors import ConfigError
from serve_bench.measure.metrics import completed, life_s, measured_records, request_arrays, summarize, window_shares
from serve_bench.measure.records import RequestRecord, read_records
from serve_bench.rundir import MANIFEST, RECORDS, RunDir, StageFile

STATUS_WORDS = {"completed": "finished", "failed": "finished with problems", "interrupted": "interrupted",
                "running": "still running (or ended without closing its manifest)"}


@dataclass(eq=False)  # compared by identity: it holds arrays
class StageData:
    index: int
    name: str
    profile: str | None
    load_axis: str | None  # "concurrency" (users), "rate" (requests/s) or None (a ramp: no single load)
    load: float | None
    load_text: str
    flags: list[str]
    started_s: float | None
    ended_s: float | None
    summary: dict[str, Any]  # metrics.summarize over the raw records
    arrays: dict[str, np.ndarray]  # metrics.request_arrays over the completed, measured requests
    attempted: int
    energy: dict[str, Any]
    kind: str = ""  # the stage's kind in its result file (concurrency, rate, ramp, replay…)

    @property
    def usable(self) -> bool:
        """On the load curve: a single load level, requests completed, and no flag."""
        return self.load is not None and not self.flags and self.summary.get("completed", 0) > 0

    @property
    def excluded_because(self) -> str | None:
        if self.flags:
            return ", ".join(self.flags)
        if self.kind == "replay":
            return "a trace replay (its load follows the trace: no single level)"
        if self.load is None:
            return "no single load level (a ramp)"
        if not self.summary.get("completed"):
            return "no completed request"
        return None

    @property
    def request_rate_rps(self) -> float | None:
        """Requests/s sustained: over the steady window when it has one, else the whole stage."""
        s = self.summary
        return s.get("steady_request_throughput") or s.get("request_throughput")

    @property
    def concurrency(self) -> float | None:
        """Requests in flight on average (Little's law), steady window first."""
        s = self.summary
        return s.get("steady_mean_in_flight") or s.get("mean_in_flight")

    @property
    def energy_measured(self) -> bool:
        return bool(self.energy.get("measured"))

    @property
    def energy_per_output_token_j(self) -> float | None:
        return (self.energy.get("energy_per_output_token_joules") or {}).get("gross") if self.energy_measured else None


@dataclass
class CheckpointData:
    name: str
    label: str
    base: str
    info: dict[str, Any]
    path: Path
    stages: list[StageData] = field(default_factory=list)

    @property
    def is_base(self) -> bool:
        return self.base == self.name

    @property
    def realised_prune(self) -> float | None:
        return (self.info.get("pruning") or {}).get("realised_prune")


@dataclass
class RunData:
    path: Path
    name: str
    status: str
    status_text: str
    manifest: dict[str, Any]
    checkpoints: list[CheckpointData] = field(default_factory=list)


def read_run(path: Path) -> RunData:
    """One run directory; a clear :class:`ConfigError` when it is not one or holds no records."""
    path = Path(path)
    if not (path / MANIFEST).is_file():
        raise ConfigError(f"{path} is not a serve-bench run directory (no {MANIFEST})",
                          hint="pass the directory `serve-bench run` printed, e.g. runs/20261129-132929-default")
    run = RunDir(path)
    manifest = run.manifest().model_dump(mode="json")
    status = str(manifest.get("status") or "running")
    data = RunData(path=path, name=path.name, status=status, status_text=STATUS_WORDS.get(status, status),
                   manifest=manifest)
    for name in run.checkpoints():  # a file edited or torn by hand is a ConfigError naming it (rundir.read_model)
        data.checkpoints.append(_read_checkpoint(run, name))
    if not any(ck.stages for ck in data.checkpoints):
        raise ConfigError(f"{path} holds no finished stage with records yet",
                          hint="a run writes each stage when it finishes: wait for one, or pick another run")
    return data


def _read_checkpoint(run: RunDir, name: str) -> CheckpointData:
    d = run.path / name
    checkpoint = run.checkpoint_info(name)
    ck = CheckpointData(name=name, label=checkpoint.label or name, base=checkpoint.base or name,
                        info=checkpoint.model_dump(mode="json"), path=d)
    by_stage: dict[tuple[str | None, str], list[RequestRecord]] = defaultdict(list)
    if (d / RECORDS).is_file():
        for rec in read_records(d / RECORDS):
            by_stage[(rec.profile, rec.stage)].append(rec)
    for res in run.stage_results(name):
        records = by_stage.get((res.profile, res.stage), [])
        if records:
            ck.stages.append(stage_data(res, records))
    return ck


def stage_data(result: StageFile, records: list[RequestRecord]) -> StageData:
    """A stage's result file plus its raw records -> :class:`StageData` (statistics from the records)."""
    kind = result.kind
    users = result.target.get("users") if kind == "concurrency" else None
    axis, load = result.load
    warmup_end_s = result.warmup_end_s
    summary = summarize(records, warmup_end_s=warmup_end_s, users=users)
    measured = measured_records(records, warmup_end_s)
    done = [r for r in measured if completed(r)]
    arrays = request_arrays(done) if done else {}
    if done:  # what the stage's request rate counts of each request (the bootstrap redraws it)
        window = (summary["steady_window_start_s"], summary["steady_window_end_s"])
        if window[0] is None:
            window = (summary["first_send_s"], summary["last_response_s"])
        arrays["share"] = window_shares(done, *window)
        arrays["life"] = np.array([life_s(r) for r in done])
        # when each request was sent, completed ones then failed ones (the bootstrap's time blocks)
        arrays["send"] = np.array([r.send_s for r in done] + [r.send_s for r in measured if not completed(r)])
    return StageData(index=result.index, name=result.stage, profile=result.profile,
                     load_axis=axis, load=load, load_text=result.load_text, flags=list(result.flags.values()),
                     started_s=result.started_s, ended_s=result.ended_s, summary=summary,
                     arrays=arrays, attempted=len(measured),
                     energy=result.energy or {"measured": False, "reason": "not recorded"}, kind=kind)
