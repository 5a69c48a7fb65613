"""A Locust worker process for one stage: ``python -m serve_bench.load.worker SPEC.json``.

Started by :mod:`distributed`. It rebuilds the stage's plan from the spec,
builds its own prompts, connects to the master, waits for ``sb_go``, sends its
share of the requests (global indices w, w+N…), and ships every record to the
master; then says ``sb_done`` and waits for the master's quit.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import gevent  # noqa: I001 - Locust (gevent) first: it monkey-patches the process
import gevent.event
from locust.env import Environment
from pydantic import TypeAdapter

from serve_bench.load.profiles import LoadProfile, Stage
from serve_bench.load.prompts import build_prompt_set
from serve_bench.load.records import RequestRecord
from serve_bench.load.stage_plan import expected_requests, new_state, plan_stage, start_clock
from serve_bench.load.user import make_user_class

_TICK_S = 0.1


def main(argv: list[str]) -> int:
    spec = json.loads(open(argv[0], encoding="utf-8").read())
    profile = LoadProfile.model_validate(spec["profile"])
    stage = TypeAdapter(Stage).validate_python(spec["stage"])
    plan = plan_stage(stage, profile, spec["seed"])
    prompts = build_prompt_set(profile.prompts, model_path=spec["model_path"] or "", api=profile.api,
                               input_tokens=profile.input_tokens, seed=profile.seed, salt=profile.name)
    buffer: list[RequestRecord] = []
    state = new_state(plan, profile, model=spec["model"], prompts=prompts, sink=buffer.append,
                      prompt_offset=spec["prompt_offset"], worker_index=spec["worker_index"], workers=spec["workers"])
    state.ready, state.finished = gevent.event.Event(), gevent.event.Event()
    prompts.prepare(spec["prompt_offset"], expected_requests(plan))

    env = Environment(user_classes=[make_user_class(state, plan.name, spec["url"], profile.timeout_s)],
                      host=spec["url"].rstrip("/"))
    runner = env.create_worker_runner(spec.get("master_host", "127.0.0.1"), spec["master_port"])

    def drain() -> list[dict[str, Any]]:
        out = [r.model_dump(mode="json") for r in buffer]
        buffer.clear()
        return out

    def on_go(environment: Any, msg: Any, **kw: Any) -> None:
        start_clock(state, plan, msg.data["t0_s"])
        state.ready.set()

    def on_flush(environment: Any, msg: Any, **kw: Any) -> None:
        runner.send_message("sb_records", drain())
        runner.send_message("sb_flushed", {})

    runner.register_message("sb_go", on_go)
    runner.register_message("sb_flush", on_flush)
    env.events.report_to_master.add_listener(lambda client_id, data: data.__setitem__("serve_bench_records", drain()))

    def report() -> None:
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

    gevent.spawn(report)
    runner.greenlet.join()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
