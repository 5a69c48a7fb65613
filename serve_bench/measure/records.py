"""The raw per-request record, and an append-only JSONL file of them.

A record holds timestamps only (wall-clock seconds from :mod:`clock`); every
derived value (TTFT in ms, TPOT…) is computed in :mod:`metrics`. A failed
request is a record too (``ok=False``, ``status``, ``error``), never an
exception.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import IO

from pydantic import Field

from serve_bench.errors import LoadError
from serve_bench.validation import Strict


class RequestRecord(Strict):

    request_id: str
    stage: str
    profile: str | None = Field(None, description="the load profile the stage belongs to")
    worker_id: str = Field(description="which load-generator process/user sent it, e.g. 'w0/u3'")
    intended_send_s: float | None = Field(None, description="open loop: scheduled send time; None in closed loop")
    send_s: float = Field(description="just before the request bytes were written")
    first_token_s: float | None = Field(None, description="arrival of the first chunk with non-empty content")
    chunk_times_s: list[float] = Field(default_factory=list, description="arrival of every content chunk")
    last_token_s: float | None = Field(None, description="arrival of the last content chunk")
    end_s: float | None = Field(None, description="when the request finished, ok or not (stream closed, error)")
    prompt_tokens: int | None = Field(None, description="from the server's usage, never counted by the client")
    output_tokens: int | None = Field(None, description="from the server's usage, never counted from chunks")
    max_tokens: int
    status: int = Field(description="HTTP status code; 0 for a transport error")
    error: str | None = None
    ok: bool
    warmup: bool = Field(False, description="sent during the stage's warm-up: kept on disk, left out of statistics")
    # the workload's plan for this request (absent in runs made before workloads: None)
    requested_input_tokens: int | None = Field(None, description="prompt tokens the plan asked for (synthetic "
                                                                "and trace prompts); None: a file's prompt")
    requested_output_tokens: int | None = Field(None, description="answer tokens asked for (max_tokens)")
    prefix_id: int | None = Field(None, description="the shared prefix this request's prompt starts with")
    conversation_id: str | None = Field(None, description="multi-turn: the conversation this turn belongs to")
    turn_index: int | None = Field(None, description="multi-turn: 0 for the first turn")
    trial: int | None = Field(None, description="the trial of a repeated run (run --repeats), from 1")
    endpoint: str | None = Field(None, description="the base URL the request went to (one of a fleet's endpoints)")


class RecordWriter:
    """Append records to a JSONL file, one line each, flushed as written (a crash loses nothing finished)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._file: IO[str] | None = None
        self.count = 0

    def open(self) -> RecordWriter:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")
        except OSError as err:
            raise LoadError(f"cannot open the records file {self.path}: {err.strerror}") from err
        return self

    def write(self, record: RequestRecord) -> None:
        if self._file is None:
            self.open()
        assert self._file is not None
        self._file.write(record.model_dump_json() + "\n")
        self._file.flush()
        self.count += 1

    __call__ = write  # a writer is a record sink

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> RecordWriter:
        return self.open()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def read_records(path: Path | str) -> list[RequestRecord]:
    """Every record in a JSONL file; a torn last line (a crash mid-write) is skipped."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise LoadError(f"cannot read the records file {path}: {err.strerror}") from err
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:  # pydantic parses the JSON itself: about 1.7x quicker than json.loads, then validate
            records.append(RequestRecord.model_validate_json(line))
        except ValueError as err:
            if number == len(lines):
                break
            raise LoadError(f"{path}:{number}: not a request record ({err})") from err
    return records
