"""Locust's distributed mode: a master in this process, N local worker processes.

The master dispatches users (Locust's own dispatcher); every worker derives the
same plan and seeded schedule from the stage, and takes every N-th request
index (worker w: w, w+N…), so indices and prompts never collide. Records
travel to the master as custom messages (``sb_records``) while the stage runs,
and in the ``report_to_master`` stats report as a last resort when a worker
quits. The master says go (``sb_go``, with the stage's wall-clock start) once
every worker has spawned its users, and ends the stage when every worker says
it is done (``sb_done``), when the server has died, or when a worker is lost.

Workers run ``python -m serve_bench.load.worker SPEC.json`` on this host; on
other hosts, start the same module against this master (not automated here).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
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
from serve_bench.serve.server import free_port

CONNECT_TIMEOUT_S = 180.0
GO_LEAD_S = 1.0
_TICK_S = 0.05


def run_distributed(plan: StagePlan, stage: ConcurrencyStage | RateStage | RampStage, profile: LoadProfile, *,
                    url: str, model: str, model_path: str | None, prompt_offset: int, seed: int, workers: int,
                    collect: RecordSink, flags: dict[str, bool], counts: dict[str, int],
                    log_dir: Path | None = None) -> tuple[float, float, float | None]:
    """Run one planned stage over ``workers`` processes; returns (started_s, ended_s, warmup_end_s)."""
    from serve_bench.load.runner import refused  # runner imports this module lazily

    workers = max(1, min(workers, plan.users))  # a worker without users would never finish its share
    log_dir = Path(log_dir or tempfile.mkdtemp(prefix="serve-bench-workers-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = Environment(user_classes=[make_user_class(None, plan.name, url, profile.timeout_s)], host=url.rstrip("/"))
    runner = env.create_master_runner(master_bind_host="127.0.0.1", master_bind_port=port)
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
    env.events.worker_report.add_listener(
        lambda client_id, data: take_records(data.pop("serve_bench_records", None)))

    spec = {"profile": profile.model_dump(mode="json"), "stage": stage.model_dump(mode="json"), "url": url,
            "model": model, "model_path": model_path, "prompt_offset": prompt_offset, "seed": seed,
            "workers": workers, "master_port": port}
    procs = [_spawn_worker(spec, w, log_dir) for w in range(workers)]
    started_s = warmup_end_s = None
    try:
        _wait_for_workers(runner, procs, workers, log_dir)
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


def _spawn_worker(spec: dict[str, Any], index: int, log_dir: Path) -> subprocess.Popen[bytes]:
    path = log_dir / f"worker{index}.json"
    path.write_text(json.dumps({**spec, "worker_index": index}))
    log = open(log_dir / f"worker{index}.log", "ab")
    try:
        return subprocess.Popen([sys.executable, "-m", "serve_bench.load.worker", str(path)], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=dict(os.environ))
    finally:
        log.close()


def _wait_for_workers(runner: Any, procs: list[subprocess.Popen[bytes]], workers: int, log_dir: Path) -> None:
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
