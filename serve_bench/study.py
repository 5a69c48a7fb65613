"""The study: which models and pruned variants to serve, how to serve them,
which load profiles to run, and the SLOs. Defaults < study file < flags."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, field_validator, model_validator

from serve_bench.auth import DEFAULT_KEY_ENV
from serve_bench.evaluate.settings import EvalSettings
from serve_bench.load.balance import DEFAULT_BALANCE, Balance
from serve_bench.measure.metrics import PERCENTILES, SLO_METRICS
from serve_bench.prune.criteria import ALIASES, CRITERIA
from serve_bench.prune.plan import DEFAULT_DIVISOR, DIVISORS
from serve_bench.validation import Strict, read_yaml, validate


class ModelEntry(Strict):
    model: str = Field("default", description="'default', a checkpoint directory or a hub id")
    name: str | None = Field(None, description="short name in results; defaults to the directory name")


class PruneSettings(Strict):
    prune: list[float] = Field(default_factory=list, description="pruning fractions, e.g. [0.2, 0.4]")
    expansion_ratio: list[float] = Field(default_factory=list)
    criterion: str = "ppm"
    divisor: int = DEFAULT_DIVISOR
    include_base: bool = Field(True, description="serve the unpruned model too")

    @field_validator("criterion")
    @classmethod
    def _known(cls, v: str) -> str:
        if v.lower() not in CRITERIA and v.lower() not in ALIASES:
            raise ValueError(f"unknown criterion {v!r}; valid: {', '.join(sorted([*CRITERIA, *ALIASES]))}")
        return v.lower()

    @field_validator("divisor")
    @classmethod
    def _divisor(cls, v: int) -> int:
        if v not in DIVISORS:
            raise ValueError(f"divisor must be one of {', '.join(map(str, DIVISORS))}")
        return v

    @field_validator("prune")
    @classmethod
    def _fractions(cls, v: list[float]) -> list[float]:
        for p in v:
            if not 0 <= p < 1:
                raise ValueError(f"pruning fraction {p} is outside [0, 1)")
        return v


class ServerSettings(Strict):
    url: str | None = Field(None, description="an OpenAI-compatible server to load instead of launching vLLM")
    endpoints: list[str] = Field(default_factory=list,
                                 description="several servers of the same model, loaded as one fleet (instead "
                                             "of url); requests spread over them by balance")
    balance: Balance = Field(DEFAULT_BALANCE, description="how a fleet's requests are spread: least-outstanding "
                                                          "(fewest in flight) or round-robin")
    served_model: str | None = Field(None, description="model name at --url; default: the server's first model")
    tokenizer: str | None = Field(None, description="tokenizer directory for --url; default: the root vLLM reports")
    replicas: int = Field(1, ge=1, le=256, description="vLLM servers launched per checkpoint, each on its own "
                                                       "GPUs or cores, loaded as one fleet (serve/fleet.py)")
    engine_args: list[str] = Field(default_factory=lambda: ["--max-model-len", "2048"])
    env: dict[str, str] = Field(default_factory=dict)
    gpus: list[int] | None = Field(None, description="the machine's GPUs the launched server(s) use "
                                                     "(CUDA_VISIBLE_DEVICES); default: as inherited")
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1, description="share of each GPU's memory "
                                                 "vLLM may take (its default 0.9 fails on a GPU shared with "
                                                 "others)")
    tensor_parallel_size: int | None = Field(None, ge=1, description="GPUs per server (vLLM's "
                                                                     "--tensor-parallel-size)")
    compile_cache_dir: Path | None = Field(None, description="vLLM's cache (VLLM_CACHE_ROOT: torch.compile "
                                                             "artifacts), kept across checkpoints and runs; "
                                                             "default: vLLM's own (~/.cache/vllm)")
    host: str = "127.0.0.1"
    port: int | None = Field(None, ge=1, le=65535)
    startup_timeout_s: float = Field(600.0, gt=0)
    api_key_env: str = Field(DEFAULT_KEY_ENV, min_length=1,
                             description="environment variable holding the API key sent on every request; "
                                         "vLLM's --api-key in engine_args is used when this is unset")

    @model_validator(mode="after")
    def _one_target(self) -> ServerSettings:
        if self.url and self.endpoints:
            raise ValueError("give url (one server) or endpoints (a fleet), not both")
        if self.replicas > 1 and (self.url or self.endpoints):
            raise ValueError("replicas are servers serve-bench launches; at url or endpoints the fleet is already "
                             "running: list its endpoints instead")
        seen = [u.rstrip("/") for u in self.endpoints]
        if len(set(seen)) != len(seen):
            raise ValueError("endpoints name the same server twice: " +
                             ", ".join(sorted({u for u in seen if seen.count(u) > 1})))
        for u in self.endpoints:
            if not u.startswith(("http://", "https://")):
                raise ValueError(f"endpoint {u!r} is not an http(s) URL")
        return self

    @model_validator(mode="after")
    def _settings_or_engine_args(self) -> ServerSettings:
        given = {a.split("=", 1)[0].replace("_", "-") for a in self.engine_args if a.startswith("-")}
        for name, flags in (("gpu_memory_utilization", {"--gpu-memory-utilization"}),
                            ("tensor_parallel_size", {"--tensor-parallel-size", "-tp"})):
            if getattr(self, name) is not None and given & flags:
                raise ValueError(f"{name} and engine_args' {sorted(given & flags)[0]} say the same thing: keep one")
        if self.gpus is not None and "CUDA_VISIBLE_DEVICES" in self.env:
            raise ValueError("gpus and env's CUDA_VISIBLE_DEVICES say the same thing: keep one")
        if self.gpus is not None and (not self.gpus or len(set(self.gpus)) != len(self.gpus) or min(self.gpus) < 0):
            raise ValueError("gpus must list distinct GPU numbers (0, 1, …)")
        return self

    @property
    def launch_args(self) -> list[str]:
        """The engine arguments a launched server gets from the study: engine_args and the GPU settings."""
        out = list(self.engine_args)
        if self.gpu_memory_utilization is not None:
            out += ["--gpu-memory-utilization", f"{self.gpu_memory_utilization:g}"]
        if self.tensor_parallel_size is not None:
            out += ["--tensor-parallel-size", str(self.tensor_parallel_size)]
        return out

    @property
    def launch_env(self) -> dict[str, str]:
        """The environment a launched server gets from the study on top of serve-bench's own."""
        out = dict(self.env)
        if self.gpus is not None:
            out["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, self.gpus))
        if self.compile_cache_dir is not None:
            out["VLLM_CACHE_ROOT"] = str(self.compile_cache_dir.expanduser().resolve())
        return out

    @property
    def urls(self) -> list[str]:
        """The servers to load (one, or a fleet's endpoints); empty when serve-bench launches vLLM."""
        return [u.rstrip("/") for u in self.endpoints] if self.endpoints else [self.url] if self.url else []


class MetricsSettings(Strict):
    host: str = Field("127.0.0.1", description="where the Prometheus exporter listens; loopback by default")
    port: int | None = Field(None, ge=0, le=65535,
                             description="exporter port; default 9464 (a free one if that is busy); 0: any free port")


class EnergySettings(Strict):
    idle_s: float = Field(10.0, ge=0, description="idle baseline per checkpoint, model loaded, before its stages "
                                                  "(where energy can be measured); 0: none")


REQUIRED_PERCENTILE = 99.0  # the load generator's saturation check (p99 send lag) and the results table read it


class StudySpec(Strict):
    name: str = "default"
    labels: dict[str, str] = Field(default_factory=dict,
                                   description="KEY: VALUE pairs that tell runs apart (--label KEY=VALUE); kept in "
                                               "the manifest, shown in the report and by compare")
    models: list[ModelEntry] = Field(default_factory=lambda: [ModelEntry()], min_length=1)
    prune: PruneSettings = Field(default_factory=lambda: PruneSettings(prune=[0.2, 0.4]))
    profiles: list[str] = Field(default_factory=lambda: list(build_defaults().profiles), min_length=1,
                                description="default: `quick` with vLLM's CPU build, `gpu` with its CUDA build")
    server: ServerSettings = Field(default_factory=ServerSettings)
    slo: dict[str, float] = Field(default_factory=dict, description="e.g. {ttft_ms: 500, tpot_ms: 50}")
    percentiles: list[float] = Field(default_factory=lambda: list(PERCENTILES), min_length=1,
                                     description="the latency percentiles every stage summary gives (p75_ttft_ms …); "
                                                 "p99 always among them (the saturation check and the results "
                                                 "table read it)")
    on_server_death: Literal["continue", "stop"] = "continue"
    repeats: int = Field(1, ge=1, le=100, description="trials: every checkpoint's profiles run this many times, "
                                                      "the checkpoints' order alternating (A B, B A, A B …)")
    cooldown_s: float = Field(0.0, ge=0, description="pause between trials (repeats), for the host to settle")
    workers: int = Field(0, ge=0, description="Locust worker processes on this host (0: run in-process)")
    remote_workers: int = Field(0, ge=0, description="Locust workers on other hosts to wait for (serve-bench worker)")
    master_bind_host: str = Field("127.0.0.1", description="where remote workers connect; Locust's master "
                                                           "protocol is unauthenticated, so only loopback by default")
    master_port: int = Field(5557, ge=1, le=65535)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    energy: EnergySettings = Field(default_factory=EnergySettings)
    eval: EvalSettings = Field(default_factory=EvalSettings,
                               description="accuracy (lm-eval) against each served checkpoint: tasks, subsets, data")
    runs_dir: Path = Field(Path("runs"), validation_alias=AliasChoices("runs_dir", "out_dir"),
                           description="parent of run directories, each a new <time>-<name> (out_dir: the "
                                       "older name, still read)")
    run_dir: Path | None = Field(None, description="the run directory itself, new or empty (run --out); "
                                                   "default: a new <time>-<name> in runs_dir")
    checkpoints_dir: Path | None = Field(None, description="where pruned checkpoints go; default: the cache")
    report: ReportSettings = Field(default_factory=lambda: ReportSettings(),
                                   description="the capacity-planning report: SLOs, traffic, prices")

    @model_validator(mode="after")
    def _evaluate_when(self) -> StudySpec:
        """Evaluation sends lm-eval's traffic to the server: always to one serve-bench launched, and at --url
        only when asked (eval.enabled, --eval, or an eval: section that says more than where the data is)."""
        if self.eval.enabled is None:
            asked = "eval" in self.model_fields_set and bool(self.eval.model_fields_set - {"data_dir"})
            # a copy: the EvalSettings given may be shared with another study
            self.eval = self.eval.model_copy(update={"enabled": not self.server.urls or asked})
        return self

    @model_validator(mode="after")
    def _one_worker_kind(self) -> StudySpec:
        if self.workers and self.remote_workers:
            raise ValueError("use workers (this host) or remote_workers (other hosts), not both")
        if self.slo and self.report.slo_ms and self.slo != self.report.slo_ms:
            raise ValueError("slo and report.slo_ms name different SLOs: a run has one set (goodput, the exporter, "
                             "the live view and the report all judge by it); keep slo only")
        return self

    def resolved_slo(self) -> ResolvedSlo:
        """The run's one SLO set: ``slo``, else ``report.slo_ms``, with the report's percentile and attainment;
        else serve-bench's default SLO, whose percentile and attainment are its own unless the study sets them."""
        r = self.report
        if self.slo or r.slo_ms:
            return ResolvedSlo(slo_ms=dict(self.slo or r.slo_ms), percentile=r.slo_percentile,
                               min_attainment=r.min_attainment,
                               source="the study's slo" if self.slo else "the study's report.slo_ms")
        given = r.model_fields_set
        d = build_defaults()
        return ResolvedSlo(slo_ms=dict(d.slo_ms), source=d.source,
                           percentile=r.slo_percentile if "slo_percentile" in given else d.percentile,
                           min_attainment=r.min_attainment if "min_attainment" in given else d.attainment)

    @property
    def history_dir(self) -> Path:
        """Where earlier runs are looked for (the plan's measured stage times): beside ``run_dir`` when one is
        named, else ``runs_dir``."""
        return self.run_dir.parent if self.run_dir else self.runs_dir

    @field_validator("slo")
    @classmethod
    def _slo(cls, v: dict[str, float]) -> dict[str, float]:
        return _check_slos(v)

    @field_validator("percentiles")
    @classmethod
    def _percentiles(cls, v: list[float]) -> list[float]:
        bad = [p for p in v if not 0 < p <= 100]
        if bad:
            raise ValueError(f"percentiles must be in (0, 100], not {', '.join(f'{p:g}' for p in bad)}")
        return sorted(set(v) | {REQUIRED_PERCENTILE})

    @field_validator("labels", mode="before")
    @classmethod
    def _scalar_labels(cls, v: Any) -> Any:
        # `build: 3` or `nightly: true` in YAML: a label's value is its text
        if isinstance(v, dict):
            return {k: str(x).lower() if isinstance(x, bool) else str(x) if isinstance(x, (int, float)) else x
                    for k, x in v.items()}
        return v

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        for key in v:
            if not key.strip() or "=" in key:
                raise ValueError(f"label key {key!r} must be a non-empty name without '='")
        return v


# -- the report (serve_bench.report) ------------------------------------------------------------------------------

# The SLO of a run whose study names none (goodput, the exporter, the live view and the report all use the
# resolved set, kept in the manifest): p90 TTFT ≤ 500 ms and TPOT ≤ 100 ms, 90% of requests meeting both. Sized
# for the default study (the bundled 135M model on a 2-core CPU host, 1/4/16 users): there TPOT is 30-90 ms
# and TTFT 100-400 ms up to 4 users, and TTFT passes 700 ms at 16, so every checkpoint's ladder crosses it; p90,
# not p99, because a stage of a few dozen requests can bound a p90 (a distribution-free 97.5% bound needs 35
# independent samples) but never a p99 (367). README, "The default SLO".
DEFAULT_SLO_MS: dict[str, float] = {"ttft_ms": 500.0, "tpot_ms": 100.0}
DEFAULT_SLO_PERCENTILE = 90.0
DEFAULT_SLO_ATTAINMENT = 0.9
DEFAULT_SLO_SOURCE = "serve-bench's default for the default study (CPU host); set yours"

# With vLLM's CUDA build the default study is the `gpu` profile (a ladder to 1024 users, 40 s stages so that
# energy has its 30 s steady window) judged by an interactive GPU-serving SLO in the manner of MLPerf's
# interactive scenarios (TTFT ≤ 500 ms, TPOT ≤ 30 ms) at p99 with 95% attainment: a stage of 40 s on a GPU
# holds thousands of requests, enough to bound a p99. Uncalibrated: no GPU has run it yet (README, "On a GPU").
GPU_SLO_MS: dict[str, float] = {"ttft_ms": 500.0, "tpot_ms": 30.0}
GPU_SLO_SOURCE = "serve-bench's default for the default study on a GPU (interactive serving); set yours"


@dataclass(frozen=True)
class BuildDefaults:
    profiles: tuple[str, ...]
    slo_ms: dict[str, float]
    percentile: float
    attainment: float
    source: str


def build_defaults(build: str | None = None) -> BuildDefaults:
    """The default study's profiles and SLO for vLLM's build here (``vllm_build()``: cpu, cuda, or None)."""
    from serve_bench.serve.server import vllm_build

    if (build or vllm_build()) == "cuda":
        return BuildDefaults(("gpu",), GPU_SLO_MS, 99.0, 0.95, GPU_SLO_SOURCE)
    return BuildDefaults(("quick",), DEFAULT_SLO_MS, DEFAULT_SLO_PERCENTILE, DEFAULT_SLO_ATTAINMENT,
                         DEFAULT_SLO_SOURCE)


class ResolvedSlo(Strict):
    """A run's SLO set, its percentile and attainment, and where it came from (``manifest["slo"]``)."""

    slo_ms: dict[str, float]
    percentile: float
    min_attainment: float | None
    source: str


def run_slos(manifest: dict) -> ResolvedSlo | None:
    """A run's resolved SLO set from its manifest; runs made before it was kept: the study's ``slo`` with its
    report's percentile and attainment."""
    kept = manifest.get("slo")
    if isinstance(kept, dict) and kept.get("slo_ms"):
        try:
            return ResolvedSlo.model_validate(kept)
        except ValueError:
            pass
    study = manifest.get("study") or {}
    if not study.get("slo"):
        return None
    report = study.get("report") or {}
    return ResolvedSlo(slo_ms=dict(study["slo"]), percentile=report.get("slo_percentile", 99.0),
                       min_attainment=report.get("min_attainment", 0.95), source="the study's slo")


def _check_slos(v: dict[str, float]) -> dict[str, float]:
    for k, x in v.items():
        if k not in SLO_METRICS:
            raise ValueError(f"unknown SLO {k!r}; valid: {', '.join(SLO_METRICS)}")
        if not x > 0:
            raise ValueError(f"SLO {k} must be positive")
    return v


class CapacitySettings(Strict):
    """The traffic to plan for and what a replica costs. Replicas scale by ``scaling_efficiency`` (linearly
    unless told otherwise)."""

    rps: float = Field(10.0, gt=0, description="target traffic, requests per second (an example: set yours)")
    input_tokens: float | None = Field(None, gt=0, description="mean input tokens per request; None: as measured")
    output_tokens: float | None = Field(None, gt=0, description="mean output tokens per request; None: as measured")
    headroom: float = Field(0.2, ge=0, lt=1, description="fraction of each replica's SLO capacity kept free")
    gpu_hour_price: float = Field(2.0, ge=0, description="price of one GPU-hour (an example: set yours)")
    currency: str = Field("USD", min_length=1)
    gpus_per_replica: int = Field(1, ge=1)
    grid_g_per_kwh: float | None = Field(None, ge=0, description="grid carbon intensity, gCO2e/kWh; None: no CO2")
    scaling_efficiency: float = Field(1.0, gt=0, le=1.5,
                                      description="a fleet of N serves N × this × one replica's capacity; 1: linear "
                                                  "(assumed); `serve-bench validate` measures it on a real fleet")


class ReportSettings(Strict):
    slo_ms: dict[str, float] = Field(default_factory=dict,
                                     description="limits, e.g. {ttft_ms: 500, tpot_ms: 50}; empty: the run's "
                                                 "resolved set (the study's slo, else DEFAULT_SLO_MS)")
    slo_percentile: float = Field(99.0, gt=0, le=100, description="each limit holds at this percentile")
    min_attainment: float | None = Field(0.95, gt=0, le=1,
                                         description="share of attempted requests meeting every limit (failed "
                                                     "ones count as not); None: percentiles only")
    profile: str | None = Field(None, description="the load profile the capacity plan rests on; None: the first "
                                                  "with two usable stages")
    bootstrap_resamples: int = Field(1000, ge=50, le=100_000)
    confidence: float = Field(0.95, gt=0, lt=1)
    seed: int = 0
    capacity: CapacitySettings = Field(default_factory=CapacitySettings)

    @field_validator("slo_ms")
    @classmethod
    def _slo(cls, v: dict[str, float]) -> dict[str, float]:
        return _check_slos(v)


def is_loopback(host: str) -> bool:
    """Is this bind address reachable only from this machine?"""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_study(path: Path | None) -> StudySpec:
    if path is None:
        return StudySpec()
    return validate(StudySpec, read_yaml(path) or {}, str(path))
