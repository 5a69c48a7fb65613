"""The load process: ``python -m serve_bench.load.driver``, started by :mod:`serve_bench.load.process`.

gevent and Locust live here and in the worker processes this starts, nowhere else in a run. It reads
a :class:`~serve_bench.load.process.LoadSpec` on standard input, runs the profile's stages
(:func:`serve_bench.load.runner.run_profile`: a Locust local runner in this process, or a master with
local or remote workers), appends each record to the records file as it finishes, and writes events,
one JSON line each, to the pipe it was given as standard output; anything else printed goes to
standard error (the load process's log). Exit codes: 0, a ServeBenchError's own (after an ``error``
event), 130 for Ctrl-C.
"""

# Locust's own entry point patches first: patching after ssl is imported ends in recursion errors
from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import IO, Any  # noqa: E402

import gevent  # noqa: E402

from serve_bench.errors import EXIT_INTERRUPTED, ServeBenchError  # noqa: E402
from serve_bench.load.live import LiveStage  # noqa: E402
from serve_bench.load.process import API_KEY_ENV, LIVE_PERIOD_S, LoadSpec, RemoteMaster  # noqa: E402
from serve_bench.load.runner import run_profile  # noqa: E402
from serve_bench.measure.records import RecordWriter  # noqa: E402
from serve_bench.measure.stage_result import StageResult  # noqa: E402
from serve_bench.workload.profiles import LoadProfile  # noqa: E402


def deliver_ctrl_c_to_the_run(hub: Any) -> None:
    """Ctrl-C ends the run, whichever greenlet is running when it comes. Python raises KeyboardInterrupt in
    the code running at that moment; in a load user's greenlet it would have to travel through Locust's and
    gevent's handling to reach the run, and a CI run saw an interrupt lost while a stage ran (the stage ran
    on to its end). So only the main greenlet (the profile's loop) is interrupted where it stands; any other
    greenlet goes on, and the hub throws the interrupt into the main greenlet at its next turn."""
    hub.NOT_ERROR = (*hub.NOT_ERROR, KeyboardInterrupt)  # gevent would print it as a greenlet failure

    def interrupt(signum: int, frame: Any) -> None:
        if gevent.getcurrent() is hub.parent:
            raise KeyboardInterrupt
        hub.loop.run_callback(hub.parent.throw, KeyboardInterrupt)

    signal.signal(signal.SIGINT, interrupt)


class Events:
    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def send(self, event: str, **data: Any) -> None:
        self.out.write(json.dumps({"event": event, **data}) + "\n")
        self.out.flush()


def _report_live(live: LiveStage, events: Events) -> None:
    while True:
        gevent.sleep(LIVE_PERIOD_S)
        if live.running:
            events.send("live", in_flight=live.in_flight(), cpu=live.loadgen_cpu())


def _stamped(writer: RecordWriter, trial: int) -> Any:
    """The sink of a repeated run's trial: each record (this process's own, written once) carries the trial."""
    def sink(record: Any) -> None:
        record.trial = trial
        writer(record)
    return sink


def run(spec: LoadSpec, events: Events) -> None:
    live = LiveStage()
    live.on_begin = lambda s: events.send("begin", profile=s.profile, stage=s.stage, kind=s.kind, target=s.target,
                                          warmup={"requests": s.warmup_requests, "duration_s": s.warmup_s})
    reporter = gevent.spawn(_report_live, live, events)

    def on_stage(result: StageResult) -> None:
        events.send("stage", result=result.model_dump(mode="json"))

    try:
        with RecordWriter(spec.records_path) as writer:  # flushed per record: the orchestrator reads them there
            sink = writer if spec.trial is None else _stamped(writer, spec.trial)
            run_profile(LoadProfile.model_validate(spec.profile), url=spec.url, model=spec.model,
                        model_path=spec.model_path, sink=sink, slos_ms=spec.slos_ms, on_stage=on_stage,
                        saturation_lag_ms=spec.saturation_lag_ms, workers=spec.workers,
                        worker_log_dir=Path(spec.worker_log_dir) if spec.worker_log_dir else None,
                        remote=RemoteMaster(**spec.remote) if spec.remote else None,
                        api_key=os.environ.get(API_KEY_ENV), live=live, endpoints=spec.endpoints,
                        balance=spec.balance, stop_on_death=spec.stop_on_death, percentiles=spec.percentiles)
    finally:
        reporter.kill()


def main() -> int:
    # the events pipe is this process's standard output as started; print() and libraries get the log
    events = Events(os.fdopen(os.dup(1), "w", encoding="utf-8"))
    os.dup2(2, 1)
    warnings.filterwarnings("ignore", category=FutureWarning, message=".*reduce_op.*")
    deliver_ctrl_c_to_the_run(gevent.get_hub())
    try:
        run(LoadSpec.model_validate_json(sys.stdin.read()), events)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except ServeBenchError as err:
        events.send("error", type=type(err).__name__, message=err.message, hint=err.hint)
        return err.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
