"""Real prompt sets: a JSONL or CSV file's rows, through one field mapping.

``field`` names the prompt's column; ``output_tokens_field`` (optional) the
column holding that request's answer length (its ``max_tokens``): a row
without it takes the profile's output length. Paths expand ``$VARS`` and
``~``, so a profile can name the offline evaluation data:
``${SERVE_BENCH_DATA_DIR}/gsm8k/test.jsonl`` with ``field: question``.

Request ``i`` gets row ``i mod rows``. When every row has been sent, the set
``cycle``s (the stage result says it did: a repeated prompt can hit the
server's prefix cache and flatter its speed) or the stage ends (``stop``).
Every row is read and checked before the stage starts; a bad row is a
:class:`ConfigError` naming the file and line.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

from serve_bench.errors import ConfigError
from serve_bench.validation import read_text
from serve_bench.workload.prompts import Api, PromptSet


def expand(path: Path | str) -> Path:
    text = os.path.expandvars(os.fspath(path))
    if "$" in text:
        raise ConfigError(f"prompts file {path}: an environment variable in it is not set",
                          hint="e.g. export SERVE_BENCH_DATA_DIR=/path/to/shared/datasets")
    return Path(text).expanduser()


def read_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, row) of a JSONL file (one object a line) or a CSV file (a header line, then records)."""
    text = read_text(path, f"prompts file {path}")
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        return [(reader.line_num, row) for row in reader]
    return json_lines(text, f"prompts file {path}")


def json_lines(text: str, what: str) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) of each non-blank line; ``what`` names the file in errors."""
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise ConfigError(f"{what}:{number}: not valid JSON") from None
        if not isinstance(row, dict):
            raise ConfigError(f"{what}:{number}: not a JSON object")
        rows.append((number, row))
    return rows


class FilePromptSet(PromptSet):
    """A JSONL or CSV file's prompts (and answer lengths), by request index."""

    def __init__(self, path: Path | str, api: Api, field: str = "prompt", *, output_tokens_field: str | None = None,
                 exhaust: str = "cycle", kind: str | None = None) -> None:
        super().__init__(api)
        self.path = expand(path)
        self.field, self.output_tokens_field, self.exhaust = field, output_tokens_field, exhaust
        self.kind = kind or ("csv" if self.path.suffix.lower() == ".csv" else "jsonl")
        self.prompts: list[str] = []
        self.outputs: list[int | None] = []
        for number, row in read_rows(self.path):
            value = row.get(field)
            if value is None:
                raise ConfigError(f"prompts file {self.path}:{number}: not a JSON object with a {field!r} field"
                                  if self.kind == "jsonl" else f"prompts file {self.path}:{number}: no {field!r} "
                                  f"value (columns: {', '.join(row)})",
                                  hint="set prompts.field to the name of the prompt field")
            if not isinstance(value, str):
                raise ConfigError(f"prompts file {self.path}:{number}: field {field!r} is not a string")
            self.prompts.append(value)
            self.outputs.append(self._output(row, number))
        if not self.prompts:
            raise ConfigError(f"prompts file {self.path}: no prompts in it")
        self.limit = len(self.prompts)

    def _output(self, row: dict[str, Any], number: int) -> int | None:
        if self.output_tokens_field is None:
            return None
        raw = row.get(self.output_tokens_field)
        if raw in (None, ""):
            return None  # this row takes the profile's output length
        try:
            value = int(str(raw).strip())
        except ValueError:
            value = 0
        if value < 1:
            raise ConfigError(f"prompts file {self.path}:{number}: {self.output_tokens_field!r} is {raw!r}, "
                              f"not a whole number of tokens >= 1")
        return value

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": str(self.path), "api": self.api, "field": self.field,
                "output_tokens_field": self.output_tokens_field, "exhaust": self.exhaust}

    def build(self, index: int) -> str:
        return self.prompts[index % len(self.prompts)]

    def request_fields(self, index: int) -> dict[str, Any]:
        out = self.outputs[index % len(self.outputs)]
        return {"requested_output_tokens": out} if out is not None else super().request_fields(index)
