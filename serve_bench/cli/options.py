"""Flag values the commands share, parsed once: lists given comma-separated or repeated, counts or 'all',
quoted engine arguments, SLOs. Bad values are ConfigErrors naming the flag."""

from __future__ import annotations

import shlex

from serve_bench.errors import ConfigError


def split_list(items: tuple[str, ...]) -> list[str]:
    """``--tasks a,b --tasks c`` -> [a, b, c]."""
    return [t.strip() for item in items for t in item.split(",") if t.strip()]


def count_or_all(flag: str, value: str) -> int | str:
    if value == "all":
        return value
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{flag} {value}: expected a whole number or 'all'") from None


def engine_args(text: str) -> list[str]:
    """``--engine-args '--max-model-len 2048'`` as vLLM's argument list."""
    try:
        return shlex.split(text)
    except ValueError as err:
        raise ConfigError(f"--engine-args {text}: {err}", hint="quote it as one argument: --engine-args "
                                                              "'--max-num-seqs 64 --dtype bfloat16'") from None


def parse_labels(items: tuple[str, ...]) -> dict[str, str]:
    """``--label KEY=VALUE`` flags as a mapping (a later one for the same key wins)."""
    labels: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--label {item}: expected KEY=VALUE, e.g. --label gpu=h100")
        labels[key.strip()] = value
    return labels


# `vllm bench serve --goodput KEY:MS …`'s keys, and the SLO each is here
GOODPUT_KEYS = {"ttft": "ttft_ms", "tpot": "tpot_ms", "e2el": "e2el_ms"}


def parse_percentiles(text: str) -> list[float]:
    """``--percentiles 50,90,99.9`` as numbers (their range is checked where the study is validated)."""
    try:
        return [float(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise ConfigError(f"--percentiles {text!r}: comma-separated numbers, e.g. 50,90,99,99.9") from None


def parse_goodput(items: tuple[str, ...]) -> dict[str, float]:
    """``--goodput ttft:500 tpot:50`` in vLLM's spelling (several pairs in one flag, or the flag repeated) as
    an SLO mapping (``{"ttft_ms": 500, "tpot_ms": 50}``)."""
    slo: dict[str, float] = {}
    for item in (pair for value in items for pair in value.split()):
        key, sep, value = item.partition(":")
        if not sep or key not in GOODPUT_KEYS:
            raise ConfigError(f"--goodput {item}: expected KEY:MILLISECONDS with KEY one of "
                              f"{', '.join(GOODPUT_KEYS)}, e.g. --goodput ttft:500 tpot:50")
        try:
            slo[GOODPUT_KEYS[key]] = float(value)
        except ValueError:
            raise ConfigError(f"--goodput {item}: {value!r} is not a number of milliseconds") from None
    return slo


def slo_flags(slo: tuple[str, ...], goodput: tuple[str, ...]) -> dict[str, float]:
    """``--slo NAME=MS`` and ``--goodput KEY:MS`` together: one SLO set; a limit given twice must agree."""
    a, b = parse_slos(slo), parse_goodput(goodput)
    clash = sorted(k for k in set(a) & set(b) if a[k] != b[k])
    if clash:
        raise ConfigError(f"--slo and --goodput give {', '.join(clash)} different limits",
                          hint="give each limit once")
    return {**a, **b}


def parse_slos(items: tuple[str, ...]) -> dict[str, float]:
    """``--slo NAME=MS`` flags as a mapping; names and values are checked where the settings are validated."""
    slo: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError
            slo[name.strip()] = float(value)
        except ValueError:
            raise ConfigError(f"--slo {item}: expected NAME=MILLISECONDS, e.g. --slo ttft_ms=500") from None
    return slo
