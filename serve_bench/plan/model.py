"""The plan's data: checkpoints, stages with their estimates, server, energy, and the parts of the
wall time."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from serve_bench.plan.cost import CostModel


@dataclass
class CheckpointPlan:
    name: str
    origin: str                  # bundled, local, hub, pruned, remote
    action: str                  # serve, reuse, prune, convert, download, remote
    detail: str                  # what the action means here, in words
    base: str
    path: Path | None = None
    requested: str | None = None      # p20, er2.4
    k: int | None = None
    intermediate_size: int | None = None
    kept: float = 1.0                 # k / intermediate size
    weight_bytes: int | None = None
    # what preparing it costs before the first server starts
    hash_bytes: int = 0
    prune_bytes: int = 0
    convert: bool = False


@dataclass
class StageEstimate:
    requests: int | None         # sends, warm-up included
    warmup_requests: int | None
    requests_how: str            # exact, estimate, measured
    seconds: float
    how: str                     # model, measured
    note: str = ""


@dataclass
class StageInfo:
    index: int
    name: str
    kind: str
    target: str
    bound: str
    warmup: str
    per_checkpoint: dict[str, StageEstimate] = field(default_factory=dict)
    note: str = ""


@dataclass
class ProfilePlan:
    name: str
    description: str
    api: str
    input_tokens: int
    output_tokens: int
    warmup: str
    stages: list[StageInfo]


@dataclass
class ServerPlan:
    mode: str                    # launch, url
    url: str | None = None
    endpoints: list[str] = field(default_factory=list)  # a fleet's (several --url)
    balance: str | None = None
    build: str | None = None     # cpu, cuda, None (vLLM not installed)
    engine_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    host: str = "127.0.0.1"
    port: int | None = None
    startup_timeout_s: float = 600.0
    replicas: list[str] = field(default_factory=list)  # launched replicas: each one's share of the machine


@dataclass
class EnergyPlan:
    measurable: bool
    reason: str | None
    idle_s: float


@dataclass
class EvalPlan:
    """Accuracy after each checkpoint's load: the tasks with the items each scores, where the data comes from."""

    tasks: dict[str, int]  # task -> items scored (per checkpoint)
    data: str              # the offline directory, or "the Hugging Face hub"
    seconds: float         # per unpruned checkpoint, from the cost model
    pruned_seconds: float  # per pruned copy (they generate longer answers)

    def seconds_for(self, kept: float) -> float:
        return self.seconds if kept >= 1.0 else self.pruned_seconds


@dataclass
class Part:
    label: str
    seconds: float
    how: str = "model"


@dataclass
class StudyPlan:
    name: str
    out_dir: Path
    checkpoints: list[CheckpointPlan]
    server: ServerPlan
    profiles: list[ProfilePlan]
    energy: EnergyPlan
    parts: list[Part]
    model: CostModel
    notes: list[str] = field(default_factory=list)
    evaluation: EvalPlan | None = None
    trials: int = 1  # every stage runs this many times (run --repeats)
    exact_dir: bool = False  # out_dir is the run directory itself (run --out), not its parent

    @property
    def total_s(self) -> float:
        return sum(p.seconds for p in self.parts)

    def stage_count(self) -> int:
        return sum(len(p.stages) for p in self.profiles) * len(self.checkpoints) * self.trials

    def requests(self) -> tuple[int, int, bool]:
        """All sends (warm-up included), the warm-up ones, and whether any count is an estimate."""
        total = warm = 0
        estimated = False
        for p in self.profiles:
            for s in p.stages:
                for e in s.per_checkpoint.values():
                    total += e.requests or 0
                    warm += e.warmup_requests or 0
                    estimated |= e.requests_how == "estimate"
        return total * self.trials, warm * self.trials, estimated
