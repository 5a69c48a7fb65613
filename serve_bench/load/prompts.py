"""Prompts for the load: synthetic ones of an exact token length, or a JSONL file's.

Synthetic prompts are random words drawn from the model's own vocabulary
(whole words, each one token with its leading space), seeded per request
index, so every request has a different prefix (no accidental prefix-cache
hits) and the same seed gives the same prompts. Their length is fitted with
the model's tokenizer to what the server will count:

    chat          the chat template applied (with the generation prompt), then
                  tokenized without special tokens (what vLLM does for chat)
    completions   the text tokenized with special tokens (vLLM's default for completions)

Fitting costs tokenizer calls, which would block the load generator's event
loop and delay the timestamps of every stream in flight; so no prompt is built
inside a measured stage. A stage's known prompts are built before it starts
(:meth:`PromptSet.prepare`); a stage bounded by time alone gets the rest from
a :class:`~serve_bench.load.prompt_feed.PromptFeed`, a separate process that
builds them ahead of use. A prompt that cannot be built is kept as that
request's error (:class:`PromptError`), never raised into the stage.
"""

from __future__ import annotations

import functools
import json
import random
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

from serve_bench.errors import ConfigError, LoadError


class PromptError(Exception):
    """This request's prompt could not be built: recorded as the request's error."""

Api = Literal["chat", "completions"]
_WORD = re.compile(r"^ [a-z]{3,9}$")
_POOL_SIZE = 2000


class PromptSet:
    """Request bodies' prompt part by request index: ``{"messages": [...]}`` or ``{"prompt": "..."}``."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self._cache: dict[int, str | PromptError] = {}
        self.feed: Any = None  # a PromptFeed while one runs

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

    def expected_prompt_tokens(self, index: int) -> int | None:
        return None

    def payload(self, index: int) -> dict[str, Any]:
        text = self.text(index)
        if self.api == "chat":
            return {"messages": [{"role": "user", "content": text}]}
        return {"prompt": text}

    def prepare(self, indices: Iterable[int]) -> None:
        """Build these prompts now, before the stage, so the load loop spends no CPU on them."""
        for i in indices:
            if i not in self._cache:
                self._cache[i] = self.attempt(i)


class SyntheticPromptSet(PromptSet):
    def __init__(self, model_path: Path | str, api: Api, input_tokens: int, seed: int = 0, salt: str = "") -> None:
        super().__init__(api)
        self.input_tokens = input_tokens
        self.seed = seed
        self.salt = salt  # e.g. the profile name: two profiles on one server share no prompts (no cache hits)
        self.tokenizer = _load_tokenizer(model_path)
        self.words = _word_pool(self.tokenizer)
        self.model_path = str(model_path)
        overhead = self.count("")
        if input_tokens <= overhead:
            raise ConfigError(f"input_tokens={input_tokens} is too small: the {api} prompt format alone takes "
                              f"{overhead} tokens with this model", hint=f"use input_tokens > {overhead}")
        self._overhead = overhead

    def spec(self) -> dict[str, Any]:
        return {"kind": "synthetic", "model_path": self.model_path, "api": self.api,
                "input_tokens": self.input_tokens, "seed": self.seed, "salt": self.salt}

    @property
    def costly(self) -> bool:
        return True

    def count(self, text: str) -> int:
        """Prompt tokens the server will count for this user text."""
        tok = self.tokenizer
        if self.api == "chat":
            rendered = tok.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                               add_generation_prompt=True)
            return len(tok(rendered, add_special_tokens=False)["input_ids"])
        return len(tok(text, add_special_tokens=True)["input_ids"])

    def expected_prompt_tokens(self, index: int) -> int | None:
        return self.input_tokens

    def build(self, index: int) -> str:
        rng = random.Random(f"{self.seed}:{self.salt}:{index}")
        target = self.input_tokens
        words = [rng.choice(self.words) for _ in range(target + 16)]

        def make(n: int) -> str:
            return "".join(words[:n]).lstrip()

        n = max(1, target - self._overhead)
        tried: set[int] = set()
        while n not in tried and 1 <= n <= len(words):
            tried.add(n)
            got = self.count(make(n))
            if got == target:
                return make(n)
            n += target - got
        # Rare: the length jumps over the target (a merge across words). Vary the last word.
        for n in sorted(tried, key=lambda m: abs(m - (target - self._overhead))):
            for alt in self.words[:200]:
                text = "".join(words[:n - 1]).lstrip() + alt
                if self.count(text) == target:
                    return text
        raise LoadError(f"cannot build a prompt of exactly {target} tokens (seed {self.seed}, index {index})")


class JsonlPromptSet(PromptSet):
    def __init__(self, path: Path | str, api: Api, field: str = "prompt") -> None:
        super().__init__(api)
        self.path = Path(path)
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except OSError as err:
            raise ConfigError(f"prompts file {self.path}: cannot read: {err.strerror}") from None
        self.prompts: list[str] = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)[field]
            except (ValueError, KeyError, TypeError):
                raise ConfigError(f"prompts file {self.path}:{number}: not a JSON object with a {field!r} field",
                                  hint="set prompts.field to the name of the prompt field") from None
            if not isinstance(value, str):
                raise ConfigError(f"prompts file {self.path}:{number}: field {field!r} is not a string")
            self.prompts.append(value)
        if not self.prompts:
            raise ConfigError(f"prompts file {self.path}: no prompts in it")
        self.field = field

    def spec(self) -> dict[str, Any]:
        return {"kind": "jsonl", "path": str(self.path), "api": self.api, "field": self.field}

    def build(self, index: int) -> str:
        return self.prompts[index % len(self.prompts)]


def build_prompt_set(source: Any, *, model_path: Path | str, api: Api, input_tokens: int,
                     seed: int = 0, salt: str = "") -> PromptSet:
    """From a profile's ``prompts`` entry (SyntheticPrompts or JsonlPrompts)."""
    builders: dict[str, Callable[[], PromptSet]] = {
        "synthetic": lambda: SyntheticPromptSet(model_path, api, input_tokens, seed, salt),
        "jsonl": lambda: JsonlPromptSet(source.path, api, source.field),
    }
    if source.kind not in builders:
        raise ConfigError(f"unknown prompt source kind {source.kind!r}; valid: {sorted(builders)}")
    return builders[source.kind]()


def prompt_set_from_spec(spec: dict[str, Any]) -> PromptSet:
    if spec["kind"] == "synthetic":
        return SyntheticPromptSet(spec["model_path"], spec["api"], spec["input_tokens"], spec["seed"], spec["salt"])
    return JsonlPromptSet(spec["path"], spec["api"], spec["field"])


@functools.lru_cache(maxsize=4)
def _load_tokenizer(model_path: Path | str) -> Any:
    try:
        from transformers import AutoTokenizer
    except ImportError as err:
        raise LoadError("transformers is not installed", hint="pip install transformers") from err
    try:
        return AutoTokenizer.from_pretrained(str(model_path))
    except (OSError, ValueError) as err:
        raise LoadError(f"cannot load the tokenizer of {model_path}: {err}") from err


def _word_pool(tokenizer: Any) -> list[str]:
    """Up to _POOL_SIZE lowercase words, each a single token with its leading space, in vocabulary order."""
    vocab: dict[str, int] = tokenizer.get_vocab()
    pool: list[str] = []
    for token_id in sorted(vocab.values()):
        text = tokenizer.decode([token_id])
        if not _WORD.match(text):
            continue
        if tokenizer(text, add_special_tokens=False)["input_ids"] == [token_id]:
            pool.append(text)
            if len(pool) >= _POOL_SIZE:
                break
    if len(pool) < 50:
        raise LoadError("cannot find enough whole-word tokens in this tokenizer's vocabulary for synthetic prompts",
                        hint="use a prompts file (prompts: {kind: jsonl, path: ...})")
    return pool
