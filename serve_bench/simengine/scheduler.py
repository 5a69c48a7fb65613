"""The engine's rules, with no clock and no I/O, so that real time (:mod:`server`) and virtual time
(:mod:`simulate`) run the very same code and a run's truth is exact.

The engine runs steps back to back. At a step boundary t:

1. every sequence that was in the batch of the step that just ended receives one token at t (a sequence
   prefilled in that step receives its first token); a sequence with all its ``output_tokens`` finishes at t;
2. still at t, waiting requests whose arrival time is ≤ t are admitted in arrival order while fewer than
   ``max_num_seqs`` run and the step's prefill budget allows (the first admitted always fits);
3. the next step's batch is every running sequence; it costs ``step_ms + per_seq_ms × batch +
   per_prefill_token_ms × prompt tokens admitted``, times the jitter factor (one draw per step, in step
   order), and ends at the next boundary.

With nothing running the engine still steps, empty steps of ``step_ms`` each (its loop polling for
work), so a request waits for the next boundary whether or not others run. That keeps the truth
insensitive to the client's own delay: clients that re-send within one step of their answer's end (any
client faster than ``step_ms``) join the same step whatever their exact delay. (``step_ms`` = 0: an idle
engine starts a step at the next arrival.) A request arriving while a step runs waits for its end, as in
vLLM's engine loop.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from serve_bench.simengine.params import EngineParams


@dataclass(eq=False)
class Sequence:
    rid: str
    arrival_s: float
    prompt_tokens: int
    output_tokens: int
    emitted: int = 0
    admitted_s: float | None = None
    first_token_s: float | None = None
    last_token_s: float | None = None
    queued_steps: int = 0  # boundaries it waited through after arriving
    aborted: bool = False  # the client went away: dropped at the next boundary
    times: list[float] | None = None  # every token's time, when kept (virtual time)
    user: int = 0
    index: int = 0

    @property
    def finished(self) -> bool:
        return self.emitted >= self.output_tokens


@dataclass
class Scheduler:
    params: EngineParams
    keep_times: bool = False
    waiting: deque[Sequence] = field(default_factory=deque)
    running: list[Sequence] = field(default_factory=list)
    boundary_s: float | None = None  # the end of the step under way; None: not started, or idle (step_ms 0)
    steps: int = 0

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.params.seed)

    def submit(self, seq: Sequence) -> None:
        """A request arrives (in arrival order)."""
        if self.keep_times:
            seq.times = []
        self.waiting.append(seq)

    @property
    def busy(self) -> bool:
        return bool(self.running or self.waiting)

    def idle_until(self, arrival_s: float) -> None:
        """With nothing running or waiting, skip the empty steps before ``arrival_s``: the next boundary is the
        first one at or after it (the arrival itself when steps are free, or at the very start)."""
        b = self.boundary_s
        if b is None or self.params.step_ms <= 0 or b >= arrival_s:
            self.boundary_s = arrival_s if b is None or self.params.step_ms <= 0 else b
            return
        step = self.params.step_ms / 1000.0
        self.boundary_s = b + math.ceil((arrival_s - b) / step - 1e-9) * step

    def advance(self) -> tuple[float, list[Sequence]]:
        """At the current boundary: the finished step's tokens, admission, the next step. Returns the boundary
        and the sequences that received a token there (finished ones have left the running set)."""
        t = self.boundary_s
        assert t is not None, "advance() on an idle engine"
        got = []
        still = []
        for seq in self.running:
            if seq.aborted:
                continue
            seq.emitted += 1
            if seq.first_token_s is None:
                seq.first_token_s = t
            if seq.times is not None:
                seq.times.append(t)
            got.append(seq)
            if seq.finished:
                seq.last_token_s = t
            else:
                still.append(seq)
        self.running = still
        self._admit(t)
        for seq in self.waiting:
            seq.queued_steps += seq.arrival_s <= t
        self._start(t)
        return t, got

    def _admit(self, t: float) -> None:
        p = self.params
        self._prefill = 0
        admitted = 0
        while self.waiting and self.waiting[0].arrival_s <= t and len(self.running) < p.max_num_seqs:
            seq = self.waiting[0]
            if seq.aborted:
                self.waiting.popleft()
                continue
            if admitted and p.max_prefill_tokens and self._prefill + seq.prompt_tokens > p.max_prefill_tokens:
                break
            self.waiting.popleft()
            seq.admitted_s = t
            self._prefill += seq.prompt_tokens
            admitted += 1
            self.running.append(seq)

    def _start(self, t: float) -> None:
        p = self.params
        if not self.running:  # an empty step (none when steps are free: idle until an arrival)
            self.boundary_s = t + p.step_ms / 1000.0 if p.step_ms > 0 else None
            return
        cost_ms = p.step_ms + p.per_seq_ms * len(self.running) + p.per_prefill_token_ms * self._prefill
        if p.jitter:
            cost_ms *= float(np.exp(p.jitter * self._rng.standard_normal() - p.jitter ** 2 / 2))
        self.steps += 1
        self.boundary_s = t + cost_ms / 1000.0
