"""The engine's rules, with no clock and no I/O, so that real time (:mod:`.server`) and virtual time
(:mod:`.simulate`) run the very same code and a run's truth is exact.

Boundaries are numbered k = 0, 1, 2 … and have times t_k (seconds, whatever clock the caller uses). At a
boundary t:

1. Tokens. Every sequence in the batch of the step that just ended receives one token at t: one prefilled
   in that step receives its first token, one decoding its next. A sequence admitted at boundary k thus
   receives its tokens at boundaries k+1 … k+output_tokens and finishes (leaves) at the last of them.
2. Admission, still at t. Waiting requests whose arrival is ≤ t are admitted in arrival order (FCFS, no
   skipping) while fewer than ``max_num_seqs`` run and, with ``max_prefill_tokens`` set, their prompt tokens
   fit the step's budget; the first request admitted at a boundary always fits (a long prompt is never
   starved). A request arriving after t waits for the next boundary, even if it arrives while the engine is
   still "at" t in real time: the schedule is nominal.
3. The next step. Its batch is every running sequence (decoding + newly admitted). It costs
   ``step_ms + per_seq_ms × batch + per_prefill_token_ms × prompt tokens admitted``, times
   exp(jitter·Z − jitter²/2) with one standard-normal Z per step from ``numpy.random.default_rng(seed)``,
   drawn in step order (idle gaps draw nothing), so one arrival sequence always gives the same steps.
   The next boundary is t + cost.
4. Idle. If nothing runs after admission, no step starts: the engine waits, and the next boundary is the
   next request's arrival time (it is admitted there, by the same rules).

A request's ``output_tokens`` is its max_tokens (the engine ignores EOS), at least 1. Work per boundary is
O(tokens' owners that change state): finishing sequences are bucketed by the boundary they finish at, so a
step of a thousand decoding sequences costs what a step of one does; the streams that need a token per
boundary (the server's) read it from :meth:`Seq.tokens_at`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from serve_bench.simengine.params import EngineParams

_NORMALS = 1024  # jitter draws taken from the generator at a time (the same stream as one at a time)


@dataclass(eq=False, slots=True)
class Seq:
    """One request inside the engine; times on the caller's clock, boundaries by index."""

    rid: str
    arrival_s: float
    prompt_tokens: int
    output_tokens: int
    user: int = 0  # the simulated client that sent it (virtual time)
    index: int = 0  # its place in send order (virtual time)
    eligible_k: int | None = None  # the first boundary at or after its arrival
    admitted_k: int = -1  # the boundary it was admitted at (-1: waiting, or aborted while waiting)
    admitted_s: float | None = None
    first_token_s: float | None = None
    last_token_s: float | None = None
    aborted: bool = False

    def tokens_at(self, k: int) -> int:
        """Tokens received by boundary ``k`` (inclusive)."""
        if self.admitted_k < 0:
            return 0
        return min(max(k - self.admitted_k, 0), self.output_tokens)

    @property
    def finished(self) -> bool:
        return self.last_token_s is not None

    @property
    def queued_steps(self) -> int | None:
        """Boundaries it waited through after arriving, before the one that admitted it."""
        if self.admitted_k < 0 or self.eligible_k is None:
            return None
        return self.admitted_k - self.eligible_k


@dataclass(slots=True)
class Boundary:
    """What happened at one boundary."""

    k: int
    t_s: float
    batch: int  # sequences in the step that ended here: each received one token at t_s
    first: list[Seq]  # received their first token here
    finished: list[Seq]  # received their last token here and left
    admitted: list[Seq]  # admitted here: prefilled in the next step
    next_s: float | None  # the next boundary; None: idle until the next arrival


@dataclass(eq=False)
class Scheduler:
    """Submit requests in arrival order; call :meth:`step` at each boundary (``next_s``) once every request
    that arrived by then has been submitted."""

    params: EngineParams
    keep_times: bool = False  # keep every boundary's time in ``times`` (virtual time: the token times)
    k: int = 0  # the index of the next boundary
    next_s: float | None = None  # its time; None: idle (nothing running or waiting)
    running: int = 0
    steps: int = 0  # steps run (idle gaps are not steps)
    waiting: deque[Seq] = field(default_factory=deque)
    times: list[float] = field(default_factory=list)
    _batch: int = 0
    _admitted: list[Seq] = field(default_factory=list)  # admitted at the last boundary
    _finish: dict[int, list[Seq]] = field(default_factory=dict)  # boundary index -> sequences finishing there
    _unseen: deque[Seq] = field(default_factory=deque)  # submitted after next_s had passed their arrival
    _idle_start: bool = False  # next_s is the first waiting request's arrival (no step under way)
    _last_arrival_s: float = float("-inf")

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.params.seed)
        self._normals: list[float] = []

    @property
    def busy(self) -> bool:
        return self.next_s is not None

    def submit(self, rid: str, arrival_s: float, prompt_tokens: int, output_tokens: int, *, user: int = 0,
               index: int = 0) -> Seq:
        """A request arrives. Submissions must come in arrival order."""
        if arrival_s < self._last_arrival_s:
            raise ValueError(f"request {rid!r} submitted out of arrival order")
        self._last_arrival_s = arrival_s
        seq = Seq(rid, arrival_s, max(0, int(prompt_tokens)), max(1, int(output_tokens)), user=user, index=index)
        if self.next_s is None:  # idle: this arrival starts the next step
            self.next_s, self._idle_start = arrival_s, True
        if arrival_s <= self.next_s:
            seq.eligible_k = self.k
        else:  # real time, a late wake-up: boundary k is nominally past; its index is known at a later one
            self._unseen.append(seq)
        self.waiting.append(seq)
        return seq

    def abort(self, seq: Seq) -> None:
        """The client went away: free its place now (its step's cost, already set, stays)."""
        if seq.aborted or seq.finished:
            return
        seq.aborted = True
        if seq.admitted_k < 0:
            self.waiting.remove(seq)
            if seq in self._unseen:
                self._unseen.remove(seq)
            if self._idle_start:  # it was to start the next step: the next one in line does, if any
                self.next_s = self.waiting[0].arrival_s if self.waiting else None
            return
        self._finish[seq.admitted_k + seq.output_tokens].remove(seq)
        if seq in self._admitted:
            self._admitted.remove(seq)
        self.running -= 1

    def step(self) -> Boundary:
        """Process boundary ``k`` at ``next_s``: the ended step's tokens, admission, the next step."""
        t = self.next_s
        if t is None:
            raise RuntimeError("step() on an idle engine: submit a request first")
        k = self.k
        if self.keep_times:
            self.times.append(t)
        first = self._admitted
        for seq in first:
            seq.first_token_s = t
        finished = self._finish.pop(k, [])
        for seq in finished:
            seq.last_token_s = t
        batch = self._batch
        self.running -= len(finished)
        while self._unseen and self._unseen[0].arrival_s <= t:
            self._unseen.popleft().eligible_k = k
        admitted, prefill = self._admit(k, t)
        self._admitted = admitted
        self._batch = self.running
        self.k = k + 1
        self._idle_start = not self.running
        if self.running:
            self.next_s = t + self._cost_ms(self.running, prefill) / 1000.0
            self.steps += 1
        else:  # idle: the next step starts with the next arrival (one may already be waiting, in real time)
            self.next_s = self.waiting[0].arrival_s if self.waiting else None
        return Boundary(k, t, batch, first, finished, admitted, self.next_s)

    def _admit(self, k: int, t: float) -> tuple[list[Seq], int]:
        p = self.params
        budget = p.max_prefill_tokens
        free = p.max_num_seqs - self.running
        admitted: list[Seq] = []
        prefill = 0
        waiting = self.waiting
        while free > 0 and waiting and waiting[0].arrival_s <= t:
            seq = waiting[0]
            if budget is not None and admitted and prefill + seq.prompt_tokens > budget:
                break
            waiting.popleft()
            seq.admitted_k, seq.admitted_s = k, t
            prefill += seq.prompt_tokens
            admitted.append(seq)
            self._finish.setdefault(k + seq.output_tokens, []).append(seq)
            free -= 1
        self.running += len(admitted)
        return admitted, prefill

    def _cost_ms(self, batch: int, prefill_tokens: int) -> float:
        p = self.params
        cost = p.step_ms + p.per_seq_ms * batch + p.per_prefill_token_ms * prefill_tokens
        if p.jitter:
            if not self._normals:
                self._normals = self._rng.standard_normal(_NORMALS).tolist()[::-1]  # pop() from the end
            cost *= float(np.exp(p.jitter * self._normals.pop() - p.jitter * p.jitter / 2.0))
        return cost
