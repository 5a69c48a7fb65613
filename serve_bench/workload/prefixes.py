"""Shared prompt prefixes, so that a profile measures prefix caching on purpose.

A profile's ``shared_prefix`` (``tokens``, ``count``, ``share``) gives ``count``
distinct prefixes of ``tokens`` tokens each; a request carries one with
probability ``share`` (each prefix equally likely), drawn per request index
from a seeded generator, so every process plans the same requests; with
``assignment: balanced`` every round of ``count`` request indices carries each
prefix once, in a seeded order. The prefix
is the start of the user message, and comes on top of the request's drawn
input length: a request that carries one asks for ``drawn + tokens`` prompt
tokens (its ``requested_input_tokens``), and records ``prefix_id``.

The server's side of it, the prefix-cache hit rate over a stage, comes from
its ``vllm:prefix_cache_hits_total`` / ``vllm:prefix_cache_queries_total``
counters (:func:`serve_bench.observe.server_metrics.prefix_cache`).
"""

from __future__ import annotations

import zlib
from typing import Literal

import numpy as np
from pydantic import Field, PositiveInt, model_validator

from serve_bench.validation import Strict

BLOCK = 4096


class SharedPrefix(Strict):
    tokens: PositiveInt = Field(description="length of each shared prefix, in tokens")
    count: PositiveInt = Field(1, description="how many distinct prefixes")
    share: float = Field(1.0, ge=0.0, le=1.0, description="share of all requests that carry a prefix; "
                                                          "each prefix equally likely")
    assignment: Literal["random", "balanced"] = Field(
        "random", description="random: each request's prefix drawn on its own; balanced: every round of "
                              "`count` requests carries each prefix once, in a seeded order (vllm bench serve's "
                              "prefix_repetition: each prefix exactly as often)")

    @model_validator(mode="after")
    def _balanced_all(self) -> SharedPrefix:
        if self.assignment == "balanced" and self.share != 1.0:
            raise ValueError("assignment: balanced gives every request a prefix; it needs share: 1")
        return self


class PrefixPlan:
    """Which prefix (if any) each request index carries, and each prefix's text."""

    def __init__(self, spec: SharedPrefix, seed: int = 0, salt: str = "") -> None:
        self.spec = spec
        self.tokens = spec.tokens
        self.seed = seed
        self.salt = zlib.crc32(f"prefix:{salt}".encode())
        self._blocks: dict[int, np.ndarray] = {}
        self._texts: dict[int, str] = {}
        self._rounds: dict[int, np.ndarray] = {}

    def _block(self, b: int) -> np.ndarray:
        got = self._blocks.get(b)
        if got is None:
            u = np.random.default_rng([self.seed & 0xFFFFFFFF, self.salt, b]).random(BLOCK)
            ids = np.minimum((u / self.spec.share * self.spec.count).astype(np.int64), self.spec.count - 1) \
                if self.spec.share > 0 else np.zeros(BLOCK, dtype=np.int64)
            got = self._blocks[b] = np.where(u < self.spec.share, ids, -1)
        return got

    def _round(self, r: int) -> np.ndarray:
        got = self._rounds.get(r)
        if got is None:
            if len(self._rounds) > 64:  # requests go forward: old rounds are not asked for again
                self._rounds.clear()
            got = self._rounds[r] = np.random.default_rng([self.seed & 0xFFFFFFFF, self.salt, 2 << 20, r]) \
                .permutation(self.spec.count)
        return got

    def prefix_of(self, index: int) -> int | None:
        if self.spec.assignment == "balanced":
            return int(self._round(index // self.spec.count)[index % self.spec.count])
        p = int(self._block(index // BLOCK)[index % BLOCK])
        return None if p < 0 else p

    def text(self, prefix: int, words: list[str]) -> str:
        """Prefix ``prefix``'s words (one token each, with their leading space): the same in every process."""
        got = self._texts.get(prefix)
        if got is None:
            rng = np.random.default_rng([self.seed & 0xFFFFFFFF, self.salt, 1 << 20, prefix])
            got = self._texts[prefix] = "".join(words[k] for k in rng.integers(0, len(words), self.tokens))
        return got
