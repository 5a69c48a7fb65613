"""A Locust worker process: ``serve-bench worker --master-host H`` (or
``python -m serve_bench.load.worker``).

It connects to a serve-bench master, receives the stage's spec (``sb_spec``:
profile, stage, server URL, its worker index), rebuilds the stage's plan and
prompt set, measures its clock offset to the master, spawns its users (each
connects and waits at the start barrier), builds the prompts of the requests
it is dealt (``sb_deal``), waits for ``sb_go``, sends its share, and ships
every record to the master on the master's clock; then says ``sb_done`` and
waits for the master's quit. Without ``--once`` it then connects again for the
next stage, so one worker on another host serves a whole run. The API key
comes from this host's environment (``OPENAI_API_KEY``), never over the wire.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

import gevent  # noqa: I001 - Locust (gevent) first: it monkey-patches the process
import gevent.event
from locust.env import Environment
from pydantic import TypeAdapter

from serve_bench import auth
from serve_bench.errors import ServeBenchError
from serve_bench.load.balance import DEFAULT_BALANCE
from serve_bench.load.gc_quiet import pause_collector, resume_collector
from serve_bench.load.liveness import CpuShare
from serve_bench.load.process import API_KEY_ENV, DEFAULT_MASTER_PORT
from serve_bench.load.prompt_feed import start_feed, stop_feed
from serve_bench.load.stage_plan import PREBUILT_ROUNDS, known_requests, new_state, plan_stage, start_clock
from serve_bench.load.stage_state import StageState
from serve_bench.load.user import make_user_class
from serve_bench.measure.clock import now_s
from serve_bench.measure.records import RequestRecord
from serve_bench.workload.profiles import LoadProfile, Stage
from serve_bench.workload.prompt_sources import profile_prompt_set

CLOCK_SAMPLES = 8
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


def best_offset(samples: list[tuple[float, float, float, float]]) -> tuple[float, float]:
    """NTP's estimate from (t1 sent, t2 master received, t3 master sent, t4 received) samples: the
    (offset master − worker, round trip) of the sample with the shortest round trip, in seconds."""
    t1, t2, t3, t4 = min(samples, key=lambda s: (s[3] - s[0]) - (s[2] - s[1]))
    return ((t2 - t1) + (t3 - t4)) / 2.0, (t4 - t1) - (t3 - t2)


def to_master_clock(record: RequestRecord, offset_s: float) -> dict[str, Any]:
    data = record.model_dump(mode="json")
    for key in ("intended_send_s", "send_s", "first_token_s", "last_token_s", "end_s"):
        if data[key] is not None:
            data[key] += offset_s
    data["chunk_times_s"] = [t + offset_s for t in data["chunk_times_s"]]
    return data


def run_stage_worker(master_host: str, master_port: int, tokenizer: str | None = None) -> int:
    """Take part in one stage; returns when the master quits."""
    buffer: list[RequestRecord] = []
    env = Environment(user_classes=[])  # the stage's user class arrives with the spec
    runner = env.create_worker_runner(master_host, master_port)
    holder: dict[str, Any] = {"offset": 0.0}
    failed: list[str] = []
    pongs: list[tuple[float, float, float, float]] = []

    def drain() -> list[dict[str, Any]]:
        out = [to_master_clock(r, holder["offset"]) for r in buffer]
        buffer.clear()
        return out

    def fail(err: Exception) -> None:
        failed.append(str(err))
        runner.send_message("sb_spec_failed", {"error": str(err)})

    def prepare(spec: dict[str, Any]) -> None:
        try:
            profile = LoadProfile.model_validate(spec["profile"])
            stage = TypeAdapter(Stage).validate_python(spec["stage"])
            plan = plan_stage(stage, profile, spec["seed"])
            prompts = profile_prompt_set(profile, _tokenizer_path(spec, tokenizer))
            key = os.environ.get(API_KEY_ENV) or auth.key_from_env()
            state = new_state(plan, profile, model=spec["model"], prompts=prompts, sink=buffer.append,
                              endpoints=spec.get("endpoints") or [spec["url"]],
                              balance=spec.get("balance", DEFAULT_BALANCE), prompt_offset=spec["prompt_offset"],
                              worker_index=spec["worker_index"], api_key=key)
            state.sync.ready, state.sync.finished = gevent.event.Event(), gevent.event.Event()
        except (ServeBenchError, ValueError, KeyError) as err:
            fail(err)
            return
        for _ in range(CLOCK_SAMPLES):
            runner.send_message("sb_ping", {"t1": now_s()})
            gevent.sleep(0.02)
        deadline = now_s() + 5.0
        while len(pongs) < CLOCK_SAMPLES and now_s() < deadline:
            gevent.sleep(0.01)
        offset, rtt = best_offset(pongs) if pongs else (0.0, float("nan"))
        holder.update(state=state, plan=plan, offset=offset)
        env.host = spec["url"].rstrip("/")
        env.user_classes.append(make_user_class(state, plan.name, spec["url"], profile.timeout_s))
        gevent.spawn(report)
        runner.send_message("sb_spec_ok", {"offset_ms": offset * 1000.0, "rtt_ms": rtt * 1000.0, "pid": os.getpid()})

    def on_pong(environment: Any, msg: Any, **kw: Any) -> None:
        d = msg.data
        pongs.append((d["t1"], d["t2"], d["t3"], now_s()))

    def on_deal(environment: Any, msg: Any, **kw: Any) -> None:
        gevent.spawn(dealt, msg.data)

    def dealt(data: dict[str, Any]) -> None:
        state: StageState = holder["state"]
        state.turns.slots, state.turns.period = data["slots"], data["period"]
        known = known_requests(holder["plan"])
        mine = set(state.turns.slots)
        if known is None:
            prebuilt = PREBUILT_ROUNDS * len(state.turns.slots)
        else:  # this worker's indices below the stage's request count
            prebuilt = sum(1 for g in range(known) if g % state.turns.period in mine)
        state.config.prompts.prepare(state.config.prompt_offset + g for g in state.indices(0, prebuilt))
        if known is None and state.turns.slots:
            start_feed(state.config.prompts, offset=state.config.prompt_offset, slots=state.turns.slots,
                       period=state.turns.period, start_k=prebuilt)
        runner.send_message("sb_dealt", {})

    def quiet_end() -> None:
        if "gc" in holder:
            resume_collector(holder.pop("gc"))

    def on_go(environment: Any, msg: Any, **kw: Any) -> None:
        state: StageState = holder["state"]
        holder["gc"] = pause_collector()  # until the stage is done (gc_quiet.py)
        holder["cpu"] = CpuShare()
        start_clock(state, holder["plan"], msg.data["t0_s"] - holder["offset"])
        state.sync.ready.set()

    def on_flush(environment: Any, msg: Any, **kw: Any) -> None:
        if "state" in holder:  # the stage is over early: send nothing more, release the waiting users
            holder["state"].sync.stopping = True
            holder["state"].sync.finished.set()
        quiet_end()
        runner.send_message("sb_records", drain())
        runner.send_message("sb_flushed", {})

    def report() -> None:
        state: StageState = holder["state"]
        said_done = False
        while True:
            gevent.sleep(_TICK_S)
            if buffer:
                runner.send_message("sb_records", drain())
            cpu = holder["cpu"].ratio() if "cpu" in holder else None
            counts = state.counts
            dead = state.balancer.dead_urls() if state.balancer is not None else []
            runner.send_message("sb_status", {"dead": dead, "succeeded": counts.succeeded,
                                              "client_errors": counts.client_errors,
                                              "users_ready": counts.users_ready, "cpu": cpu,
                                              "in_flight": counts.in_flight})
            if state.sync.ready.is_set() and not said_done and state.exhausted() and state.outstanding == 0:
                runner.send_message("sb_done", {})
                state.sync.finished.set()
                stop_feed(state.config.prompts)
                quiet_end()
                said_done = True

    runner.register_message("sb_spec", lambda environment, msg, **kw: gevent.spawn(prepare, msg.data))
    runner.register_message("sb_pong", on_pong)
    runner.register_message("sb_deal", on_deal)
    runner.register_message("sb_go", on_go)
    runner.register_message("sb_flush", on_flush)
    env.events.report_to_master.add_listener(lambda client_id, data: data.__setitem__("serve_bench_records", drain()))
    try:
        runner.greenlet.join()
    finally:
        quiet_end()
        if "state" in holder:
            stop_feed(holder["state"].config.prompts)
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
