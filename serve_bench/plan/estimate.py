"""Pure planning (no files, no torch): every stage's requests and seconds from the cost model, and the
study's wall time from its parts. Everything a test can drive with known numbers."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from serve_bench.load.stage_plan import OPEN_LOOP_LEAD_S, plan_stage
from serve_bench.measure.stage_result import sweep_rates
from serve_bench.plan.cost import CPU_HOST, CostModel
from serve_bench.plan.history import History, profile_fingerprint
from serve_bench.plan.model import (
    CheckpointPlan,
    EnergyPlan,
    EvalPlan,
    Part,
    ProfilePlan,
    ServerPlan,
    StageEstimate,
    StageInfo,
    StudyPlan,
)
from serve_bench.plan.text import gb, secs
from serve_bench.workload.profiles import (
    ConcurrencyStage,
    LoadProfile,
    RampStage,
    RateStage,
    ReplayStage,
    SweepStage,
    Warmup,
)


def plan_profile(profile: LoadProfile, checkpoints: list[CheckpointPlan], model: CostModel,
                 measured: History | None = None) -> ProfilePlan:
    """Every stage of ``profile`` as ``run_profile`` expands it, with each checkpoint's estimate."""
    prompt, out = profile.input_tokens, profile.output_tokens
    fingerprint = profile_fingerprint(profile)
    stages: list[StageInfo] = []
    expanded = profile.expanded_stages()
    for stage in expanded:
        if not isinstance(stage, SweepStage):
            info = _describe(stage, len(stages))
            for ck in checkpoints:
                info.per_checkpoint[ck.name] = _estimate(stage, profile, len(stages), ck, model)
            stages.append(info)
            continue
        bounds = {"duration_s": stage.duration_s, "requests": stage.requests, "warmup": stage.warmup}
        for users, suffix in ((1, "sync"), (stage.max_users, "throughput")):
            sub = ConcurrencyStage(kind="concurrency", name=f"{stage.name}-{suffix}", users=users, **bounds)
            info = _describe(sub, len(stages))
            info.note = f"sweep {stage.name}"
            for ck in checkpoints:
                info.per_checkpoint[ck.name] = _estimate(sub, profile, len(stages), ck, model)
            stages.append(info)
        # the open-loop rates come from the two throughputs measured above: modelled here, per checkpoint
        first = len(stages)
        for k in range(stage.rates):
            stages.append(StageInfo(first + k, f"{stage.name}-{k + 1}", "rate", "", _bound(stage),
                                    _warmup_text(stage.warmup), note=f"sweep {stage.name}: rate from the "
                                                                     f"measured throughputs"))
        for ck in checkpoints:
            lo = model.throughput(1, prompt, out, ck.kept)
            hi = model.throughput(stage.max_users, prompt, out, ck.kept)
            for k, rate in enumerate(sweep_rates(lo, hi, stage.rates)):
                sub = RateStage(kind="rate", name=f"{stage.name}-{k + 1}-r{rate:.3g}", rate_rps=rate,
                                arrivals=stage.arrivals, burstiness=stage.burstiness,
                                max_concurrency=stage.max_concurrency, **bounds)
                est = _estimate(sub, profile, first + k, ck, model)
                est.requests_how = "estimate"  # the rate itself is an estimate
                stages[first + k].per_checkpoint[ck.name] = est
                if ck is checkpoints[0]:
                    stages[first + k].target = f"≈{rate:.3g} req/s {stage.arrivals}"
    if measured is not None:
        for info in stages:
            for ck in checkpoints:
                hit = measured.stages.get((ck.name, fingerprint, info.name))
                if hit is not None:
                    seconds, sent, warm = hit
                    info.per_checkpoint[ck.name] = StageEstimate(sent, warm, "measured", seconds, "measured",
                                                                 f"in {measured.source}")
    return ProfilePlan(profile.name, profile.description, profile.api, prompt, out, _warmup_text(profile.warmup),
                       stages)


def _describe(stage: ConcurrencyStage | RateStage | RampStage | ReplayStage, index: int) -> StageInfo:
    if isinstance(stage, ConcurrencyStage):
        target = f"{stage.users} user{'s' if stage.users != 1 else ''}"
    elif isinstance(stage, RateStage):
        target = f"{stage.rate_rps:g} req/s {stage.arrivals}"
    elif isinstance(stage, ReplayStage):
        target = f"trace at {stage.speed:g}x"
    else:
        target = f"{stage.start_users} → {stage.end_users} users"
    return StageInfo(index, stage.name or stage.default_name(), stage.kind, target, _bound(stage),
                     _warmup_text(stage.warmup))


def _bound(stage: Any) -> str:
    parts = []
    if getattr(stage, "requests", None):
        parts.append(f"{stage.requests} req")
    if stage.duration_s:
        parts.append(secs(stage.duration_s))
    return " or ".join(parts)


def _warmup_text(w: Warmup | None) -> str:
    if w is None or not (w.requests or w.duration_s):
        return "none"
    return f"{w.requests} req" if w.requests else secs(w.duration_s)


def _estimate(stage: ConcurrencyStage | RateStage | RampStage | ReplayStage, profile: LoadProfile, index: int,
              ck: CheckpointPlan, model: CostModel) -> StageEstimate:
    if profile.conversation is not None:
        return _conversations(_estimate_one(stage, profile, index, ck, _Conversational(model, profile)), profile)
    return _estimate_one(stage, profile, index, ck, model)


class _Conversational:
    """The cost model seen by a profile whose "request" is a conversation: T turns one after the other, each
    sending the history so far (on average (T − 1)/2 earlier turns of prompt and answer), a think time
    between turns. Stage times come out per conversation; :func:`_conversations` counts the turns sent."""

    def __init__(self, model: CostModel, profile: LoadProfile) -> None:
        conv = profile.conversation
        assert conv is not None
        self.model, self.turns, self.think_s = model, max(1.0, conv.turns.mean()), conv.think_time_s
        self.stage_overhead_s = model.stage_overhead_s
        self.history = (self.turns - 1) / 2 * (profile.input_tokens + profile.output_tokens)

    def e2el(self, users: float, prompt: int, output: int, kept: float = 1.0) -> float:
        one = self.model.e2el(users, round(prompt + self.history), output, kept)
        return self.turns * one + (self.turns - 1) * self.think_s

    def throughput(self, users: float, prompt: int, output: int, kept: float = 1.0) -> float:
        return users / self.e2el(users, prompt, output, kept)

    def in_flight(self, rate: float, prompt: int, output: int, kept: float = 1.0) -> float | None:
        """Conversations in flight L = rate·E(L), by bisection (E is no longer linear in L)."""
        lo, hi = 0.0, 4096.0
        if rate * self.e2el(hi, prompt, output, kept) > hi:
            return None
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if rate * self.e2el(mid, prompt, output, kept) > mid else (lo, mid)
        return hi


def _conversations(est: StageEstimate, profile: LoadProfile) -> StageEstimate:
    assert profile.conversation is not None
    turns = profile.conversation.turns.mean()
    fixed = turns == round(turns) and profile.conversation.turns.kind == "fixed"
    return StageEstimate(None if est.requests is None else round(est.requests * turns),
                         None if est.warmup_requests is None else round(est.warmup_requests * turns),
                         est.requests_how if fixed else "estimate", est.seconds, est.how,
                         est.note or f"each of the stage's requests is a {turns:g}-turn conversation: turns counted")


def _estimate_one(stage: ConcurrencyStage | RateStage | RampStage | ReplayStage, profile: LoadProfile, index: int,
                  ck: CheckpointPlan, model: Any) -> StageEstimate:
    tokens, f = (profile.input_tokens, profile.output_tokens), ck.kept
    warm = stage.warmup or profile.warmup
    overhead = model.stage_overhead_s
    if isinstance(stage, (RateStage, ReplayStage)):
        plan = plan_stage(stage, profile, profile.seed + index)
        offsets = plan.offsets_s or []
        n = len(offsets)
        span = offsets[-1] if offsets else 0.0
        warm_n = warm.requests if warm.requests else sum(1 for t in offsets if t < warm.duration_s)
        rate = stage.rate_rps if isinstance(stage, RateStage) else (n / span if span > 0 else float(n))
        in_flight = model.in_flight(rate, *tokens, f)
        if in_flight is not None and in_flight <= stage.max_concurrency:
            body, note = span + model.e2el(max(in_flight, 1.0), *tokens, f), ""
        else:  # overloaded: the backlog is served at the throughput of the most requests in flight
            capacity = model.throughput(min(stage.max_concurrency, max(n, 1)), *tokens, f)
            body, note = max(span, n / capacity) + model.e2el(1, *tokens, f), "overloaded: requests queue"
        return StageEstimate(n, min(warm_n, n), "exact", overhead + OPEN_LOOP_LEAD_S + body, "model", note)
    if isinstance(stage, RampStage):
        span = stage.duration_s + warm.duration_s
        rate = (model.throughput(stage.start_users, *tokens, f) + model.throughput(stage.end_users, *tokens, f)) / 2
        warm_t = _warmup_time(warm, stage.start_users, model, *tokens, f)
        sent = round(rate * span) + warm.requests
        warm_n = warm.requests or round(rate * warm.duration_s)
        drain = model.e2el(stage.end_users, *tokens, f)
        return StageEstimate(sent, warm_n, "estimate", overhead + warm_t + span + drain, "model")
    n_users = stage.users
    e = model.e2el(n_users, *tokens, f)
    warm_t = _warmup_time(warm, n_users, model, *tokens, f)
    by_requests = math.ceil(stage.requests / n_users) * e if stage.requests else math.inf
    span = stage.duration_s + warm.duration_s if stage.duration_s else None
    rounds = math.ceil(span / e) if span else None
    by_time = rounds * e if rounds else math.inf
    if by_requests <= by_time:
        assert stage.requests is not None
        sent, how, body = stage.requests + warm.requests, "exact", by_requests
        warm_n = warm.requests or min(stage.requests, n_users * math.ceil(warm.duration_s / e))
    else:
        assert rounds is not None
        sent, how, body = n_users * rounds + warm.requests, "estimate", by_time
        warm_n = warm.requests or n_users * math.ceil(warm.duration_s / e)
    return StageEstimate(sent, warm_n, how, overhead + warm_t + body, "model")


def _warmup_time(warm: Warmup, users: int, model: CostModel, prompt: int, out: int, f: float) -> float:
    """Warm-up requests run before the measured ones and the stage's clock waits for them."""
    if not warm.requests:
        return 0.0
    senders = min(warm.requests, users)
    return math.ceil(warm.requests / senders) * model.e2el(senders, prompt, out, f)


def make_plan(name: str, out_dir: Path, checkpoints: list[CheckpointPlan], profiles: list[LoadProfile],
              server: ServerPlan, energy: EnergyPlan, model: CostModel = CPU_HOST,
              measured: History | None = None, notes: list[str] | None = None,
              evaluation: EvalPlan | None = None, trials: int = 1, cooldown_s: float = 0.0,
              exact_dir: bool = False) -> StudyPlan:
    """The plan and its estimate from already resolved parts (pure: no files read, nothing started)."""
    plans = [plan_profile(p, checkpoints, model, measured) for p in profiles]
    parts = [Part("start-up: interpreter, imports, energy probe, exporter", model.startup_s)]
    hashed = sum(c.hash_bytes for c in checkpoints)
    if hashed:
        parts.append(Part(f"checksums of {gb(hashed)} of weights", hashed / 1e9 / model.hash_gb_per_s))
    if any(c.convert for c in checkpoints):
        parts.append(Part("convert the bundled model (once)", model.convert_bundled_s))
    to_prune = [c for c in checkpoints if c.action == "prune"]
    if to_prune:
        work = sum(c.prune_bytes for c in to_prune)
        parts.append(Part(f"prune {len(to_prune)} checkpoint(s): {gb(work)} read and written",
                          work / 1e9 * model.prune_s_per_gb))
    launch = server.mode == "launch"
    idle = energy.idle_s if energy.measurable else 0.0
    for ck in checkpoints:
        stage_s = sum(s.per_checkpoint[ck.name].seconds for p in plans for s in p.stages)
        measured_n = sum(s.per_checkpoint[ck.name].how == "measured" for p in plans for s in p.stages)
        pieces = []
        seconds = stage_s
        if launch:
            seconds += model.server_start_s + model.stop_s
            pieces.append(f"vLLM start {secs(model.server_start_s)}")
        if idle:
            seconds += idle
            pieces.append(f"idle baseline {secs(idle)}")
        total_stages = sum(len(p.stages) for p in plans)
        measured_text = "measured" if measured_n == total_stages else f"{measured_n} measured"
        pieces.append(f"{total_stages} stage{'s' if total_stages != 1 else ''} {secs(stage_s)}"
                      + (f" ({measured_text})" if measured_n else ""))
        seconds *= trials  # each trial starts the server again and runs every stage again
        if evaluation is not None:  # the first trial's only
            seconds += evaluation.seconds_for(ck.kept)
            pieces.append(f"evaluation {secs(evaluation.seconds_for(ck.kept))}")
        if launch:
            pieces.append(f"stop {secs(model.stop_s)}")
        if trials > 1:
            pieces.append(f"all but evaluation × {trials} trials")
        parts.append(Part(f"{ck.name}: " + ", ".join(pieces), seconds,
                          "measured" if measured_n == total_stages and total_stages else "model"))
    if trials > 1 and cooldown_s:
        parts.append(Part(f"cool-down between trials ({trials - 1} × {secs(cooldown_s)})", (trials - 1) * cooldown_s))
    if checkpoints:
        parts.append(Part("load generator's first tokenizer load", model.first_client_s))
    parts.append(Part("summary and exit" + (f" (× {trials} trials)" if trials > 1 else ""), model.finish_s * trials))
    if checkpoints:
        reports = trials + 1 if trials > 1 else 1  # each trial's, and the series' run to run
        parts.append(Part("capacity report (plots, HTML, JSON)" + (f" (× {reports}: each trial's and the series')"
                                                                   if trials > 1 else ""), model.report_s * reports))
    return StudyPlan(name, out_dir, checkpoints, server, plans, energy, parts, model, list(notes or []), evaluation,
                     trials, exact_dir)
