"""Locust's distributed mode: a master in this process, N local worker processes.

The master dispatches users (Locust's own dispatcher); every worker derives the
same plan and seeded schedule from the stage, and takes every N-th request
index (worker w: w, w+N…), so indices and prompts never collide. Records
travel to the master as custom messages (``sb_records``) while the stage runs,
and in the ``report_to_master`` stats report as a last resort when a worker
quits. The master says go (``sb_go``, with the stage's wall-clock start) once
every worker has spawned its users, and ends the stage when every worker says
it is done (``sb_done``), when the server has died, or when a worker is lost.

Local workers are ``python -m serve_bench.load.worker --once`` processes this
module starts; remote ones are ``serve-bench worker --master-host THIS_HOST``
processes started by hand on other hosts, which serve stage after stage. Both
receive the stage's spec from the master (``sb_spec``) once connected.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gevent
import gevent.event
from locust.env import Environment

from serve_bench.errors import LoadError
from serve_bench.load.clock import now_s
from serve_bench.load.profiles import ConcurrencyStage, LoadProfile, RampStage, RateStage
from serve_bench.load.records import RequestRecord
from serve_bench.load.stage_plan import SPAWN_RATE, StagePlan
from serve_bench.load.stage_state import RecordSink
from serve_bench.load.user import make_user_class
from serve_bench.load.worker import DEFAULT_MASTER_PORT
from serve_bench.processes import die_with_parent
from serve_bench.serve.server import free_port

CONNECT_TIMEOUT_S = 180.0
GO_LEAD_S = 1.0
_TICK_S = 0.05


@dataclass(frozen=True)
class RemoteMaster:
    """Where this process listens for workers started by hand on other hosts."""

    bind_host: str = "0.0.0.0"
    port: int = DEFAULT_MASTER_PORT
    connect_timeout_s: float = 600.0


def run_distributed(plan: StagePlan, stage: ConcurrencyStage | RateStage | RampStage, profile: LoadProfile, *,
                    url: str, model: str, model_path: str | None, prompt_offset: int, seed: int, workers: int,
                    collect: RecordSink, flags: dict[str, bool], counts: dict[str, int],
                    log_dir: Path | None = None,
                    remote: RemoteMaster | None = None) -> tuple[float, float, float | None]:
    """Run one planned stage over ``workers`` processes (local ones, or ``remote`` workers that
    connect by themselves); returns (started_s, ended_s, warmup_end_s)."""
    from serve_bench.load.runner import refused  # runner imports this module lazily

    expected = workers
    workers = max(1, min(workers, plan.users))  # a worker without users would never finish its share
    log_dir = Path(log_dir or tempfile.mkdtemp(prefix="serve-bench-workers-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    port = remote.port if remote else free_port()
    env = Environment(user_classes=[make_user_class(None, plan.name, url, profile.timeout_s)], host=url.rstrip("/"))
    runner = env.create_master_runner(master_bind_host=remote.bind_host if remote else "127.0.0.1",
                                      master_bind_port=port)
    done: set[str] = set()
    flushed: set[str] = set()
    status: dict[str, dict[str, int]] = {}
    spawned = gevent.event.Event()
    env.events.spawning_complete.add_listener(lambda user_count: spawned.set())

    def take_records(data: Any) -> None:
        for item in data or []:
            collect(RequestRecord.model_validate(item))

    runner.register_message("sb_records", lambda environment, msg, **kw: take_records(msg.data))
    runner.register_message("sb_status", lambda environment, msg, **kw: status.__setitem__(msg.node_id, msg.data))
    runner.register_message("sb_done", lambda environment, msg, **kw: done.add(msg.node_id))
    runner.register_message("sb_flushed", lambda environment, msg, **kw: flushed.add(msg.node_id))
    spec_ok: set[str] = set()
    spec_failed: dict[str, str] = {}
    runner.register_message("sb_spec_ok", lambda environment, msg, **kw: spec_ok.add(msg.node_id))
    runner.register_message("sb_spec_failed",
                            lambda environment, msg, **kw: spec_failed.__setitem__(msg.node_id, msg.data["error"]))
    env.events.worker_report.add_listener(
        lambda client_id, data: take_records(data.pop("serve_bench_records", None)))

    spec = {"profile": profile.model_dump(mode="json"), "stage": stage.model_dump(mode="json"), "url": url,
            "model": model, "model_path": model_path, "prompt_offset": prompt_offset, "seed": seed,
            "workers": workers, "master_port": port}
    procs = [] if remote else [_spawn_worker(port, w, log_dir) for w in range(workers)]
    started_s = warmup_end_s = None
    try:
        _wait_for_workers(runner, procs, expected if remote else workers, log_dir, remote)
        # with more remote workers connected than users, the extra ones sit this stage out
        clients = sorted(c.id for c in runner.clients.ready)[:workers]
        for index, client_id in enumerate(clients):
            runner.send_message("sb_spec", {**spec, "worker_index": index}, client_id=client_id)
        _wait_for_specs(spec_ok, spec_failed, clients)
        started_s = now_s()
        runner.start(plan.start_users, spawn_rate=SPAWN_RATE)
        spawned.wait()
        t0 = now_s() + (GO_LEAD_S if plan.open_loop else 0.0)  # the go message must reach workers before t0
        warmup_end_s = t0 + plan.warmup.duration_s if plan.warmup.duration_s else None
        runner.send_message("sb_go", {"t0_s": t0})
        if plan.ramp:
            runner.start(plan.ramp[0], spawn_rate=plan.ramp[1])
        threshold = max(1, min(plan.users, 3))
        while len(done) < workers:
            gevent.sleep(_TICK_S)
            if sum(s.get("refused", 0) for s in status.values()) >= threshold and refused(url):
                flags["server_died"] = flags["stopped_early"] = True
                break
            if (sum(s.get("client_errors", 0) for s in status.values()) >= max(10, 2 * plan.users)
                    and not any(s.get("succeeded", 0) for s in status.values())):
                flags["rejected"] = flags["stopped_early"] = True
                break
            if any(p.poll() is not None for p in procs):
                flags["stopped_early"] = True
                break
        if len(done) < workers:
            runner.stop()
            runner.send_message("sb_flush", {})
            deadline = now_s() + 10.0
            while len(flushed) < len(runner.clients.all) and now_s() < deadline:
                gevent.sleep(_TICK_S)
    finally:
        runner.quit()  # workers send their final stats report as they quit
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    counts["locust_requests"] = env.stats.total.num_requests
    counts["locust_failures"] = env.stats.total.num_failures
    return started_s or now_s(), now_s(), warmup_end_s


def _spawn_worker(port: int, index: int, log_dir: Path) -> subprocess.Popen[bytes]:
    log = open(log_dir / f"worker{index}.log", "ab")
    try:
        return subprocess.Popen([sys.executable, "-m", "serve_bench.load.worker", "--master-host", "127.0.0.1",
                                 "--master-port", str(port), "--once"], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=dict(os.environ), preexec_fn=die_with_parent)
    finally:
        log.close()


def _wait_for_specs(spec_ok: set[str], spec_failed: dict[str, str], clients: list[str]) -> None:
    deadline = now_s() + CONNECT_TIMEOUT_S
    while not spec_ok.issuperset(clients):
        if spec_failed:
            node, error = next(iter(spec_failed.items()))
            raise LoadError(f"load worker {node} could not prepare the stage: {error}")
        if now_s() > deadline:
            raise LoadError(f"only {len(spec_ok)} of {len(clients)} load workers prepared the stage within "
                            f"{CONNECT_TIMEOUT_S:.0f} s")
        gevent.sleep(0.1)


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
