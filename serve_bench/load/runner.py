"""Run load stages headless, with Locust as a library.

``run_stage`` runs one concurrency, rate or ramp stage: it builds a per-stage
``StreamingUser`` subclass bound to a :class:`StageState`, builds the stage's
prompts, starts a Locust ``LocalRunner``, holds every user at the start
barrier until all are connected, then starts the stage's clock and watches it
(done, deadline, dead server) from a monitor greenlet. It returns a
:class:`StageResult` with the stage's summary (:func:`metrics.summarize`) and
flags. Every record goes to ``sink`` as soon as it is finished. ``run_profile``
runs a whole profile, sweeps included.

Importing this module imports Locust, which monkey-patches the process with
gevent; import it before other network libraries where you can.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import gevent
import gevent.event
from locust.env import Environment

from serve_bench import auth
from serve_bench.errors import ConfigError
from serve_bench.load.balance import DEFAULT_BALANCE
from serve_bench.load.barrier import await_barrier
from serve_bench.load.distributed import run_distributed
from serve_bench.load.gc_quiet import gc_quiet
from serve_bench.load.live import LiveStage
from serve_bench.load.liveness import LOADGEN_CPU_LIMIT, CpuShare, max_model_len
from serve_bench.load.process import RemoteMaster
from serve_bench.load.prompt_feed import start_feed, stop_feed
from serve_bench.load.stage_context import StageContext, StageOutcome, Stop
from serve_bench.load.stage_plan import (
    OPEN_LOOP_LEAD_S,
    PREBUILT_ROUNDS,
    known_requests,
    new_state,
    plan_stage,
    start_clock,
)
from serve_bench.load.stage_state import RecordSink, StageState
from serve_bench.load.user import make_user_class
from serve_bench.measure.clock import now_s
from serve_bench.measure.metrics import PERCENTILES, summarize
from serve_bench.measure.records import RequestRecord
from serve_bench.measure.stage_result import ENDPOINT_FIGURES, SATURATION_LAG_MS, StageResult, sweep_rates
from serve_bench.workload.profiles import ConcurrencyStage, LoadProfile, RampStage, RateStage, ReplayStage, SweepStage
from serve_bench.workload.prompt_sources import profile_prompt_set
from serve_bench.workload.prompts import PromptSet

logging.getLogger("locust").addHandler(logging.NullHandler())  # a library does not print Locust's logs

_TICK_S = 0.05


def run_stage(stage: ConcurrencyStage | RateStage | RampStage | ReplayStage, *, url: str, model: str,
              profile: LoadProfile,
              prompts: PromptSet | None = None, sink: RecordSink | None = None,
              slos_ms: Mapping[str, float] | None = None, seed: int | None = None, prompt_offset: int = 0,
              saturation_lag_ms: float = SATURATION_LAG_MS, workers: int = 0, model_path: str | None = None,
              worker_log_dir: Path | None = None, remote: RemoteMaster | None = None,
              api_key: str | None = None, live: LiveStage | None = None, endpoints: Sequence[str] | None = None,
              balance: str = DEFAULT_BALANCE, stop_on_death: bool = False,
              percentiles: Sequence[float] = PERCENTILES) -> StageResult:
    """Run one stage to its request count or duration (after warm-up); never raises for failed requests.

    ``api_key`` is sent as a bearer token on every request (default: ``OPENAI_API_KEY``). ``live`` is
    kept pointing at the running stage's counters (the exporter reads it).

    ``endpoints``: a fleet's base URLs (default: ``url`` alone), requests spread over them by ``balance``
    (load.balance); an endpoint that dies is left out and the stage goes on with the rest, or stops when
    ``stop_on_death``.

    ``workers=N`` (N >= 1) runs a Locust master here and N local worker processes,
    or, with ``remote``, waits for N workers started on other hosts; workers build
    their own prompts, so synthetic prompts need ``model_path`` (or the worker's
    ``--tokenizer``) there.
    """
    if isinstance(stage, SweepStage):
        raise ConfigError("a sweep is several stages: run it with run_profile()")
    stage_seed = profile.seed if seed is None else seed
    plan = plan_stage(stage, profile, stage_seed)
    records: list[RequestRecord] = []

    def collect(record: RequestRecord) -> None:
        records.append(record)
        if sink is not None:
            sink(record)

    ctx = StageContext(plan=plan, stage=stage, profile=profile, url=url, model=model, seed=stage_seed,
                       collect=collect, live=live or LiveStage(), prompt_offset=prompt_offset,
                       api_key=auth.key_from_env() if api_key is None else api_key, model_path=model_path,
                       worker_log_dir=worker_log_dir, remote=remote, endpoints=tuple(endpoints or (url,)),
                       balance=balance, stop_on_death=stop_on_death)
    notes: list[str] = []
    if remote and workers > plan.users:
        # every remote worker must get users (each takes a fixed share of request
        # indices); a stage this small needs no distributed load
        notes.append(f"{plan.users} user(s) for {workers} remote workers: the stage ran in this process")
        workers = 0
    if workers:
        outcome = run_distributed(ctx, workers)
    else:
        if prompts is None:
            prompts = _prompts(profile, model_path)
        outcome = _run_local(ctx, prompts)
    notes += outcome.notes
    summary = summarize(records, warmup_end_s=outcome.warmup_end_s, slos_ms=slos_ms, users=plan.steady_users,
                        percentiles=percentiles)
    indices = sum(1 for r in records if not r.turn_index)  # a conversation's turns share one index
    result = StageResult(stage=plan.name, kind=stage.kind, target=plan.target, records=len(records), summary=summary,
                         workers=workers, warnings=notes,
                         prompts=_prompt_use(prompts, prompt_offset, indices, plan.name, notes),
                         **outcome.result_fields(), **_fleet(records, ctx.endpoints, outcome.warmup_end_s, slos_ms))
    _judge(result, saturation_lag_ms)
    return result


def _fleet(records: list[RequestRecord], endpoints: Sequence[str], warmup_end_s: float | None,
           slos_ms: Mapping[str, float] | None) -> dict[str, Any]:
    """A fleet's stage-result fields: each endpoint's share and figures, and the balance achieved."""
    if len(endpoints) < 2:
        return {}
    by_endpoint: dict[str, list[RequestRecord]] = {u: [] for u in endpoints}
    for r in records:
        if r.endpoint in by_endpoint:
            by_endpoint[r.endpoint].append(r)
    summaries = {u: summarize(recs, warmup_end_s=warmup_end_s, slos_ms=slos_ms) if recs else {}
                 for u, recs in by_endpoint.items()}
    figures = {u: {k: summary.get(k) for k in ENDPOINT_FIGURES} for u, summary in summaries.items()}
    counts = [f["attempted"] or 0 for f in figures.values()]  # measured requests: warm-up left out
    total = sum(counts)
    out = {u: {"share": n / total if total else None, **f} for (u, f), n in zip(figures.items(), counts)}
    return {"endpoints": out, "balance": min(counts) / max(counts) if max(counts) else None}


def _prompts(profile: LoadProfile, model_path: str | None) -> PromptSet:
    if model_path is None and profile.prompts.kind in ("synthetic", "trace"):
        raise ConfigError(f"{profile.prompts.kind} prompts need the model's tokenizer: pass model_path")
    return profile_prompt_set(profile, model_path or "")


def check_context(prompts: PromptSet | None, url: str, api_key: str | None, profile: LoadProfile) -> None:
    """Refuse, before any stage, a workload whose prompts cannot fit the server's context (ConfigError)."""
    limit = max_model_len(url, auth.headers(api_key))
    if prompts is not None and limit is not None:
        prompts.check_context(limit, f"profile {profile.name}", profile.output_tokens or 0)


def _prompt_use(prompts: PromptSet | None, offset: int, sent: int, stage: str,
                notes: list[str]) -> dict[str, Any] | None:
    """What the stage result says about its prompts; a cycled set is also a warning (repeats hit the cache)."""
    if prompts is None:
        return None
    out = {**prompts.describe(), "first_index": offset, "requests": sent}
    out["cycled"] = bool(prompts.limit is not None and prompts.exhaust == "cycle" and offset + sent > prompts.limit)
    if out["cycled"]:
        notes.append(f"stage {stage}: the {prompts.limit} prompts were used up and cycled: repeated prompts can hit "
                     f"the server's prefix cache and flatter its speed (prompts.exhaust: stop ends the stage instead)")
    return out


def _run_local(ctx: StageContext, prompts: PromptSet) -> StageOutcome:
    plan, profile, url, prompt_offset, live = ctx.plan, ctx.profile, ctx.url, ctx.prompt_offset, ctx.live
    state = new_state(plan, profile, model=ctx.model, prompts=prompts, sink=ctx.collect, endpoints=ctx.endpoints,
                      balance=ctx.balance, prompt_offset=prompt_offset, api_key=ctx.api_key)
    state.sync.finished, state.sync.ready = gevent.event.Event(), gevent.event.Event()
    if not plan.open_loop and plan.warmup.requests:
        state.sync.warmup_gate = gevent.event.Event()
    known = known_requests(plan)
    prebuilt = known if known is not None else PREBUILT_ROUNDS * plan.users
    prompts.prepare(prompt_offset + g for g in state.indices(0, prebuilt))
    # a ramp-down lets leaving users finish their request (Locust's stop_timeout), never aborts it
    env = Environment(user_classes=[make_user_class(state, plan.name, url, profile.timeout_s)],
                      host=url.rstrip("/"), catch_exceptions=True, stop_timeout=profile.timeout_s)
    runner = env.create_local_runner()
    outcome = StageOutcome(started_s=now_s())
    runner.start(plan.start_users, spawn_rate=plan.spawn_rate)
    try:
        if note := await_barrier(lambda: state.counts.users_ready, plan.start_users, plan):
            outcome.notes.append(note)
        if known is None:
            start_feed(prompts, offset=prompt_offset, slots=state.turns.slots, period=state.turns.period,
                       start_k=prebuilt)
        with gc_quiet():
            cpu = CpuShare()
            live.begin(profile.name, plan.name, plan.kind, plan.target, lambda: state.counts.in_flight, cpu.ratio,
                       plan.warmup)
            start_clock(state, plan, now_s() + (OPEN_LOOP_LEAD_S if plan.open_loop else 0.0))
            state.sync.ready.set()
            if plan.ramp:
                runner.start(plan.ramp[0], spawn_rate=plan.ramp[1])
            outcome.stop = _monitor(state, plan.users, ctx.stop_on_death)
            outcome.loadgen_cpu["master"] = cpu.ratio()
    finally:
        if state.balancer is not None and len(ctx.endpoints) > 1:  # one server's death is server_died alone
            outcome.dead_endpoints = state.balancer.dead_urls()
        live.end()
        state.sync.finished.set()
        env.stop_timeout = 0  # the stage is over: whatever is still running is cut (and recorded as such)
        runner.quit()
        stop_feed(prompts)
    outcome.locust_requests = env.stats.total.num_requests
    outcome.locust_failures = env.stats.total.num_failures
    outcome.ended_s, outcome.warmup_end_s = now_s(), state.turns.warmup_end_s
    return outcome


def _monitor(state: StageState, users: int, stop_on_death: bool) -> Stop:
    """Return when the stage is done, its server (every endpoint, or with ``stop_on_death`` any) is dead, or
    its drain grace is over: why it stopped."""
    drain_deadline: float | None = None
    balancer = state.balancer
    while True:
        gevent.sleep(_TICK_S)
        if balancer is not None and balancer.dead and (stop_on_death or not balancer.alive):
            state.sync.stopping = True
            return Stop.SERVER_DIED
        if state.counts.succeeded == 0 and state.counts.client_errors >= max(10, 2 * users):
            state.sync.stopping = True
            return Stop.REJECTED  # every request refused with 4xx: misconfigured
        if not state.exhausted():
            continue
        if state.outstanding == 0:
            return Stop.DONE
        drain_deadline = drain_deadline or now_s() + state.config.timeout_s + 1.0
        if now_s() > drain_deadline:
            return Stop.DRAIN_TIMEOUT


def _judge(result: StageResult, saturation_lag_ms: float) -> None:
    s = result.summary
    if result.server_died:
        result.warnings.append(f"stage {result.stage}: the server stopped accepting connections; stage stopped early")
    if result.rejected:
        result.warnings.append(f"stage {result.stage}: every request was rejected with an HTTP 4xx; stage stopped "
                               f"early (check the served model name and OPENAI_API_KEY)")
    if result.stopped_early and not (result.server_died or result.rejected):
        result.warnings.append(f"stage {result.stage}: stopped before every request finished (a request outlived "
                               f"the drain grace, or a load worker was lost); unfinished requests are recorded as "
                               f"failed")
    if result.dead_endpoints:
        went = "the stage stopped" if result.server_died else "the rest of the fleet went on"
        result.warnings.append(f"stage {result.stage}: endpoint(s) {', '.join(result.dead_endpoints)} stopped "
                               f"accepting connections mid-stage; {went}; their finished requests are kept, and the "
                               f"stage is left off the load curves")
    busy = {name: r for name, r in result.loadgen_cpu.items() if r is not None and r >= LOADGEN_CPU_LIMIT}
    if busy:
        result.generator_saturated = True
        shown = ", ".join(f"{name} {r:.0%}" for name, r in sorted(busy.items()))
        result.warnings.append(f"stage {result.stage}: load generator saturated: CPU {shown} of a core (limit "
                               f"{LOADGEN_CPU_LIMIT:.0%}); its timestamps lag, so latencies are overstated and "
                               f"throughput may be understated: add --workers")
    lag = s.get("p99_send_lag_ms")
    if lag is not None and lag > saturation_lag_ms:
        result.generator_saturated = True
        result.warnings.append(
            f"stage {result.stage}: load generator saturated: p99 send lag {lag:.0f} ms > {saturation_lag_ms:g} ms "
            f"(requests left later than scheduled: too few users for the rate (max_concurrency), or the "
            f"load generator's CPU is exhausted); latencies from the intended send time include the lag")
    if s["attempted"] and s["completed"] == 0:
        result.warnings.append(f"stage {result.stage}: every request failed; first error: "
                               f"{next(iter(s['errors']), '?')}")


def run_profile(profile: LoadProfile, *, url: str, model: str, model_path: str | None = None,
                sink: RecordSink | None = None, slos_ms: Mapping[str, float] | None = None,
                prompts: PromptSet | None = None, on_stage: Callable[[StageResult], None] | None = None,
                saturation_lag_ms: float = SATURATION_LAG_MS, workers: int = 0,
                worker_log_dir: Path | None = None, remote: RemoteMaster | None = None,
                api_key: str | None = None, live: LiveStage | None = None, endpoints: Sequence[str] | None = None,
                balance: str = DEFAULT_BALANCE, stop_on_death: bool = False,
                percentiles: Sequence[float] = PERCENTILES) -> list[StageResult]:
    """Every stage of a profile in order (sweeps measured and expanded); stops after a stage whose server died
    (a fleet: every endpoint, or any with ``stop_on_death``)."""
    if prompts is None and (not workers or remote):
        prompts = _prompts(profile, model_path)
    for u in endpoints or (url,):
        check_context(prompts, u, api_key if api_key is not None else auth.key_from_env(), profile)
    results: list[StageResult] = []
    offset = 0

    def run(stage: ConcurrencyStage | RateStage | RampStage | ReplayStage) -> StageResult:
        nonlocal offset
        # a replay sends the trace's rows from the first: request i is row i
        r = run_stage(stage, url=url, model=model, profile=profile, prompts=prompts, sink=sink, slos_ms=slos_ms,
                      seed=profile.seed + len(results), prompt_offset=0 if isinstance(stage, ReplayStage) else offset,
                      saturation_lag_ms=saturation_lag_ms,
                      workers=workers, model_path=model_path, worker_log_dir=worker_log_dir, remote=remote,
                      api_key=api_key, live=live, endpoints=endpoints, balance=balance, stop_on_death=stop_on_death,
                      percentiles=percentiles)
        offset += (r.prompts or {}).get("requests", r.records)  # indices used (a conversation is one)
        results.append(r)
        if on_stage is not None:
            on_stage(r)
        return r

    for stage in profile.expanded_stages():
        if isinstance(stage, SweepStage):
            bounds = {"duration_s": stage.duration_s, "requests": stage.requests, "warmup": stage.warmup}
            sync = run(ConcurrencyStage(kind="concurrency", name=f"{stage.name}-sync", users=1, **bounds))
            if sync.server_died:
                break
            peak = run(ConcurrencyStage(kind="concurrency", name=f"{stage.name}-throughput",
                                        users=stage.max_users, **bounds))
            if peak.server_died:
                break
            lo, hi = sync.summary["request_throughput"], peak.summary["request_throughput"]
            if not lo or not hi:
                peak.warnings.append(f"sweep {stage.name}: no throughput measured; rate stages skipped")
                continue
            for k, rate in enumerate(sweep_rates(lo, hi, stage.rates)):
                r = run(RateStage(kind="rate", name=f"{stage.name}-{k + 1}-r{rate:.3g}", rate_rps=rate,
                                  arrivals=stage.arrivals, burstiness=stage.burstiness,
                                  max_concurrency=stage.max_concurrency, **bounds))
                if r.server_died:
                    break
        else:
            r = run(stage)
        if results and results[-1].server_died:
            break
    return results
