"""The API key of the server under test: where it comes from, how it is sent, and keeping it off disk.

A key comes from the environment variable the study names (``server.api_key_env``,
default ``OPENAI_API_KEY``), or from vLLM's own ``--api-key`` in the study's
engine arguments when serve-bench launches the server. serve-bench passes the
latter to vLLM as ``VLLM_API_KEY`` (vLLM reads it there) rather than on the
command line, where any user of the machine could read it in ``ps``.

Every file serve-bench writes goes through :func:`redact` with the keys in play,
so a key appears in no manifest, log header or command line.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from serve_bench.errors import ConfigError

DEFAULT_KEY_ENV = "OPENAI_API_KEY"
VLLM_KEY_ENV = "VLLM_API_KEY"
MASK = "***"
_FLAG = "--api-key"


def key_from_env(name: str = DEFAULT_KEY_ENV) -> str | None:
    return os.environ.get(name) or None


def headers(key: str | None) -> dict[str, str]:
    """The Authorization header for ``key`` (none without a key)."""
    return {"Authorization": f"Bearer {key}"} if key else {}


def split_api_key(engine_args: Iterable[str]) -> tuple[list[str], str | None]:
    """vLLM engine arguments without ``--api-key K`` / ``--api-key=K``, and K."""
    args = list(engine_args)
    out: list[str] = []
    keys: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith(_FLAG + "="):
            keys.append(arg.split("=", 1)[1])
        elif arg == _FLAG:
            i += 1
            while i < len(args) and not args[i].startswith("-"):
                keys.append(args[i])
                i += 1
            continue
        else:
            out.append(arg)
        i += 1
    if len(keys) > 1:
        raise ConfigError(f"engine_args give {len(keys)} API keys; serve-bench can send one",
                          hint="give one --api-key")
    if keys and not keys[0]:
        raise ConfigError("engine_args: --api-key needs a value")
    return out, keys[0] if keys else None


def redact(value: Any, secrets: Iterable[str | None]) -> Any:
    """``value`` (str, list, dict, nested) with every secret replaced by ``***``, and every
    ``--api-key`` argument masked even when its value is not among ``secrets``."""
    keys = sorted({s for s in secrets if s}, key=len, reverse=True)

    def clean(v: Any) -> Any:
        if isinstance(v, str):
            for k in keys:
                v = v.replace(k, MASK)
            return _mask_flag(v)
        if isinstance(v, list | tuple):
            masked = [clean(x) for x in v]
            for i, x in enumerate(masked[:-1]):
                if x == _FLAG and isinstance(masked[i + 1], str):
                    masked[i + 1] = MASK
            return masked
        if isinstance(v, dict):
            return {k: (MASK if isinstance(k, str) and "API_KEY" in k.upper() and x else clean(x))
                    for k, x in v.items()}
        return v

    return clean(value)


def _mask_flag(text: str) -> str:
    """``--api-key=K`` and ``--api-key K`` inside one string (a shell-quoted --engine-args)."""
    if _FLAG not in text:
        return text
    words = text.split(" ")
    for i, w in enumerate(words):
        if w.startswith(_FLAG + "="):
            words[i] = f"{_FLAG}={MASK}"
        elif w == _FLAG and i + 1 < len(words):
            words[i + 1] = MASK
    return " ".join(words)
