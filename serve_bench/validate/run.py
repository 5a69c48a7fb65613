"""The validation itself: everything checked before a server starts, the replay(s), the verdict and its files."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serve_bench.errors import ConfigError, ServerError
from serve_bench.rundir import read_json, write_json, write_text
from serve_bench.validate.claim import Claim, read_claim
from serve_bench.validate.found import VALIDATION_JSON, VALIDATION_MD, VALIDATIONS
from serve_bench.validate.judge import Validation, judge, to_dict
from serve_bench.validate.render import markdown
from serve_bench.validate.traffic import (
    DEFAULT_DURATION_S,
    DEFAULT_SEARCH,
    fleet_study,
    profile_data,
    write_profile,
)


@dataclass
class ValidationRequest:
    report: Path
    checkpoint: str | None = None
    urls: Sequence[str] = ()
    replicas: int | None = None        # launched replicas (None: as many as the plan asks for)
    fewer: bool = False
    duration_s: float = DEFAULT_DURATION_S
    search: Sequence[float] = DEFAULT_SEARCH
    out: Path | None = None
    served_model: str | None = None
    tokenizer: str | None = None
    model: str | None = None
    engine_args: list[str] | None = None
    balance: str | None = None
    seed: int = 0


def prepare(req: ValidationRequest) -> tuple[Claim, list[Any], Path]:
    """Everything checked before a server starts: the claim, the studies to run (the fleet; one replica fewer),
    the validation directory."""
    if req.urls and req.replicas is not None:
        raise ConfigError("give --url (a running fleet) or --replicas (replicas serve-bench launches), not both")
    if req.replicas is not None and req.replicas < 1:
        raise ConfigError(f"--replicas must be at least 1, not {req.replicas}")
    if req.duration_s <= 0:
        raise ConfigError(f"--duration must be positive, not {req.duration_s:g}")
    if any(m <= 0 for m in req.search):
        raise ConfigError("--search multipliers must be positive")
    claim = read_claim(req.report, req.checkpoint)
    n = len(req.urls) if req.urls else (claim.replicas if req.replicas is None else req.replicas)
    if req.fewer and n < 2:
        raise ConfigError("--fewer runs one replica fewer: a fleet of one has none to spare")
    out = Path(req.out) if req.out is not None else (claim.run or claim.report.parent) / VALIDATIONS / (
        dt.datetime.now().strftime("%Y%m%d-%H%M%S") + f"-{claim.checkpoint}")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot create the validation directory {out}: {err.strerror}",
                          hint="choose a writable --out") from None
    common = dict(served_model=req.served_model, tokenizer=req.tokenizer, model=req.model, balance=req.balance,
                  engine_args=req.engine_args)
    fleet_profile = write_profile(profile_data(claim, n, duration_s=req.duration_s, search=req.search,
                                               seed=req.seed), out / "profile-fleet.yaml")
    studies = [fleet_study(claim, name=f"fleet-{n}", profile=fleet_profile, out_dir=out, urls=list(req.urls),
                           replicas=n, **common)]
    if req.fewer:
        fewer_profile = write_profile(profile_data(claim, n - 1, duration_s=req.duration_s, search=(),
                                                   seed=req.seed), out / "profile-fewer.yaml")
        studies.append(fleet_study(claim, name=f"fleet-{n - 1}", profile=fewer_profile, out_dir=out,
                                   urls=list(req.urls)[:-1], replicas=n - 1, **common))
    return claim, studies, out


def validate_plan(req: ValidationRequest, events: Any = None) -> tuple[Validation, Path]:
    """Run the replay(s) and judge them; ``validation.json`` and ``validation.md`` are written in the
    validation directory, which is returned beside the verdict."""
    from serve_bench.pipeline import run_study  # torch and vLLM's world: not for --help

    claim, studies, out = prepare(req)
    outcomes = []
    for study in studies:
        outcome = run_study(study, events)
        outcomes.append(outcome)
        if outcome.problems and not outcome.rows:
            raise ServerError(f"the fleet could not be loaded: {'; '.join(outcome.problems)}")
    fleet_study_ = studies[0]
    urls = fleet_study_.server.urls or _launched_urls(outcomes[0].run_dir)
    result = judge(claim, outcomes[0].run_dir, urls, not fleet_study_.server.urls,
                   len(fleet_study_.server.urls) or fleet_study_.server.replicas,
                   outcomes[1].run_dir if len(outcomes) > 1 else None)
    for outcome in outcomes:
        result.notes += [f"{outcome.run_dir.name}: {p}" for p in outcome.problems]
    write_json(out / VALIDATION_JSON, to_dict(result))
    write_text(out / VALIDATION_MD, markdown(result))
    return result, out


def _launched_urls(run_dir: Path) -> list[str]:
    for ck in sorted(run_dir.glob("*/checkpoint.json")):
        replicas = read_json(ck).get("replicas") or []
        if replicas:
            return [r["url"] for r in replicas]
    return []
