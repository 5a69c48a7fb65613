"""What the users of one running stage share: whose turn it is, and how it is going.

One instance per stage per load-generator process. Closed loop hands out
request indices until the request count or the deadline is reached; open loop
hands out (index, intended send time) from the precomputed schedule. Indices
are global and dealt by ``slots`` out of every ``period``: one process takes
them all (slots [0], period 1); with workers, the master deals each worker as
many residues of the period as it runs users (:func:`deal`), so every worker
runs out of work at the same time whatever Locust's user split. It also counts
users at the start barrier, in-flight requests and consecutive refused
connections, which the runner watches to start the stage and to stop it early
when the server has died.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from serve_bench.measure.clock import now_s
from serve_bench.measure.records import RequestRecord
from serve_bench.workload.prompts import PromptSet

RecordSink = Callable[[RequestRecord], None]


@dataclass
class StageState:
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
    deadline_s: float | None = None       # closed loop: no sends after this wall time
    schedule_s: list[float] | None = None  # open loop: absolute intended send times
    warmup_requests: int = 0
    warmup_end_s: float | None = None
    slots: list[int] = field(default_factory=lambda: [0])  # this process takes indices ≡ slot (mod period)
    period: int = 1
    extra_body: dict[str, Any] = field(default_factory=dict)
    api_key: str | None = None

    prompt_offset: int = 0                 # profile-wide: each stage gets fresh prompts (no cross-stage cache hits)

    next_index: int = 0
    recorded: int = 0
    in_flight: int = 0
    users_created: int = 0
    users_ready: int = 0                   # users connected and waiting at the start barrier
    consecutive_refused: int = 0
    succeeded: int = 0
    client_errors: int = 0                 # HTTP 4xx: usually a misconfiguration (model name, API key)
    stopping: bool = False
    finished: Any = None  # gevent.event.Event, created by the runner (gevent is imported only there)
    ready: Any = None     # the start barrier: a gevent Event set once every user is connected
    # Closed loop in one process: measured requests wait for every warm-up request
    # to finish, so none of them meets the cold server (a gevent Event, or None).
    warmup_gate: Any = None
    warmup_finished: int = 0
    clock_start_s: float | None = None

    @property
    def outstanding(self) -> int:
        """Requests handed out and not yet recorded (waiting for their send time, or in flight)."""
        return self.next_index - self.recorded

    def next_user_number(self) -> int:
        self.users_created += 1
        return self.users_created - 1

    @property
    def open_loop(self) -> bool:
        return self.schedule_s is not None

    def _global(self) -> int:
        return index_of(self.next_index, self.slots, self.period)

    def indices(self, start_k: int, count: int) -> list[int]:
        """The global indices of this process's ``start_k``-th to ``start_k + count - 1``-th requests."""
        if not self.slots:
            return []
        return [index_of(k, self.slots, self.period) for k in range(start_k, start_k + count)]

    def take(self) -> tuple[int, float | None] | None:
        """The next request's (global index, intended send time), or None when this stage sends no more."""
        if self.exhausted():
            return None
        g = self._global()
        self.next_index += 1
        return g, None if self.schedule_s is None else self.schedule_s[g]

    def exhausted(self) -> bool:
        """No more sends will happen."""
        if self.stopping or not self.slots:  # a worker dealt no users takes no requests
            return True
        g = self._global()
        limit = getattr(self.prompts, "limit", None)
        stops = getattr(self.prompts, "exhaust", "cycle") == "stop"
        if limit is not None and stops and self.prompt_offset + g >= limit:
            return True  # the prompt set is used up, and the profile says to stop there
        if self.schedule_s is not None:
            return g >= len(self.schedule_s)
        if self.requests is not None and g >= self.requests:
            return True
        return self.deadline_s is not None and now_s() >= self.deadline_s

    def is_warmup(self, index: int, send_s: float, intended_s: float | None) -> bool:
        if index < self.warmup_requests:
            return True
        t = intended_s if intended_s is not None else send_s
        return self.warmup_end_s is not None and t < self.warmup_end_s

    def record(self, record: RequestRecord, final: bool = True) -> None:
        """Count and keep a finished request; ``final``: its index is done (a conversation's last turn)."""
        if record.status == 0 and record.error and "refused" in record.error.lower():
            self.consecutive_refused += 1
        elif record.status != 0:
            self.consecutive_refused = 0
        if record.ok:
            self.succeeded += 1
        elif 400 <= record.status < 500:
            self.client_errors += 1
        if final:
            self.recorded += 1
        if final and record.warmup and self.warmup_gate is not None and not self.warmup_gate.is_set():
            self.warmup_finished += 1
            if self.warmup_finished >= self.warmup_requests:
                self._open_gate()
        self.sink(record)

    def _open_gate(self) -> None:
        # the measured part's duration starts now, not while the server warmed up
        if self.deadline_s is not None and self.clock_start_s is not None:
            self.deadline_s += now_s() - self.clock_start_s
        self.warmup_gate.set()

    def wait_for_warmup(self, index: int) -> None:
        if self.warmup_gate is not None and index >= self.warmup_requests:
            self.warmup_gate.wait()


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
