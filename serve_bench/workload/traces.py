"""Request traces: send times and token counts to replay, open loop.

Two formats:

    azure      the Azure LLM inference trace CSV: ``TIMESTAMP`` (a date-time, or seconds),
               ``ContextTokens``, ``GeneratedTokens``
    mooncake   the Mooncake JSONL: ``timestamp`` (milliseconds), ``input_length``, ``output_length``,
               ``hash_ids`` (one id per block of ``block_tokens`` prompt tokens; equal ids are equal
               blocks, so requests sharing leading ids share a prompt prefix)

A ``replay`` stage sends row ``i`` at ``(t_i − t_0) / speed`` after its start,
with the same intended-send accounting as a ``rate`` stage (latency from the
intended send, send lag). Each request's prompt is synthetic, fitted to the
row's input tokens; its answer length is the row's output tokens. A trace is
read and checked before the stage: a missing field, a bad number or a
timestamp earlier than the row before is a :class:`ConfigError` naming the
file and line.
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from serve_bench.errors import ConfigError
from serve_bench.validation import read_text
from serve_bench.workload.datasets import expand, json_lines
from serve_bench.workload.prompts import Api, SyntheticPromptSet

FORMATS = ("azure", "mooncake")


@dataclass(frozen=True)
class Trace:
    path: Path
    times_s: np.ndarray          # from the first row, seconds
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    hash_ids: tuple[tuple[int, ...], ...]
    lines: tuple[int, ...]       # each row's line in the file

    def __len__(self) -> int:
        return int(self.times_s.size)

    def offsets_s(self, speed: float = 1.0) -> list[float]:
        return [float(t) for t in self.times_s / speed]


def load_trace(path: Path | str, fmt: str) -> Trace:
    p = Path(path)
    try:
        stamp = p.stat().st_mtime_ns
    except OSError as err:
        raise ConfigError(f"trace {p}: cannot read: {err.strerror}") from None
    return _load(str(p), fmt, stamp)


@functools.lru_cache(maxsize=8)
def _load(path: str, fmt: str, _mtime_ns: int) -> Trace:
    if fmt not in FORMATS:
        raise ConfigError(f"trace {path}: unknown format {fmt!r}; valid: {', '.join(FORMATS)}")
    p = Path(path)
    text = read_text(p, f"trace {p}")
    rows = _azure(p, text) if fmt == "azure" else _mooncake(p, text)
    if not rows:
        raise ConfigError(f"trace {p}: no requests in it")
    last = None
    for number, t, *_ in rows:
        if last is not None and t < last[1]:
            raise ConfigError(f"trace {p}:{number}: timestamp earlier than line {last[0]}'s: a trace must be in "
                              f"send order", hint="sort the trace by its timestamp")
        last = (number, t)
    times = np.asarray([r[1] for r in rows], dtype=float)
    return Trace(path=p, times_s=times - times[0], input_tokens=np.asarray([r[2] for r in rows], dtype=np.int64),
                 output_tokens=np.asarray([r[3] for r in rows], dtype=np.int64),
                 hash_ids=tuple(tuple(r[4]) for r in rows), lines=tuple(r[0] for r in rows))


def _count(p: Path, number: int, row: dict[str, Any], field: str) -> int:
    raw = row.get(field)
    if raw is None or raw == "":
        raise ConfigError(f"trace {p}:{number}: no {field!r} field")
    try:
        value = int(float(str(raw).strip()))
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"trace {p}:{number}: {field} is {raw!r}, not a whole number of tokens >= 1")
    return value


def _azure(p: Path, text: str) -> list[tuple[int, float, int, int, list[int]]]:
    reader = csv.DictReader(text.splitlines())
    missing = {"TIMESTAMP", "ContextTokens", "GeneratedTokens"} - set(reader.fieldnames or [])
    if missing:
        raise ConfigError(f"trace {p}:1: no column(s) {', '.join(sorted(missing))} (an Azure LLM inference trace "
                          f"has TIMESTAMP, ContextTokens, GeneratedTokens)")
    rows = []
    for row in reader:
        number = reader.line_num
        rows.append((number, _seconds(p, number, row.get("TIMESTAMP")), _count(p, number, row, "ContextTokens"),
                     _count(p, number, row, "GeneratedTokens"), []))
    return rows


def _seconds(p: Path, number: int, raw: Any) -> float:
    text = str(raw or "").strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:  # "2023-11-16 18:15:46.6805900": Python reads at most 6 fractional digits
        head, _, frac = text.partition(".")
        return datetime.fromisoformat(head).timestamp() + (float("0." + frac) if frac else 0.0)
    except ValueError:
        raise ConfigError(f"trace {p}:{number}: TIMESTAMP {text!r} is neither seconds nor a date-time") from None


def _mooncake(p: Path, text: str) -> list[tuple[int, float, int, int, list[int]]]:
    rows = []
    for number, row in json_lines(text, f"trace {p}"):
        if "timestamp" not in row:
            raise ConfigError(f"trace {p}:{number}: no 'timestamp' field (Mooncake rows have timestamp, "
                              f"input_length, output_length, hash_ids)")
        try:
            t = float(row["timestamp"]) / 1000.0  # milliseconds
        except (TypeError, ValueError):
            raise ConfigError(f"trace {p}:{number}: timestamp {row['timestamp']!r} is not a number") from None
        ids = row.get("hash_ids") or []
        if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
            raise ConfigError(f"trace {p}:{number}: hash_ids is not a list of integers")
        rows.append((number, t, _count(p, number, row, "input_length"), _count(p, number, row, "output_length"), ids))
    return rows


class TracePromptSet(SyntheticPromptSet):
    """Synthetic prompts of each trace row's input tokens, its hash-id blocks shared between requests."""

    def __init__(self, model_path: Path | str, api: Api, path: Path | str, fmt: str, *, block_tokens: int = 512,
                 seed: int = 0, salt: str = "") -> None:
        self.trace = load_trace(expand(path), fmt)
        self.fmt, self.block_tokens = fmt, block_tokens
        shortest = int(np.argmin(self.trace.input_tokens))
        try:
            super().__init__(model_path, api, int(self.trace.input_tokens[shortest]), seed, salt)
        except ConfigError as err:
            raise ConfigError(f"trace {self.trace.path}:{self.trace.lines[shortest]}: {err.message}",
                              hint=err.hint) from None
        self.output = _RowLengths(self.trace.output_tokens)  # type: ignore[assignment]
        self.limit, self.exhaust = len(self.trace), "stop"
        self._blocks: dict[int, list[str]] = {}

    def spec(self) -> dict[str, Any]:
        return {"kind": "trace", "model_path": self.model_path, "api": self.api, "path": str(self.trace.path),
                "format": self.fmt, "block_tokens": self.block_tokens, "seed": self.seed, "salt": self.salt}

    def plan(self, index: int) -> tuple[int, int | None]:
        row = index % len(self.trace)
        ids = self.trace.hash_ids[row]
        return int(self.trace.input_tokens[row]), (ids[0] if ids else None)

    def _block(self, hash_id: int) -> list[str]:
        got = self._blocks.get(hash_id)
        if got is None:
            rng = np.random.default_rng([self.seed & 0xFFFFFFFF, 0x7ACE, hash_id & 0xFFFFFFFF])
            got = self._blocks[hash_id] = [self.words[k] for k in rng.integers(0, len(self.words),
                                                                                 self.block_tokens)]
        return got

    def _first_guess(self, index: int) -> tuple[str, int, list[str], int]:
        target = self.plan(index)[0]
        room = max(0, target - self._overhead - 1)  # at least one word of the request's own
        head_words: list[str] = []
        for hash_id in self.trace.hash_ids[index % len(self.trace)]:
            if len(head_words) >= room:
                break
            head_words.extend(self._block(hash_id))
        if head_words:  # the opening word, its space stripped, may take more than one token
            room = max(0, room - self._extra.get(head_words[0], 0))
        head_words = head_words[:room]
        head = "".join(head_words)
        words = self._tail_words(index, max(1, target - self._overhead - len(head_words)) + 16)
        return head, target, words, target - self._overhead - len(head_words) - self._opening_extra(head, words)

    def check_context(self, max_model_len: int, source: str = "the profile", answer_tokens: int = 0,
                      turns: int = 1) -> None:
        total = self.trace.input_tokens + self.trace.output_tokens
        over = np.nonzero(total > max_model_len)[0]
        if over.size:
            row = int(over[0])
            raise ConfigError(f"trace {self.trace.path}:{self.trace.lines[row]}: {self.trace.input_tokens[row]} "
                              f"prompt + {self.trace.output_tokens[row]} answer tokens do not fit the server's "
                              f"context of {max_model_len} tokens ({over.size} such row(s))",
                              hint="serve with a larger --max-model-len, or drop those rows")


class _RowLengths:
    """A LengthSampler's interface over a trace's column: request i gets row i mod rows."""

    def __init__(self, values: np.ndarray) -> None:
        self.values = values

    def at(self, index: int) -> int:
        return int(self.values[index % self.values.size])
