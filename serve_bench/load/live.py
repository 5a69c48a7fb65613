"""What a running stage shows while it runs: read by the Prometheus exporter (and the live view).

The runner fills one :class:`LiveStage` per run as stages start and end, and
points its callables at the running stage's own counters (this process's, or
the sum of the workers' reports), so readers never reach into the load
generator's state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from serve_bench.measure.clock import now_s
from serve_bench.workload.profiles import Warmup


def _zero() -> int:
    return 0


def _none() -> float | None:
    return None


@dataclass
class LiveStage:
    checkpoint: str = ""
    profile: str = ""
    stage: str = ""
    kind: str = ""
    target: dict[str, Any] = field(default_factory=dict)
    running: bool = False
    in_flight: Callable[[], int] = _zero
    loadgen_cpu: Callable[[], float | None] = _none  # all load-generator processes, in cores
    started_s: float | None = None
    warmup_requests: int = 0  # the stage's warm-up, sent first and left out of its figures
    warmup_s: float = 0.0
    on_begin: Callable[[LiveStage], None] | None = None  # the pipeline's: tell the user a stage started

    def begin(self, profile: str, stage: str, kind: str, target: dict[str, Any],
              in_flight: Callable[[], int], loadgen_cpu: Callable[[], float | None],
              warmup: Warmup | None = None) -> None:
        self.profile, self.stage, self.kind, self.target = profile, stage, kind, target
        self.warmup_requests = warmup.requests if warmup is not None else 0
        self.warmup_s = warmup.duration_s if warmup is not None else 0.0
        self.in_flight, self.loadgen_cpu = in_flight, loadgen_cpu
        self.running, self.started_s = True, now_s()
        if self.on_begin is not None:
            self.on_begin(self)

    def end(self) -> None:
        self.running = False
        self.in_flight, self.loadgen_cpu = _zero, _none
