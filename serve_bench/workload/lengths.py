"""Token-length distributions for a profile's prompts and answers, sampled per request index, seeded.

Each distribution is a ``kind`` with its own model (the discriminated union
``LengthDist``; an unknown kind lists the valid ones):

    fixed       always ``tokens``
    uniform     whole numbers from ``min_tokens`` to ``max_tokens``, each equally likely
    normal      mean_tokens ± std_tokens, rounded, clipped to [min_tokens, max_tokens]
    lognormal   a log-normal with this mean and standard deviation (in tokens, not in log space),
                rounded, clipped to [min_tokens, max_tokens]
    empirical   drawn (with replacement) from the lengths in a file: one whole number a line, or a
                JSONL/CSV file's ``field``

Clipping puts the mass beyond a bound on the bound (it does not redraw), so
the requested distribution is exactly :meth:`cdf`. A :class:`LengthSampler`
draws the lengths of request indices in blocks of ``BLOCK`` from a generator
seeded by (seed, stream, block): the length of request ``i`` is the same in
every process and whatever order the indices are asked in.
"""

from __future__ import annotations

import csv
import functools
import json
import math
import zlib
from pathlib import Path
from typing import Annotated, Literal, Union

import numpy as np
from pydantic import Field, PositiveFloat, PositiveInt, model_validator

from serve_bench.errors import ConfigError
from serve_bench.validation import Strict, read_text

BLOCK = 4096
LENGTH_KINDS = ("fixed", "uniform", "normal", "lognormal", "empirical")


class _Clipped(Strict):
    min_tokens: PositiveInt = 1
    max_tokens: PositiveInt

    @model_validator(mode="after")
    def _order(self) -> _Clipped:
        if self.min_tokens > self.max_tokens:
            raise ValueError(f"min_tokens ({self.min_tokens}) is above max_tokens ({self.max_tokens})")
        return self

    def bounds(self) -> tuple[int, int]:
        return self.min_tokens, self.max_tokens

    def _clip(self, x: np.ndarray) -> np.ndarray:
        return np.clip(np.rint(x), self.min_tokens, self.max_tokens).astype(np.int64)

    def _cdf_continuous(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def cdf(self, k: np.ndarray | float) -> np.ndarray:
        """P(length ≤ k) of the rounded, clipped distribution (a step function at whole numbers)."""
        k = np.floor(np.asarray(k, dtype=float))
        inner = self._cdf_continuous(k + 0.5)
        return np.where(k < self.min_tokens, 0.0, np.where(k >= self.max_tokens, 1.0, inner))


class FixedLength(Strict):
    kind: Literal["fixed"]
    tokens: PositiveInt

    def bounds(self) -> tuple[int, int]:
        return self.tokens, self.tokens

    def mean(self) -> float:
        return float(self.tokens)

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return np.full(n, self.tokens, dtype=np.int64)

    def cdf(self, k: np.ndarray | float) -> np.ndarray:
        return np.where(np.asarray(k, dtype=float) >= self.tokens, 1.0, 0.0)


class UniformLength(_Clipped):
    kind: Literal["uniform"]

    def mean(self) -> float:
        return (self.min_tokens + self.max_tokens) / 2.0

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.integers(self.min_tokens, self.max_tokens + 1, n, dtype=np.int64)

    def cdf(self, k: np.ndarray | float) -> np.ndarray:
        k = np.floor(np.asarray(k, dtype=float))
        span = self.max_tokens - self.min_tokens + 1
        return np.clip((k - self.min_tokens + 1) / span, 0.0, 1.0)


class NormalLength(_Clipped):
    kind: Literal["normal"]
    mean_tokens: PositiveFloat
    std_tokens: float = Field(ge=0)

    def mean(self) -> float:
        return float(self._clip(np.asarray([self.mean_tokens]))[0])

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return self._clip(rng.normal(self.mean_tokens, self.std_tokens, n))

    def _cdf_continuous(self, x: np.ndarray) -> np.ndarray:
        if self.std_tokens == 0:
            return np.where(x >= self.mean_tokens, 1.0, 0.0)
        z = (x - self.mean_tokens) / (self.std_tokens * math.sqrt(2.0))
        return 0.5 * (1.0 + _erf(z))


class LogNormalLength(_Clipped):
    """Given by its mean and standard deviation in tokens; log-space sigma² = ln(1 + (std/mean)²)."""

    kind: Literal["lognormal"]
    mean_tokens: PositiveFloat
    std_tokens: PositiveFloat

    def _params(self) -> tuple[float, float]:
        sigma2 = math.log1p((self.std_tokens / self.mean_tokens) ** 2)
        return math.log(self.mean_tokens) - sigma2 / 2.0, math.sqrt(sigma2)

    def mean(self) -> float:
        return float(min(max(self.mean_tokens, self.min_tokens), self.max_tokens))

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        mu, sigma = self._params()
        return self._clip(rng.lognormal(mu, sigma, n))

    def _cdf_continuous(self, x: np.ndarray) -> np.ndarray:
        mu, sigma = self._params()
        with np.errstate(divide="ignore"):
            z = (np.log(np.maximum(x, 1e-300)) - mu) / (sigma * math.sqrt(2.0))
        return 0.5 * (1.0 + _erf(z))


class EmpiricalLength(Strict):
    kind: Literal["empirical"]
    path: Path
    field: str | None = Field(None, description="JSONL/CSV: the column holding the length; None: one number a line")

    def values(self) -> np.ndarray:
        return _read_lengths(str(self.path), self.field)

    def bounds(self) -> tuple[int, int]:
        v = self.values()
        return int(v.min()), int(v.max())

    def mean(self) -> float:
        return float(self.values().mean())

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        v = self.values()
        return v[rng.integers(0, v.size, n)]

    def cdf(self, k: np.ndarray | float) -> np.ndarray:
        v = np.sort(self.values())
        return np.searchsorted(v, np.floor(np.asarray(k, dtype=float)), side="right") / v.size


LengthDist = Annotated[Union[FixedLength, UniformLength, NormalLength, LogNormalLength, EmpiricalLength],
                       Field(discriminator="kind")]


class LengthSampler:
    """The lengths of request indices under one distribution; ``stream`` keeps input and output apart."""

    def __init__(self, dist: LengthDist, seed: int = 0, stream: str = "") -> None:
        self.dist = dist
        self.seed = seed
        self.stream = zlib.crc32(stream.encode())
        self._blocks: dict[int, np.ndarray] = {}

    def _block(self, b: int) -> np.ndarray:
        got = self._blocks.get(b)
        if got is None:
            rng = np.random.default_rng([self.seed & 0xFFFFFFFF, self.stream, b])
            got = self._blocks[b] = self.dist.draw(rng, BLOCK)
        return got

    def at(self, index: int) -> int:
        return int(self._block(index // BLOCK)[index % BLOCK])

    def many(self, start: int, count: int) -> np.ndarray:
        """The lengths of indices start … start + count − 1."""
        if count <= 0:
            return np.zeros(0, dtype=np.int64)
        first, last = start // BLOCK, (start + count - 1) // BLOCK
        joined = np.concatenate([self._block(b) for b in range(first, last + 1)])
        return joined[start - first * BLOCK:start - first * BLOCK + count]


def _erf(z: np.ndarray) -> np.ndarray:
    return np.vectorize(math.erf, otypes=[float])(z)


def _read_lengths(path: str, field: str | None) -> np.ndarray:
    """Whole positive numbers from a file; any bad line is a ConfigError naming the file and line. Read once
    per version of the file (a distribution asks for its values often)."""
    try:
        stamp = Path(path).stat().st_mtime_ns
    except OSError:
        stamp = 0  # the read says what is wrong
    return _read_lengths_of(path, field, stamp)


@functools.lru_cache(maxsize=16)
def _read_lengths_of(path: str, field: str | None, _mtime_ns: int) -> np.ndarray:
    p = Path(path)
    text = read_text(p, f"lengths file {p}")
    out: list[int] = []
    if field is not None and p.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        if reader.fieldnames is None or field not in reader.fieldnames:
            raise ConfigError(f"lengths file {p}:1: no column {field!r} (columns: {reader.fieldnames})")
        rows = ((n + 2, row.get(field)) for n, row in enumerate(reader))
    else:
        rows = ((n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip())
    for number, raw in rows:
        if field is not None and p.suffix.lower() != ".csv":
            try:
                raw = json.loads(raw)[field]
            except (ValueError, KeyError, TypeError):
                raise ConfigError(f"lengths file {p}:{number}: not a JSON object with a {field!r} field") from None
        try:
            value = int(str(raw).strip())
        except ValueError:
            raise ConfigError(f"lengths file {p}:{number}: {raw!r} is not a whole number of tokens") from None
        if value < 1:
            raise ConfigError(f"lengths file {p}:{number}: a length must be at least 1 token, got {value}")
        out.append(value)
    if not out:
        raise ConfigError(f"lengths file {p}: no lengths in it")
    return np.asarray(out, dtype=np.int64)
