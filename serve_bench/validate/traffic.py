"""The traffic a validation replays, as a load profile and a study: the plan's rate with its input/output mix,
Poisson arrivals, open loop (latency from the intended send), against the fleet the plan asked for; then
rates around the fleet's predicted capacity to measure it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from serve_bench.errors import ConfigError
from serve_bench.study import StudySpec
from serve_bench.validate.claim import Claim
from serve_bench.validation import validate

PLAN_STAGE = "plan"
DEFAULT_SEARCH = (0.8, 1.0, 1.2)  # × the fleet's predicted capacity: one below, at, one above
DEFAULT_DURATION_S = 60.0


def search_stage(multiplier: float) -> str:
    return f"fleet-x{multiplier:g}"


def profile_data(claim: Claim, replicas: int, *, duration_s: float, search: Sequence[float],
                 seed: int) -> dict[str, Any]:
    """The plan's traffic at its rate; then, unless ``search`` is empty, at ``search`` × the fleet's predicted
    capacity (N × one replica's × the scaling efficiency the plan assumed)."""
    warm = min(5.0, duration_s / 6.0)
    fleet = claim.predicted_fleet_rps(replicas)
    stages = [_rate(PLAN_STAGE, claim.rps, duration_s)]
    stages += [_rate(search_stage(m), fleet * m, duration_s) for m in sorted(search)]
    return {"name": "validate", "description": f"the plan's traffic for {claim.label}: {claim.rps:g} req/s, "
                                               f"{claim.input_tokens} in / {claim.output_tokens} out, Poisson",
            "api": claim.api, "input_tokens": claim.input_tokens, "output_tokens": claim.output_tokens,
            "ignore_eos": True, "seed": seed, "warmup": {"duration_s": round(warm, 3)}, "prompts": claim.prompts,
            "timeout_s": max(120.0, 2 * duration_s), "stages": stages}


def _rate(name: str, rps: float, duration_s: float) -> dict[str, Any]:
    return {"kind": "rate", "name": name, "rate_rps": round(rps, 6), "arrivals": "poisson", "duration_s": duration_s,
            "max_concurrency": 1024}


def write_profile(data: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def fleet_study(claim: Claim, *, name: str, profile: Path, out_dir: Path, urls: Sequence[str], replicas: int,
                served_model: str | None, tokenizer: str | None, model: str | None, balance: str | None,
                engine_args: list[str] | None) -> StudySpec:
    """A study that loads ``urls`` (a running fleet), or launches ``replicas`` of the checkpoint, with the plan's
    SLOs, no pruning and no evaluation."""
    report = {"slo_percentile": claim.percentile, "min_attainment": claim.min_attainment,
              "capacity": {"rps": claim.rps, "headroom": claim.headroom}}
    data: dict[str, Any] = {"name": name, "profiles": [str(profile)], "slo": dict(claim.slo_ms), "report": report,
                            "eval": {"enabled": False}, "runs_dir": str(out_dir),
                            "prune": {"prune": [], "expansion_ratio": []}}
    server: dict[str, Any]
    if urls:
        server = {"endpoints": list(urls)} if len(urls) > 1 else {"url": urls[0]}
        server.update({k: v for k, v in (("served_model", served_model), ("tokenizer", tokenizer)) if v})
    else:
        path = model or claim.model_path
        if path is None:
            raise ConfigError(f"{claim.label} was measured at a running server: serve-bench cannot launch it",
                              hint="pass the fleet's --url (repeated), or --model DIR to launch replicas of")
        kept = {k: v for k, v in claim.server.items() if k in ("engine_args", "env", "host", "startup_timeout_s",
                                                                "api_key_env")}
        server = {**kept, "replicas": replicas}
        if engine_args is not None:
            server["engine_args"] = engine_args
        data["models"] = [{"model": path, "name": claim.checkpoint}]
    if balance:
        server["balance"] = balance
    data["server"] = server
    return validate(StudySpec, data, "validation")
