"""The model's tokenizer, as synthetic prompts use it: loading it once, its single-token words, its chat frame."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

from serve_bench.errors import LoadError

_WORD = re.compile(r"^ [a-z]{3,9}$")
_POOL_SIZE = 2000
_SENTINEL = "\x00SERVE_BENCH\x00"


@functools.lru_cache(maxsize=4)
def load_tokenizer(model_path: Path | str) -> Any:
    try:
        from transformers import AutoTokenizer
    except ImportError as err:
        raise LoadError("transformers is not installed", hint="pip install transformers") from err
    try:
        return AutoTokenizer.from_pretrained(str(model_path))
    except (OSError, ValueError) as err:
        raise LoadError(f"cannot load the tokenizer of {model_path}: {err}") from err


def word_pool(tokenizer: Any) -> list[str]:
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


def template_frame(tokenizer: Any) -> tuple[str, str] | None:
    """The chat template's text around one user message (head, tail), when it puts the content in verbatim:
    counting then needs no template rendering, only the tokenizer. None: render each prompt."""
    try:
        rendered = tokenizer.apply_chat_template([{"role": "user", "content": _SENTINEL}], tokenize=False,
                                                 add_generation_prompt=True)
        head, tail = rendered.split(_SENTINEL)
        probe = " probe words"
        again = tokenizer.apply_chat_template([{"role": "user", "content": probe}], tokenize=False,
                                              add_generation_prompt=True)
    except (ValueError, TypeError, AttributeError):
        return None
    return (head, tail) if again == head + probe + tail else None
