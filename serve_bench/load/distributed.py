"""Locust's distributed mode: a master in this process, N local worker processes (or remote ones).

The master dispatches users (Locust's own dispatcher). A stage goes:

    sb_spec      master → each worker: profile, stage, URL; the worker builds its prompt set and
                 measures its clock offset to the master (sb_ping/sb_pong, NTP-style: the sample with
                 the shortest round trip), then answers sb_spec_ok with the offset
    spawn        Locust spawns the users; each connects and waits at the start barrier; workers report
                 how many are ready in sb_status
    sb_deal      once all are ready: each worker gets as many residues of a period of N (all users) as
                 it runs users (stage_state.deal), builds those prompts, answers sb_dealt; so request
                 indices follow the users each worker really runs, whatever Locust's split
    sb_go        the stage's start t0 on the master's clock; each worker converts it with its offset

Records travel to the master in sb_records while the stage runs, with their
timestamps moved onto the master's clock, so send lag and every duration are
free of clock skew between hosts (the offsets are reported). A worker that
disconnects mid-stage is named in the result; the records it sent are kept.

Local workers are ``python -m serve_bench.load.worker --once`` processes this
module starts; remote ones are ``serve-bench worker --master-host THIS_HOST``
processes started by hand on other hosts, which serve stage after stage.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import gevent
import gevent.event
from locust.env import Environment
from locust.runners import STATE_MISSING

from serve_bench.errors import LoadError
from serve_bench.load.barrier import await_barrier
from serve_bench.load.liveness import CpuShare
from serve_bench.load.process import API_KEY_ENV, RemoteMaster
from serve_bench.load.stage_context import StageContext, StageOutcome, Stop
from serve_bench.load.stage_plan import StagePlan
from serve_bench.load.stage_state import deal
from serve_bench.load.user import make_user_class
from serve_bench.measure.clock import now_s
from serve_bench.measure.records import RequestRecord
from serve_bench.processes import die_with_parent
from serve_bench.serve.server import free_port

CONNECT_TIMEOUT_S = 180.0
GO_LEAD_S = 1.0
STATS_WAIT_S = 4.0  # Locust's worker report interval is 3 s
_TICK_S = 0.05


def run_distributed(ctx: StageContext, workers: int) -> StageOutcome:
    """Run one planned stage over ``workers`` processes (local ones, or ``ctx.remote`` workers that
    connect by themselves)."""
    plan, profile, url, remote, live = ctx.plan, ctx.profile, ctx.url, ctx.remote, ctx.live
    expected = workers
    workers = max(1, min(workers, plan.users))  # a worker without users would never finish its share
    log_dir = Path(ctx.worker_log_dir or tempfile.mkdtemp(prefix="serve-bench-workers-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    port = remote.port if remote else free_port()
    env = Environment(user_classes=[make_user_class(None, plan.name, url, profile.timeout_s)], host=url.rstrip("/"),
                      stop_timeout=profile.timeout_s)
    runner = env.create_master_runner(master_bind_host=remote.bind_host if remote else "127.0.0.1",
                                      master_bind_port=port)
    done: set[str] = set()
    flushed: set[str] = set()
    dealt: set[str] = set()
    status: dict[str, dict[str, Any]] = {}
    spec_ok: dict[str, dict[str, float]] = {}
    spec_failed: dict[str, str] = {}

    received = [0]

    def take_records(data: Any) -> None:
        for item in data or []:
            ctx.collect(RequestRecord.model_validate(item))
            received[0] += 1

    def pong(environment: Any, msg: Any, **kw: Any) -> None:
        received = now_s()
        runner.send_message("sb_pong", {**msg.data, "t2": received, "t3": now_s()}, client_id=msg.node_id)

    runner.register_message("sb_ping", pong)
    runner.register_message("sb_records", lambda environment, msg, **kw: take_records(msg.data))
    runner.register_message("sb_status", lambda environment, msg, **kw: status.__setitem__(msg.node_id, msg.data))
    runner.register_message("sb_done", lambda environment, msg, **kw: done.add(msg.node_id))
    runner.register_message("sb_flushed", lambda environment, msg, **kw: flushed.add(msg.node_id))
    runner.register_message("sb_dealt", lambda environment, msg, **kw: dealt.add(msg.node_id))
    runner.register_message("sb_spec_ok", lambda environment, msg, **kw: spec_ok.__setitem__(msg.node_id, msg.data))
    runner.register_message("sb_spec_failed",
                            lambda environment, msg, **kw: spec_failed.__setitem__(msg.node_id, msg.data["error"]))
    env.events.worker_report.add_listener(
        lambda client_id, data: take_records(data.pop("serve_bench_records", None)))

    spec = {"profile": profile.model_dump(mode="json"), "stage": ctx.stage.model_dump(mode="json"), "url": url,
            "endpoints": list(ctx.endpoints), "balance": ctx.balance, "model": ctx.model,
            "model_path": ctx.model_path, "prompt_offset": ctx.prompt_offset, "seed": ctx.seed,
            "master_port": port}
    procs = [] if remote else [_spawn_worker(port, w, log_dir, ctx.api_key) for w in range(workers)]
    outcome = StageOutcome(started_s=now_s())
    clients: list[str] = []
    try:
        _wait_for_workers(runner, procs, expected if remote else workers, log_dir, remote)
        # with more remote workers connected than users, the extra ones sit this stage out
        clients = sorted(c.id for c in runner.clients.ready)[:workers]
        for index, client_id in enumerate(clients):
            runner.send_message("sb_spec", {**spec, "worker_index": index}, client_id=client_id)
        _wait_for(lambda: set(spec_ok) >= set(clients), spec_failed, "prepared the stage", len(clients))
        outcome.worker_clocks = {_short(c): {k: spec_ok[c][k] for k in ("offset_ms", "rtt_ms")} for c in clients}
        pids = {spec_ok[c].get("pid"): c for c in clients}
        outcome.started_s = now_s()
        runner.start(plan.start_users, spawn_rate=plan.spawn_rate)
        if note := await_barrier(lambda: sum(status.get(c, {}).get("users_ready", 0) for c in clients),
                                 plan.start_users, plan):
            outcome.notes.append(note)
        users = [status.get(c, {}).get("users_ready", 0) for c in clients]
        for client_id, slots in zip(clients, deal(users)):
            runner.send_message("sb_deal", {"slots": slots, "period": sum(users)}, client_id=client_id)
        _wait_for(lambda: dealt >= set(clients), spec_failed, "built their prompts", len(clients))
        cpu = CpuShare()
        live.begin(profile.name, plan.name, plan.kind, plan.target,
                   lambda: sum(status.get(c, {}).get("in_flight", 0) for c in clients),
                   lambda: (cpu.ratio() or 0.0) + sum(status.get(c, {}).get("cpu") or 0.0 for c in clients),
                   plan.warmup)
        t0 = now_s() + (GO_LEAD_S if plan.open_loop else 0.0)  # the go message must reach workers before t0
        outcome.warmup_end_s = t0 + plan.warmup.duration_s if plan.warmup.duration_s else None
        runner.send_message("sb_go", {"t0_s": t0})
        if plan.ramp:
            runner.start(plan.ramp[0], spawn_rate=plan.ramp[1])
        outcome.stop, lost = _watch(runner, clients, procs, pids, plan, ctx, status, done)
        if len(ctx.endpoints) > 1:  # one server's death is server_died alone
            outcome.dead_endpoints = sorted({u for c in clients for u in status.get(c, {}).get("dead", [])})
        if lost:
            outcome.lost_workers = [_short(c) for c in lost]
            outcome.notes.append(f"stage {plan.name}: load worker(s) {', '.join(outcome.lost_workers)} "
                                 f"disconnected mid-stage; the records they had sent are kept")
        outcome.loadgen_cpu = {"master": cpu.ratio(), **{_short(c): status.get(c, {}).get("cpu") for c in clients}}
        # Locust's own statistics reach the master in the workers' periodic reports (every 3 s): wait for
        # the last one, so they count what the records count (serve-bench's figures come from the records)
        deadline = now_s() + STATS_WAIT_S
        while env.stats.total.num_requests < received[0] and not outcome.lost_workers and now_s() < deadline:
            gevent.sleep(_TICK_S)
        if len(done) < len(clients):
            # no Locust stop: it waits for every worker's users to reach zero, a lost worker's never do
            runner.send_message("sb_flush", {})
            alive = {c for c in clients if _short(c) not in outcome.lost_workers}
            deadline = now_s() + 10.0
            while not flushed >= alive and now_s() < deadline:
                gevent.sleep(_TICK_S)
    finally:
        live.end()
        env.stop_timeout = 0
        runner.quit()  # workers send their final stats report as they quit
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    outcome.locust_requests = env.stats.total.num_requests
    outcome.locust_failures = env.stats.total.num_failures
    outcome.ended_s = now_s()
    return outcome


def _watch(runner: Any, clients: list[str], procs: list[subprocess.Popen[bytes]], pids: dict[Any, str],
           plan: StagePlan, ctx: StageContext, status: dict[str, dict[str, Any]],
           done: set[str]) -> tuple[Stop, list[str]]:
    """Until every worker is done, the server died (every endpoint, or with ``stop_on_death`` any: each
    worker's balancer finds its dead endpoints), every request is rejected, or a worker is lost: why the stage
    stopped, and the workers lost."""
    while not done >= set(clients):
        gevent.sleep(_TICK_S)
        dead = {u for s in status.values() for u in s.get("dead", [])}
        if dead and (ctx.stop_on_death or dead >= set(ctx.endpoints)):
            return Stop.SERVER_DIED, []
        if (sum(s.get("client_errors", 0) for s in status.values()) >= max(10, 2 * plan.users)
                and not any(s.get("succeeded", 0) for s in status.values())):
            return Stop.REJECTED, []
        lost = [c for c in clients if c not in done and (c not in runner.clients
                                                          or runner.clients[c].state == STATE_MISSING)]
        exited = [pids.get(p.pid) for p in procs if p.poll() is not None]  # local workers: no heartbeat wait
        lost += [c for c in exited if c is not None and c not in done and c not in lost]
        if lost:
            return Stop.WORKER_LOST, lost
    return Stop.DONE, []


def _short(client_id: str) -> str:
    """Locust's node id is host_uuid: keep the host and 8 hex digits."""
    host, _, uid = client_id.rpartition("_")
    return f"{host}_{uid[:8]}" if host else client_id[:24]


def _spawn_worker(port: int, index: int, log_dir: Path, api_key: str | None) -> subprocess.Popen[bytes]:
    log = open(log_dir / f"worker{index}.log", "ab")
    env = dict(os.environ)
    if api_key:
        env[API_KEY_ENV] = api_key  # the environment, not the wire: Locust's protocol is unencrypted
    try:
        return subprocess.Popen([sys.executable, "-m", "serve_bench.load.worker", "--master-host", "127.0.0.1",
                                 "--master-port", str(port), "--once"], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, preexec_fn=die_with_parent)
    finally:
        log.close()


def _wait_for(ready: Any, spec_failed: dict[str, str], what: str, count: int) -> None:
    deadline = now_s() + CONNECT_TIMEOUT_S
    while not ready():
        if spec_failed:
            node, error = next(iter(spec_failed.items()))
            raise LoadError(f"load worker {_short(node)} could not prepare the stage: {error}")
        if now_s() > deadline:
            raise LoadError(f"not all {count} load workers {what} within {CONNECT_TIMEOUT_S:.0f} s")
        gevent.sleep(0.02)


def _wait_for_workers(runner: Any, procs: list[subprocess.Popen[bytes]], workers: int, log_dir: Path,
                      remote: RemoteMaster | None) -> None:
    if remote:
        deadline = now_s() + remote.connect_timeout_s
        while len(runner.clients.ready) < workers:
            if now_s() > deadline:
                raise LoadError(f"only {len(runner.clients.ready)} of {workers} remote load workers connected to "
                                f"port {remote.port} within {remote.connect_timeout_s:.0f} s",
                                hint=f"start them with: serve-bench worker --master-host THIS_HOST "
                                     f"--master-port {remote.port}")
            gevent.sleep(0.2)
        return
    deadline = now_s() + CONNECT_TIMEOUT_S
    while len(runner.clients.ready) < workers:
        for i, p in enumerate(procs):
            if p.poll() is not None:
                tail = (log_dir / f"worker{i}.log").read_text(errors="replace").splitlines()[-15:]
                raise LoadError(f"load worker {i} exited with code {p.returncode} before connecting; its log:\n"
                                + "\n".join("    " + line for line in tail))
        if now_s() > deadline:
            raise LoadError(f"only {len(runner.clients.ready)} of {workers} load workers connected within "
                            f"{CONNECT_TIMEOUT_S:.0f} s", hint=f"see the worker logs in {log_dir}")
        gevent.sleep(0.1)
