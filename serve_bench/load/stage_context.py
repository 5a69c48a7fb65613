"""What a stage is run with, and what running it found: one context in, one outcome out, for the local path
(runner.py) and the distributed one (distributed.py) alike.

The context is fixed before the stage starts. The outcome is the stage's own account of itself beside its
records: when it ran, why it stopped, Locust's counts, and what the load-generator processes measured of
themselves; :func:`runner.run_stage` turns it and the records into a :class:`StageResult`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serve_bench.load.live import LiveStage
from serve_bench.load.process import RemoteMaster
from serve_bench.load.stage_plan import StagePlan
from serve_bench.load.stage_state import RecordSink
from serve_bench.workload.profiles import ConcurrencyStage, LoadProfile, RampStage, RateStage, ReplayStage


@dataclass(frozen=True)
class StageContext:
    plan: StagePlan
    stage: ConcurrencyStage | RateStage | RampStage | ReplayStage
    profile: LoadProfile
    url: str
    model: str
    seed: int
    collect: RecordSink  # every finished record, at once
    live: LiveStage  # kept pointing at the running stage (the exporter and the live view read it)
    prompt_offset: int = 0
    api_key: str | None = None
    model_path: str | None = None  # the tokenizer workers build their prompts with
    worker_log_dir: Path | None = None
    remote: RemoteMaster | None = None
    endpoints: tuple[str, ...] = ()  # the fleet's base URLs (``url`` alone for one server)
    balance: str = "least-outstanding"
    stop_on_death: bool = False  # a fleet: stop the stage when any endpoint dies (else go on with the rest)


class Stop(enum.Enum):
    """Why a stage ended."""

    DONE = "done"  # every request finished (or the stage's time ran out)
    SERVER_DIED = "server died"  # the server stopped accepting connections
    REJECTED = "rejected"  # every request so far got an HTTP 4xx (model name, key…)
    DRAIN_TIMEOUT = "drain timeout"  # a request outlived the drain grace
    WORKER_LOST = "worker lost"  # a load worker disconnected mid-stage


@dataclass
class StageOutcome:
    started_s: float
    ended_s: float | None = None
    warmup_end_s: float | None = None
    stop: Stop = Stop.DONE
    locust_requests: int = 0
    locust_failures: int = 0
    loadgen_cpu: dict[str, float | None] = field(default_factory=dict)
    worker_clocks: dict[str, dict[str, float]] = field(default_factory=dict)
    lost_workers: list[str] = field(default_factory=list)
    dead_endpoints: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def result_fields(self) -> dict[str, Any]:
        """The :class:`StageResult` fields this outcome decides."""
        return {"started_s": self.started_s, "ended_s": self.ended_s, "warmup_end_s": self.warmup_end_s,
                "server_died": self.stop is Stop.SERVER_DIED, "rejected": self.stop is Stop.REJECTED,
                "stopped_early": self.stop is not Stop.DONE, "locust_requests": self.locust_requests,
                "locust_failures": self.locust_failures, "loadgen_cpu": self.loadgen_cpu,
                "worker_clocks": self.worker_clocks, "lost_workers": self.lost_workers,
                "dead_endpoints": self.dead_endpoints}
