"""Multi-turn conversations: each request index is a conversation, held by one user from start to end.

A profile's ``conversation: {turns: <length distribution>, think_time_s}``
makes request index ``i`` a conversation of ``turns.at(i)`` turns (seeded per
index). Turn ``t``'s new user message is the inner prompt set's prompt
``i · stride + t`` (``stride``: the most turns a conversation can have), so
its length follows the profile's input lengths and its answer the output
lengths. Every turn's text is built before the stage, like any prompt (the
turns travel as one string, joined by ``SEP``, through the prompt cache and
the feed process). While the stage runs, the user sends turn ``t`` as the
whole history (every earlier user message and the server's actual replies)
plus the new message, waits ``think_time_s`` after a reply, and records each
turn with ``conversation_id`` and ``turn_index``. A stage's request budget and
open-loop schedule count conversations; only a first turn has an intended
send time (a later one waits for the reply before it, by design).
``requested_input_tokens`` is planned for first turns only: a later turn's
prompt holds replies not known in advance, and its realised length is the
server's ``prompt_tokens``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from serve_bench.workload.lengths import LengthDist, LengthSampler
from serve_bench.workload.prompts import PromptError, PromptSet

SEP = "\x1e"  # ASCII record separator: between a conversation's turns in one cached string


class ConversationPromptSet(PromptSet):
    """Wraps a profile's prompt set: one index, several turns."""

    def __init__(self, inner: PromptSet, turns: LengthDist, think_time_s: float = 0.0, seed: int = 0,
                 salt: str = "") -> None:
        super().__init__(inner.api)
        self.inner, self.turns_dist, self.think_time_s = inner, turns, think_time_s
        self.seed, self.salt = seed, salt
        self.turns = LengthSampler(turns, seed, f"turns:{salt}")
        self.stride = max(1, turns.bounds()[1])
        self.limit = None if inner.limit is None else max(1, inner.limit // self.stride)
        self.exhaust = inner.exhaust
        if hasattr(inner, "prefix_every"):
            inner.prefix_every = self.stride  # a shared prefix opens a conversation, not each of its turns

    @property
    def costly(self) -> bool:
        return self.inner.costly

    def spec(self) -> dict[str, Any]:
        return {"kind": "conversation", "inner": self.inner.spec(), "turns": self.turns_dist.model_dump(mode="json"),
                "think_time_s": self.think_time_s, "seed": self.seed, "salt": self.salt}

    def describe(self) -> dict[str, Any]:
        return {**self.inner.describe(), "conversations": True, "distinct": self.limit}

    def turn_count(self, index: int) -> int:
        return max(1, self.turns.at(index))

    def _inner_indices(self, index: int) -> list[int]:
        return [index * self.stride + t for t in range(self.turn_count(index))]

    def build(self, index: int) -> str:
        texts = []
        for j in self._inner_indices(index):
            got = self.inner.attempt(j)
            if isinstance(got, PromptError):
                raise ValueError(f"turn {j - index * self.stride}: {got}")
            texts.append(got)
        return SEP.join(texts)

    def prepare(self, indices: Iterable[int]) -> None:
        todo = [i for i in dict.fromkeys(indices) if i not in self._cache]
        self.inner.prepare(j for i in todo for j in self._inner_indices(i))  # the inner set's batched path
        for i in todo:
            self._cache[i] = self.attempt(i)
            for j in self._inner_indices(i):
                self.inner._cache.pop(j, None)

    def turn_fields(self, index: int, turn: int, stage: str) -> dict[str, Any]:
        """The record fields of turn ``turn`` of conversation ``index`` (cheap)."""
        fields = self.inner.request_fields(index * self.stride + turn)
        if turn:
            fields.pop("requested_input_tokens", None)
            opening = self.inner.request_fields(index * self.stride).get("prefix_id")
            if opening is not None:
                fields["prefix_id"] = opening  # the history still opens with it
        return {**fields, "conversation_id": f"{stage}-{index}", "turn_index": turn}

    def request_fields(self, index: int) -> dict[str, Any]:
        return self.inner.request_fields(index * self.stride)

    def check_context(self, max_model_len: int, source: str = "the profile", answer_tokens: int = 0,
                      turns: int = 1) -> None:
        self.inner.check_context(max_model_len, source, answer_tokens, turns=self.stride)


def with_conversations(prompts: PromptSet, profile: Any) -> PromptSet:
    """The profile's prompt set, wrapped when it holds conversations."""
    conv = getattr(profile, "conversation", None)
    if conv is None:
        return prompts
    return ConversationPromptSet(prompts, conv.turns, conv.think_time_s, profile.seed, profile.name)
