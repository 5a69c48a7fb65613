"""What the users of one running stage share: whose turn it is, and how it is going.

One instance per stage per load-generator process, in four parts: its frozen
configuration (what is sent, and how), its turns (the indices this process is
dealt and the stage's clock), its counters, and its gates. Closed loop hands out
request indices until the request count or the deadline is reached; open loop
hands out (index, intended send time) from the precomputed schedule. Indices
are global and dealt by ``slots`` out of every ``period``: one process takes
them all (slots [0], period 1); with workers, the master deals each worker as
many residues of the period as it runs users (:func:`deal`), so every worker
runs out of work at the same time whatever Locust's user split. It also counts
users at the start barrier and in-flight requests, which the runner watches to
start the stage, and holds the balancer that spreads requests over the fleet's
endpoints and finds a dead one (load.balance).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from serve_bench.load.balance import Balancer
from serve_bench.measure.clock import now_s
from serve_bench.measure.records import RequestRecord
from serve_bench.workload.prompts import PromptSet

RecordSink = Callable[[RequestRecord], None]


@dataclass(frozen=True)
class StageConfig:
    """What the stage sends and how: fixed before its first user starts."""

    stage: str
    api: str                      # "chat" | "completions"
    model: str                    # the served model name
    max_tokens: int
    ignore_eos: bool
    timeout_s: float
    prompts: PromptSet
    sink: RecordSink
    worker_id: str = "w0"
    profile: str | None = None
    requests: int | None = None           # closed loop: stop after this many sends (all workers together)
    warmup_requests: int = 0
    extra_body: dict[str, Any] = field(default_factory=dict)
    api_key: str | None = None
    prompt_offset: int = 0                 # profile-wide: each stage gets fresh prompts (no cross-stage cache hits)
    endpoints: tuple[str, ...] = ()        # the fleet's base URLs; () : the user class's host alone
    balance: str = "least-outstanding"    # load.balance's policy across endpoints


@dataclass
class StageTurns:
    """Whose turn it is and when: the indices this process is dealt (set once, before the start barrier
    opens) and the stage's clock (set once at its start, :func:`stage_plan.start_clock`; a closed-loop
    deadline moves once more, when the warm-up gate opens)."""

    slots: list[int] = field(default_factory=lambda: [0])  # this process takes indices ≡ slot (mod period)
    period: int = 1
    clock_start_s: float | None = None
    warmup_end_s: float | None = None
    deadline_s: float | None = None       # closed loop: no sends after this wall time
    schedule_s: list[float] | None = None  # open loop: absolute intended send times


@dataclass
class StageCounters:
    next_index: int = 0                    # this process's requests handed out
    recorded: int = 0
    in_flight: int = 0
    users_created: int = 0
    users_ready: int = 0                   # users connected and waiting at the start barrier
    succeeded: int = 0
    client_errors: int = 0                 # HTTP 4xx: usually a misconfiguration (model name, API key)
    warmup_finished: int = 0


@dataclass
class StageSync:
    """The stage's gates: gevent Events, created by the runner or the worker (gevent is imported only there)."""

    finished: Any = None
    ready: Any = None     # the start barrier: set once every user is connected
    # Closed loop in one process: measured requests wait for every warm-up request
    # to finish, so none of them meets the cold server (None: no gate).
    warmup_gate: Any = None
    stopping: bool = False  # the runner's monitor stopped the stage early: no more sends


@dataclass
class StageState:
    config: StageConfig
    turns: StageTurns = field(default_factory=StageTurns)
    counts: StageCounters = field(default_factory=StageCounters)
    sync: StageSync = field(default_factory=StageSync)
    balancer: Balancer | None = None  # which endpoint gets each request (new_state makes it)

    @property
    def outstanding(self) -> int:
        """Requests handed out and not yet recorded (waiting for their send time, or in flight)."""
        return self.counts.next_index - self.counts.recorded

    def next_user_number(self) -> int:
        self.counts.users_created += 1
        return self.counts.users_created - 1

    @property
    def open_loop(self) -> bool:
        return self.turns.schedule_s is not None

    def _global(self) -> int:
        return index_of(self.counts.next_index, self.turns.slots, self.turns.period)

    def indices(self, start_k: int, count: int) -> list[int]:
        """The global indices of this process's ``start_k``-th to ``start_k + count - 1``-th requests."""
        if not self.turns.slots:
            return []
        return [index_of(k, self.turns.slots, self.turns.period) for k in range(start_k, start_k + count)]

    def take(self) -> tuple[int, float | None] | None:
        """The next request's (global index, intended send time), or None when this stage sends no more."""
        if self.exhausted():
            return None
        g = self._global()
        self.counts.next_index += 1
        return g, None if self.turns.schedule_s is None else self.turns.schedule_s[g]

    def exhausted(self) -> bool:
        """No more sends will happen."""
        turns, config = self.turns, self.config
        if self.sync.stopping or not turns.slots:  # a worker dealt no users takes no requests
            return True
        g = self._global()
        limit = getattr(config.prompts, "limit", None)
        stops = getattr(config.prompts, "exhaust", "cycle") == "stop"
        if limit is not None and stops and config.prompt_offset + g >= limit:
            return True  # the prompt set is used up, and the profile says to stop there
        if turns.schedule_s is not None:
            return g >= len(turns.schedule_s)
        if config.requests is not None and g >= config.requests:
            return True
        return turns.deadline_s is not None and now_s() >= turns.deadline_s

    def is_warmup(self, index: int, send_s: float, intended_s: float | None) -> bool:
        if index < self.config.warmup_requests:
            return True
        t = intended_s if intended_s is not None else send_s
        return self.turns.warmup_end_s is not None and t < self.turns.warmup_end_s

    def record(self, record: RequestRecord, final: bool = True) -> None:
        """Count and keep a finished request; ``final``: its index is done (a conversation's last turn)."""
        counts, gate = self.counts, self.sync.warmup_gate
        if record.ok:
            counts.succeeded += 1
        elif 400 <= record.status < 500:
            counts.client_errors += 1
        if final:
            counts.recorded += 1
        if final and record.warmup and gate is not None and not gate.is_set():
            counts.warmup_finished += 1
            if counts.warmup_finished >= self.config.warmup_requests:
                self._open_gate()
        self.config.sink(record)

    def _open_gate(self) -> None:
        # the measured part's duration starts now, not while the server warmed up
        turns = self.turns
        if turns.deadline_s is not None and turns.clock_start_s is not None:
            turns.deadline_s += now_s() - turns.clock_start_s
        self.sync.warmup_gate.set()

    def wait_for_warmup(self, index: int) -> None:
        if self.sync.warmup_gate is not None and index >= self.config.warmup_requests:
            self.sync.warmup_gate.wait()


def index_of(k: int, slots: list[int], period: int) -> int:
    """The global index of the k-th request of a process dealt ``slots`` of every ``period`` indices."""
    return (k // len(slots)) * period + slots[k % len(slots)]


def deal(users: list[int]) -> list[list[int]]:
    """Residues of a period of ``sum(users)`` for each process, as many as it runs users, interleaved
    (smooth weighted round robin), so each process's share of a schedule is spread evenly in time."""
    period = sum(users)
    credit = [0] * len(users)
    out: list[list[int]] = [[] for _ in users]
    for r in range(period):
        for i, u in enumerate(users):
            credit[i] += u
        best = max(range(len(users)), key=lambda i: credit[i])
        credit[best] -= period
        out[best].append(r)
    return out
