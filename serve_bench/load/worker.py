"""A Locust worker process: ``serve-bench worker --master-host H`` (or
``python -m serve_bench.load.worker``).

It connects to a serve-bench master, receives the stage's spec (``sb_spec``:
profile, stage, server URL, its worker index), rebuilds the stage's plan and
prompts, waits for ``sb_go``, sends its share of the requests (global indices
w, w+N…), and ships every record to the master; then says ``sb_done`` and
waits for the master's quit. Without ``--once`` it then connects again for the
next stage, so one worker on another host serves a whole run.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import gevent  # noqa: I001 - Locust (gevent) first: it monkey-patches the process
import gevent.event
from locust.env import Environment
from pydantic import TypeAdapter

from serve_bench.errors import ServeBenchError
from serve_bench.load.profiles import LoadProfile, Stage
from serve_bench.load.prompts import build_prompt_set
from serve_bench.load.records import RequestRecord
from serve_bench.load.stage_plan import expected_requests, new_state, plan_stage, start_clock
from serve_bench.load.stage_state import StageState
from serve_bench.load.user import make_user_class

DEFAULT_MASTER_PORT = 5557
_TICK_S = 0.1
log = logging.getLogger(__name__)


def _tokenizer_path(spec: dict[str, Any], tokenizer: str | None) -> str:
    """The master's checkpoint path when this host has it too, else ``--tokenizer``."""
    if tokenizer:
        return tokenizer
    path = spec.get("model_path") or ""
    if path and not Path(path).exists():
        raise ServeBenchError(f"this worker has no {path} (the master's checkpoint) to build prompts with",
                              hint="pass --tokenizer DIR with a copy of the model's tokenizer")
    return path


def run_stage_worker(master_host: str, master_port: int, tokenizer: str | None = None) -> int:
    """Take part in one stage; returns when the master quits."""
    buffer: list[RequestRecord] = []
    env = Environment(user_classes=[])  # the stage's user class arrives with the spec
    runner = env.create_worker_runner(master_host, master_port)
    holder: dict[str, StageState] = {}
    failed: list[str] = []

    def drain() -> list[dict[str, Any]]:
        out = [r.model_dump(mode="json") for r in buffer]
        buffer.clear()
        return out

    def on_spec(environment: Any, msg: Any, **kw: Any) -> None:
        spec = msg.data
        try:
            profile = LoadProfile.model_validate(spec["profile"])
            stage = TypeAdapter(Stage).validate_python(spec["stage"])
            plan = plan_stage(stage, profile, spec["seed"])
            prompts = build_prompt_set(profile.prompts, model_path=_tokenizer_path(spec, tokenizer),
                                       api=profile.api, input_tokens=profile.input_tokens, seed=profile.seed,
                                       salt=profile.name)
            state = new_state(plan, profile, model=spec["model"], prompts=prompts, sink=buffer.append,
                              prompt_offset=spec["prompt_offset"], worker_index=spec["worker_index"],
                              workers=spec["workers"])
            state.ready, state.finished = gevent.event.Event(), gevent.event.Event()
            prompts.prepare(spec["prompt_offset"], expected_requests(plan))
        except (ServeBenchError, ValueError, KeyError) as err:
            failed.append(str(err))
            runner.send_message("sb_spec_failed", {"error": str(err)})
            return
        holder["state"], holder["plan"] = state, plan
        env.host = spec["url"].rstrip("/")
        env.user_classes.append(make_user_class(state, plan.name, spec["url"], profile.timeout_s))
        gevent.spawn(report)
        runner.send_message("sb_spec_ok", {})

    def on_go(environment: Any, msg: Any, **kw: Any) -> None:
        start_clock(holder["state"], holder["plan"], msg.data["t0_s"])
        holder["state"].ready.set()

    def on_flush(environment: Any, msg: Any, **kw: Any) -> None:
        runner.send_message("sb_records", drain())
        runner.send_message("sb_flushed", {})

    def report() -> None:
        state = holder["state"]
        said_done = False
        while True:
            gevent.sleep(_TICK_S)
            if buffer:
                runner.send_message("sb_records", drain())
            runner.send_message("sb_status", {"refused": state.consecutive_refused, "succeeded": state.succeeded,
                                              "client_errors": state.client_errors})
            if state.ready.is_set() and not said_done and state.exhausted() and state.outstanding == 0:
                runner.send_message("sb_done", {})
                state.finished.set()
                said_done = True

    runner.register_message("sb_spec", on_spec)
    runner.register_message("sb_go", on_go)
    runner.register_message("sb_flush", on_flush)
    env.events.report_to_master.add_listener(lambda client_id, data: data.__setitem__("serve_bench_records", drain()))
    runner.greenlet.join()
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="serve-bench worker", description=__doc__.split("\n\n")[0])
    parser.add_argument("--master-host", default="127.0.0.1", help="host of the serve-bench run (--master)")
    parser.add_argument("--master-port", type=int, default=DEFAULT_MASTER_PORT)
    parser.add_argument("--tokenizer", help="tokenizer directory when this host lacks the master's checkpoint")
    parser.add_argument("--once", action="store_true", help="exit after one stage")
    args = parser.parse_args(argv)
    while True:
        try:
            code = run_stage_worker(args.master_host, args.master_port, args.tokenizer)
        except ConnectionError:  # Locust gave up after about 5 minutes without a master
            if args.once:
                print(f"serve-bench worker: no master at {args.master_host}:{args.master_port}", file=sys.stderr)
                return 1
            continue
        if args.once or code:
            return code


if __name__ == "__main__":
    sys.exit(main())
