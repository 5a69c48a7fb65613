"""Prompts for the load: synthetic ones of an exact token length, or a JSONL file's.

Synthetic prompts are random words drawn from the model's own vocabulary
(whole words, each one token with its leading space), seeded per request
index, so every request has a different prefix (no accidental prefix-cache
hits) and the same seed gives the same prompts. Their length is fitted with
the model's tokenizer to what the server will count:

    chat          the chat template applied (with the generation prompt), then
                  tokenized without special tokens (what vLLM does for chat)
    completions   the text tokenized with special tokens (vLLM's default for completions)

A request's planned shape comes first and costs no tokenizer (:meth:`PromptSet.request_fields`): its
prompt length (fixed, or drawn per index from ``input_lengths``, lengths.py), its shared prefix
(prefixes.py), its answer length (``output_lengths``). A synthetic prompt is then fitted to that exact
count; where the tokenizer's counts add up word by word (byte-level BPE), the first guess is exact and
:meth:`SyntheticPromptSet.prepare` counts only one prompt in 64 to check it. Files (datasets.py),
traces (traces.py) and conversations (conversations.py) are prompt sets too; prompt_sources.py builds
the one a profile names.

Fitting costs tokenizer calls, which would block the load generator's event
loop and delay the timestamps of every stream in flight; so no prompt is built
inside a measured stage. A stage's known prompts are built before it starts
(:meth:`PromptSet.prepare`); a stage bounded by time alone gets the rest from
a :class:`~serve_bench.load.prompt_feed.PromptFeed`, a separate process that
builds them ahead of use. A prompt that cannot be built is kept as that
request's error (:class:`PromptError`), never raised into the stage.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import numpy as np

from serve_bench.errors import ConfigError, LoadError
from serve_bench.workload.lengths import FixedLength, LengthDist, LengthSampler
from serve_bench.workload.prefixes import PrefixPlan
from serve_bench.workload.tokenizer_words import load_tokenizer, template_frame, word_pool


class PromptError(Exception):
    """This request's prompt could not be built: recorded as the request's error."""

Api = Literal["chat", "completions"]
_BATCH = 256
_SPOT_CHECK = 64


class PromptSet:
    """Request bodies' prompt part by request index: ``{"messages": [...]}`` or ``{"prompt": "..."}``.

    Besides the text, a set plans each request's shape cheaply (no tokenizer: seeded samplers, or a
    file's rows): :meth:`request_fields` gives the requested input and output tokens and the shared
    prefix, which the user sends (``max_tokens``) and records. ``limit`` is how many distinct prompts
    the set has (None: unlimited); past it a set cycles or the stage stops (``exhaust``).
    """

    limit: int | None = None
    exhaust: str = "cycle"

    def __init__(self, api: Api) -> None:
        self.api = api
        self._cache: dict[int, str | PromptError] = {}
        self.feed: Any = None  # a PromptFeed while one runs
        self.output: LengthSampler | None = None  # per-request output tokens; None: the profile's

    def request_fields(self, index: int) -> dict[str, Any]:
        """The record fields this set plans for request ``index`` (cheap: called in the load loop)."""
        out = self.output.at(index) if self.output is not None else None
        return {"requested_output_tokens": out} if out is not None else {}

    def describe(self) -> dict[str, Any]:
        """What the stage result says about the prompts (kind, distinct prompts, exhaust policy)."""
        try:
            kind = self.spec().get("kind")
        except NotImplementedError:  # a set that cannot be rebuilt elsewhere (a test's own)
            kind = type(self).__name__
        return {"kind": kind, "distinct": self.limit, "exhaust": self.exhaust}

    def spec(self) -> dict[str, Any]:
        """What :func:`prompt_set_from_spec` needs to build the same prompts in another process."""
        raise NotImplementedError

    @property
    def costly(self) -> bool:
        """Does building a prompt cost enough to keep it out of a measured stage?"""
        return False

    def build(self, index: int) -> str:
        raise NotImplementedError

    def text(self, index: int) -> str:
        """The prompt of request ``index``: prepared, fed, or (cheap sets only) built now."""
        got = self._cache.pop(index, None) if self.feed is not None else self._cache.get(index)
        if got is None:
            if self.feed is not None:
                got = self.feed.get(index, self._cache)
            else:
                got = self.attempt(index)
                self._cache[index] = got
        if isinstance(got, PromptError):
            raise got
        return got

    def attempt(self, index: int) -> str | PromptError:
        try:
            return self.build(index)
        except (LoadError, ValueError, KeyError, TypeError) as err:
            return PromptError(f"prompt {index}: {getattr(err, 'message', err)}")

    def payload(self, index: int) -> dict[str, Any]:
        text = self.text(index)
        if self.api == "chat":
            return {"messages": [{"role": "user", "content": text}]}
        return {"prompt": text}

    def check_context(self, max_model_len: int, source: str = "the profile", answer_tokens: int = 0,
                      turns: int = 1) -> None:
        """Refuse (ConfigError) a set whose planned prompts plus answers (``answer_tokens`` where the set
        plans none) cannot fit the server's context, over ``turns`` turns of a conversation (the last one
        carries every earlier prompt and answer); here: prompt lengths unknown, nothing to check."""

    def prepare(self, indices: Iterable[int]) -> None:
        """Build these prompts now, before the stage, so the load loop spends no CPU on them."""
        for i in indices:
            if i not in self._cache:
                self._cache[i] = self.attempt(i)


class SyntheticPromptSet(PromptSet):
    """Random vocabulary words fitted to each request's planned token count (a length distribution's draw,
    plus a shared prefix's tokens when the request carries one)."""

    def __init__(self, model_path: Path | str, api: Api, input_tokens: int, seed: int = 0, salt: str = "", *,
                 input_lengths: LengthDist | None = None, output_lengths: LengthDist | None = None,
                 shared_prefix: Any = None) -> None:
        super().__init__(api)
        self.input_tokens = input_tokens
        self.seed = seed
        self.salt = salt  # e.g. the profile name: two profiles on one server share no prompts (no cache hits)
        self.input_lengths, self.output_lengths, self.shared_prefix = input_lengths, output_lengths, shared_prefix
        self.inputs = LengthSampler(input_lengths or FixedLength(kind="fixed", tokens=input_tokens), seed,
                                    f"input:{salt}")
        self.output = LengthSampler(output_lengths, seed, f"output:{salt}") if output_lengths else None
        self.prefixes = PrefixPlan(shared_prefix, seed, salt) if shared_prefix else None
        self.prefix_every = 1
        self.tokenizer = load_tokenizer(model_path)
        self.words = word_pool(self.tokenizer)
        self.model_path = str(model_path)
        self._frame = template_frame(self.tokenizer) if api == "chat" else None
        overhead = self.count("")
        shortest = self.inputs.dist.bounds()[0]
        if shortest <= overhead:
            field = "input_lengths.min_tokens" if input_lengths else "input_tokens"
            raise ConfigError(f"{field}={shortest} is too small: the {api} prompt format alone takes "
                              f"{overhead} tokens with this model", hint=f"use {field} > {overhead}")
        self._overhead = overhead
        # a pool word opening the text loses its space, and may then take more than one token
        stripped = self.tokenizer([w.lstrip() for w in self.words], add_special_tokens=False)["input_ids"]
        self._extra = {w: len(ids) - 1 for w, ids in zip(self.words, stripped)}
        self._additive = self._check_additive()

    def _check_additive(self) -> bool:
        """Does the count add up word by word (a pre-tokenizer that splits at every space, as byte-level BPE
        does)? Then a prompt's first guess is exact and only a sample of them needs the tokenizer."""
        rng = np.random.default_rng(0)
        texts = ["".join(self.words[k] for k in rng.integers(0, len(self.words), n)).lstrip() for n in (1, 7, 64, 300)]
        predicted = [self._overhead + len(t.split()) + self._extra[" " + t.split()[0]] for t in texts]
        return self.count_many(texts) == predicted

    def spec(self) -> dict[str, Any]:
        def dump(m: Any) -> Any:
            return m.model_dump(mode="json") if m is not None else None

        return {"kind": "synthetic", "model_path": self.model_path, "api": self.api,
                "input_tokens": self.input_tokens, "seed": self.seed, "salt": self.salt,
                "input_lengths": dump(self.input_lengths), "output_lengths": dump(self.output_lengths),
                "shared_prefix": dump(self.shared_prefix)}

    @property
    def costly(self) -> bool:
        return True

    def count(self, text: str) -> int:
        """Prompt tokens the server will count for this user text."""
        return self.count_many([text])[0]

    def count_many(self, texts: list[str]) -> list[int]:
        """:meth:`count` of many texts in one tokenizer call (the fast tokenizer batches in Rust)."""
        if not texts:
            return []
        tok = self.tokenizer
        if self.api == "chat":
            if self._frame is None:
                rendered = [tok.apply_chat_template([{"role": "user", "content": t}], tokenize=False,
                                                    add_generation_prompt=True) for t in texts]
            else:
                rendered = [self._frame[0] + t + self._frame[1] for t in texts]
            return [len(ids) for ids in tok(rendered, add_special_tokens=False)["input_ids"]]
        return [len(ids) for ids in tok(texts, add_special_tokens=True)["input_ids"]]

    def plan(self, index: int) -> tuple[int, int | None]:
        """(prompt tokens, shared prefix id or None) of request ``index``. With ``prefix_every`` = k (a
        conversation's turns), only every k-th index can open with a prefix, drawn for index // k."""
        k = self.prefix_every
        prefix = self.prefixes.prefix_of(index // k) if self.prefixes is not None and index % k == 0 else None
        extra = self.prefixes.tokens if prefix is not None else 0  # type: ignore[union-attr]
        return self.inputs.at(index) + extra, prefix

    def request_fields(self, index: int) -> dict[str, Any]:
        target, prefix = self.plan(index)
        out = {**super().request_fields(index), "requested_input_tokens": target}
        if prefix is not None:
            out["prefix_id"] = prefix
        return out

    def _head(self, prefix: int | None) -> str:
        return "" if prefix is None else self.prefixes.text(prefix, self.words)  # type: ignore[union-attr]

    def _tail_words(self, index: int, n: int) -> list[str]:
        rng = np.random.default_rng([self.seed & 0xFFFFFFFF, zlib.crc32(self.salt.encode()), index])
        return [self.words[k] for k in rng.integers(0, len(self.words), n)]

    def _first_guess(self, index: int) -> tuple[str, int, list[str], int]:
        target, prefix = self.plan(index)
        head = self._head(prefix)
        n = max(1, target - self._overhead - (self.prefixes.tokens if prefix is not None else 0))  # type: ignore
        words = self._tail_words(index, n + 16)
        return head, target, words, n - self._opening_extra(head, words)  # < 1: no exact first guess

    def _opening_extra(self, head: str, words: list[str]) -> int:
        """Tokens beyond one that the text's first word takes once its leading space is stripped."""
        opening = (head or words[0]).split()
        return self._extra.get(" " + opening[0], 0) if opening else 0

    @staticmethod
    def _join(head: str, words: list[str], n: int) -> str:
        return (head + "".join(words[:n])).lstrip()

    def build(self, index: int) -> str:
        head, target, words, first = self._first_guess(index)
        n = first = max(1, first)
        tried: set[int] = set()
        while n not in tried and 1 <= n <= len(words):
            tried.add(n)
            got = self.count(self._join(head, words, n))
            if got == target:
                return self._join(head, words, n)
            n += target - got
        # Rare: the length jumps over the target (a merge across words). Vary the last word.
        for n in sorted(tried, key=lambda m: abs(m - first)):
            for alt in self.words[:200]:
                text = (self._join(head, words, n - 1) + alt).lstrip()
                if self.count(text) == target:
                    return text
        raise LoadError(f"cannot build a prompt of exactly {target} tokens (seed {self.seed}, index {index})")

    def prepare(self, indices: Iterable[int]) -> None:
        """Build these prompts now, in batches. Where counts add up word by word (``_additive``), the first
        guess is exact: one prompt in ``_SPOT_CHECK`` is still counted by the tokenizer, and a miss turns
        the shortcut off for good. Otherwise one tokenizer call checks a batch of first guesses. Either
        way a guess that misses its count goes through :meth:`build`'s search."""
        todo = [i for i in dict.fromkeys(indices) if i not in self._cache]
        for start in range(0, len(todo), _BATCH):
            batch = todo[start:start + _BATCH]
            guesses = [self._first_guess(i) for i in batch]
            texts = [self._join(h, w, n) for h, _, w, n in guesses]
            targets = [g[1] for g in guesses]
            if self._additive and all(g[3] >= 1 for g in guesses):
                checked = [k for k, i in enumerate(batch) if i % _SPOT_CHECK == 0]
                got = self.count_many([texts[k] for k in checked])
                if all(g == targets[k] for k, g in zip(checked, got)):
                    self._cache.update(zip(batch, texts))
                    continue
                self._additive = False
            for i, text, got, target in zip(batch, texts, self.count_many(texts), targets):
                self._cache[i] = text if got == target else self.attempt(i)

    def check_context(self, max_model_len: int, source: str = "the profile", answer_tokens: int = 0,
                      turns: int = 1) -> None:
        """A prompt plus its answer that cannot fit the server's context: refused before the stage."""
        prefix = self.prefixes.tokens if self.prefixes is not None else 0
        prompt = self.inputs.dist.bounds()[1]
        answer = self.output.dist.bounds()[1] if self.output is not None else answer_tokens
        need = prefix + turns * (prompt + answer)  # the last turn holds every earlier message and reply
        if need > max_model_len:
            field = "input_lengths.max_tokens" if self.input_lengths else "input_tokens"
            what = f"a prompt of up to {prefix + prompt} tokens" + (f" plus an answer of up to {answer}"
                                                                      if answer else "")
            if turns > 1:
                what = f"a conversation of up to {turns} turns (each {prompt} + {answer} tokens, after a " \
                       f"{prefix}-token prefix: {need} tokens by its last turn)"
            raise ConfigError(f"{source}: {field}: {what} does not fit the server's context of {max_model_len} "
                              "tokens", hint="lower the length bounds or the turns, or serve with a larger "
                                             "--max-model-len")
