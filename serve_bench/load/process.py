"""The load generator in its own process, as the orchestrator sees it.

The orchestrating process (``serve-bench run``, selfcheck) never imports gevent or Locust: a profile's
stages run in a child, ``python -m serve_bench.load.driver`` (Locust's local runner there, or the
master of N worker processes: the same child either way), which appends every finished request to the
checkpoint's records file, flushed as written, and reports on a pipe, one JSON line an event:

    begin   a stage started: profile, stage, kind, target, warm-up (the live view, the exporter)
    live    the running stage's requests in flight and load-generator CPU, every LIVE_PERIOD_S
    stage   a stage's result (StageResult), sent once its records are flushed
    error   a ServeBenchError the load process raised: its class, message and hint

This side reads the records back from the file as they land, so the exporter, the live view and each
stage's reconciliation see exactly what the run directory holds, and the observers (the /metrics
scraper, the energy sampler) run here, off the sending loop. Ctrl-C here is passed to the child, which
ends its stage as a Ctrl-C would; a child that outlives its grace is killed, and it dies with this
process (no stray load generator).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import selectors
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from pydantic import Field

from serve_bench import errors
from serve_bench.errors import LoadError, ServeBenchError
from serve_bench.load.balance import DEFAULT_BALANCE
from serve_bench.load.live import LiveStage
from serve_bench.measure.clock import anchor_env, now_s
from serve_bench.measure.metrics import PERCENTILES
from serve_bench.measure.records import RequestRecord
from serve_bench.measure.stage_result import SATURATION_LAG_MS, StageResult
from serve_bench.processes import die_with_parent
from serve_bench.validation import Strict
from serve_bench.workload.profiles import LoadProfile, Warmup

DEFAULT_MASTER_PORT = 5557
API_KEY_ENV = "SERVE_BENCH_WORKER_API_KEY"  # the server's key for a load process: the environment, never a file
LIVE_PERIOD_S = 0.25
INTERRUPT_GRACE_S = 20.0  # a Ctrl-C'd stage quits its users and flushes; then the child is killed
_POLL_S = 0.1


@dataclasses.dataclass(frozen=True)
class RemoteMaster:
    """Where the load process listens for workers started by hand on other hosts."""

    bind_host: str = "127.0.0.1"
    port: int = DEFAULT_MASTER_PORT
    connect_timeout_s: float = 600.0


class LoadSpec(Strict):
    """What the load process is asked to run (written to its standard input)."""

    profile: dict[str, Any]
    url: str
    model: str
    model_path: str | None = None
    records_path: str
    slos_ms: dict[str, float] | None = None
    workers: int = 0
    remote: dict[str, Any] | None = None
    worker_log_dir: str | None = None
    saturation_lag_ms: float = SATURATION_LAG_MS
    trial: int | None = None  # stamped on every record (a repeated run's trial)
    endpoints: list[str] | None = None  # a fleet's base URLs (None: url alone)
    percentiles: list[float] = Field(default_factory=lambda: list(PERCENTILES))  # those a stage summary gives
    balance: str = DEFAULT_BALANCE
    stop_on_death: bool = False


class RecordTail:
    """The records appended to a JSONL file since this was opened, whole lines only."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = path.stat().st_size if path.exists() else 0
        self._partial = b""

    def read(self) -> list[RequestRecord]:
        if not self.path.exists():
            return []
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            data = f.read()
        self._offset += len(data)
        *lines, self._partial = (self._partial + data).split(b"\n")
        return [RequestRecord.model_validate_json(line) for line in lines if line.strip()]


def run_profile(profile: LoadProfile, *, url: str, model: str, records_path: Path, log_path: Path,
                model_path: str | None = None, slos_ms: Mapping[str, float] | None = None, workers: int = 0,
                remote: RemoteMaster | None = None, api_key: str | None = None,
                worker_log_dir: Path | None = None, live: LiveStage | None = None, trial: int | None = None,
                endpoints: Sequence[str] | None = None, balance: str = DEFAULT_BALANCE, stop_on_death: bool = False,
                on_record: Callable[[RequestRecord], None] | None = None,
                on_stage: Callable[[StageResult], None] | None = None,
                percentiles: Sequence[float] = PERCENTILES) -> list[StageResult]:
    """Every stage of ``profile`` in a load process of its own (see the module's doc); records are
    appended to ``records_path``, the load process's own output goes to ``log_path``. Raises what the
    load process raised (a bad profile, prompts too long for the server…) as the same error class.
    ``endpoints``: a fleet's base URLs, requests spread by ``balance`` (load.balance); a dead one is left
    out and the stage goes on, or stops with ``stop_on_death``."""
    spec = LoadSpec(profile=profile.model_dump(mode="json"), url=url, model=model, model_path=model_path,
                    records_path=str(records_path), slos_ms=dict(slos_ms) if slos_ms else None, workers=workers,
                    remote=None if remote is None else dataclasses.asdict(remote),
                    worker_log_dir=None if worker_log_dir is None else str(worker_log_dir), trial=trial,
                    endpoints=list(endpoints) if endpoints else None, balance=balance, stop_on_death=stop_on_death,
                    percentiles=list(percentiles))
    records_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    tail = RecordTail(records_path)
    live = live or LiveStage()
    results: list[StageResult] = []
    failure: dict[str, Any] = {}
    now = {"in_flight": 0, "cpu": None}

    def take_records() -> None:
        for record in tail.read():
            if on_record is not None:
                on_record(record)

    def handle(event: dict[str, Any]) -> None:
        kind = event.pop("event")
        if kind == "begin":
            now.update(in_flight=0, cpu=None)
            live.begin(event["profile"], event["stage"], event["kind"], event["target"],
                       lambda: now["in_flight"], lambda: now["cpu"], Warmup.model_validate(event["warmup"]))
        elif kind == "live":
            now.update(in_flight=event["in_flight"], cpu=event["cpu"])
        elif kind == "stage":
            live.end()
            take_records()  # the load process flushed this stage's records before saying so
            result = StageResult.model_validate(event["result"])
            results.append(result)
            if on_stage is not None:
                on_stage(result)
        elif kind == "error":
            failure.update(event)

    env = {**os.environ, **anchor_env()}  # one clock for the records and this process's observers
    if api_key:
        env[API_KEY_ENV] = api_key
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "serve_bench.load.driver"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=log, env=env, preexec_fn=_own_group_dying_with_us)
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(spec.model_dump_json().encode())
        proc.stdin.close()
        _follow(proc, proc.stdout, handle, take_records)
    except KeyboardInterrupt:
        _interrupt(proc, handle, take_records)
        raise
    finally:
        live.end()
        _reap(proc)
    take_records()
    if failure:
        raise _error(failure)
    if proc.returncode:
        raise LoadError(f"the load process exited with code {proc.returncode}; finished stages are kept; the last "
                        f"lines of its log ({log_path}):\n{_tail(log_path)}")
    return results


def _own_group_dying_with_us() -> None:
    # its own process group: a terminal's Ctrl-C reaches this process only, which passes it on once
    os.setpgid(0, 0)
    die_with_parent()


def _follow(proc: subprocess.Popen[bytes], out: IO[bytes], handle: Callable[[dict[str, Any]], None],
            take_records: Callable[[], None], until_s: float | None = None) -> None:
    """Handle the load process's events until it closes its pipe (or ``until_s``), reading records between."""
    buffered = b""
    with selectors.DefaultSelector() as sel:
        sel.register(out, selectors.EVENT_READ)
        while until_s is None or now_s() < until_s:
            if sel.select(timeout=_POLL_S):
                chunk = os.read(out.fileno(), 65536)
                if not chunk:
                    break
                *lines, buffered = (buffered + chunk).split(b"\n")
                for line in lines:
                    if line.strip():
                        handle(json.loads(line))
            take_records()


def _interrupt(proc: subprocess.Popen[bytes], handle: Callable[[dict[str, Any]], None],
               take_records: Callable[[], None]) -> None:
    """Pass Ctrl-C on and let the load process end its stage (its finished records are already on disk)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGINT)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
    try:
        if proc.stdout is not None:
            with contextlib.suppress(OSError, ValueError):
                _follow(proc, proc.stdout, lambda event: None, take_records, until_s=now_s() + INTERRUPT_GRACE_S)
    finally:
        signal.signal(signal.SIGINT, previous)


def _reap(proc: subprocess.Popen[bytes]) -> None:
    try:
        proc.wait(timeout=INTERRUPT_GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def _error(event: Mapping[str, Any]) -> ServeBenchError:
    cls = getattr(errors, str(event.get("type")), None)
    if not (isinstance(cls, type) and issubclass(cls, ServeBenchError)):
        cls = LoadError
    return cls(event.get("message") or "the load process failed", hint=event.get("hint"))


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return "    (no log)"
    return "\n".join("    " + line for line in text) or "    (empty)"
