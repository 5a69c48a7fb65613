"""Load profiles: YAML stage tables, validated strictly.

The shipped profiles are package data (``serve_bench/load_profiles/*.yaml``),
found through :mod:`importlib.resources`, so a plain ``pip install`` has them;
any other YAML path works as a profile too.

A profile fixes the work (API, input and output token counts, ``ignore_eos``,
prompt source, seed) and lists stages. Each stage is a ``kind`` with its own
model (the registry is the discriminated union ``Stage``; an unknown kind
lists the valid ones):

    concurrency   closed loop: N users, no think time
    rate          open loop: a precomputed schedule (poisson | gamma | constant) at rate_rps
    ramp          users from start_users to end_users over duration_s
    sweep         synchronous (1 user), max throughput (max_users), then K open-loop rates between
    ladder        shorthand that expands to several concurrency or rate stages

Every stage is bounded by ``duration_s``, ``requests`` or both (whichever
comes first) and may override the profile's warm-up. Errors name the file and
the field path (``load_profiles/x.yaml: stages[1].rate_rps: ...``).
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, ValidationError, model_validator

from serve_bench.errors import ConfigError
from serve_bench.validation import read_yaml, validation_messages

PROFILES_DIR = Path(str(resources.files("serve_bench") / "load_profiles"))
DEFAULT_PROFILE = "quick"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Warmup(_Strict):
    """Left out of statistics (kept on disk): the first ``requests`` sent, or those sent in the first ``duration_s``.

    In a closed-loop stage run in one process, measured requests are held until
    every warm-up request has finished (as AIPerf's warm-up count does), so no
    measured request meets a cold server; with workers, or in open loop, the
    warm-up requests are only flagged, since holding sends would break the
    schedule or need a global barrier.
    """

    duration_s: float = Field(0.0, ge=0)
    requests: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _one(self) -> Warmup:
        if self.duration_s and self.requests:
            raise ValueError("give warm-up as duration_s or requests, not both")
        return self


class SyntheticPrompts(_Strict):
    kind: Literal["synthetic"] = "synthetic"


class JsonlPrompts(_Strict):
    kind: Literal["jsonl"]
    path: Path
    field: str = "prompt"


PromptSource = Annotated[Union[SyntheticPrompts, JsonlPrompts], Field(discriminator="kind")]


class _Bounded(_Strict):
    name: str | None = None
    duration_s: PositiveFloat | None = None
    requests: PositiveInt | None = None
    warmup: Warmup | None = None  # None: the profile's

    @model_validator(mode="after")
    def _bounded(self) -> _Bounded:
        if self.duration_s is None and self.requests is None:
            raise ValueError("a stage needs duration_s, requests or both")
        return self


class _OpenLoop(_Strict):
    arrivals: Literal["poisson", "gamma", "constant"] = "poisson"
    burstiness: PositiveFloat = 1.0
    max_concurrency: PositiveInt = 256

    @model_validator(mode="after")
    def _burst(self) -> _OpenLoop:
        if self.burstiness != 1.0 and self.arrivals != "gamma":
            raise ValueError("burstiness applies to arrivals: gamma only")
        return self


class ConcurrencyStage(_Bounded):
    kind: Literal["concurrency"]
    users: PositiveInt

    def default_name(self) -> str:
        return f"c{self.users}"


class RateStage(_Bounded, _OpenLoop):
    kind: Literal["rate"]
    rate_rps: PositiveFloat

    def default_name(self) -> str:
        return f"r{self.rate_rps:g}"


class RampStage(_Strict):
    kind: Literal["ramp"]
    name: str | None = None
    start_users: PositiveInt
    end_users: PositiveInt
    duration_s: PositiveFloat
    warmup: Warmup | None = None

    def default_name(self) -> str:
        return f"ramp{self.start_users}-{self.end_users}"


class SweepStage(_Bounded, _OpenLoop):
    """GuideLLM-style sweep: each sub-stage runs for this stage's duration_s / requests."""

    kind: Literal["sweep"]
    rates: PositiveInt = Field(5, description="how many open-loop rates between the synchronous and max rate")
    max_users: PositiveInt = Field(64, description="closed-loop users for the max-throughput measurement")

    def default_name(self) -> str:
        return "sweep"


class LadderStage(_Bounded, _OpenLoop):
    kind: Literal["ladder"]
    of: Literal["concurrency", "rate"]
    values: list[PositiveFloat] = Field(min_length=1)

    @model_validator(mode="after")
    def _ints(self) -> LadderStage:
        if self.of == "concurrency" and any(v != int(v) for v in self.values):
            raise ValueError("a concurrency ladder takes whole numbers of users")
        return self

    def expand(self) -> list[ConcurrencyStage | RateStage]:
        common = {"duration_s": self.duration_s, "requests": self.requests, "warmup": self.warmup}
        if self.of == "concurrency":
            return [ConcurrencyStage(kind="concurrency", users=int(v), **common) for v in self.values]
        return [RateStage(kind="rate", rate_rps=v, arrivals=self.arrivals, burstiness=self.burstiness,
                          max_concurrency=self.max_concurrency, **common) for v in self.values]


Stage = Annotated[Union[ConcurrencyStage, RateStage, RampStage, SweepStage, LadderStage], Field(discriminator="kind")]
RunnableStage = ConcurrencyStage | RateStage | RampStage | SweepStage
STAGE_KINDS = ("concurrency", "rate", "ramp", "sweep", "ladder")


class LoadProfile(_Strict):
    name: str
    description: str = ""
    api: Literal["chat", "completions"] = "chat"
    input_tokens: PositiveInt
    output_tokens: PositiveInt
    ignore_eos: bool = True
    seed: int = 0
    warmup: Warmup = Field(default_factory=Warmup)
    prompts: PromptSource = Field(default_factory=SyntheticPrompts)
    timeout_s: PositiveFloat = Field(300.0, description="per request, from send to the end of the stream")
    stages: list[Stage] = Field(min_length=1)

    def expanded_stages(self) -> list[RunnableStage]:
        """Ladders expanded; every stage named (unique) and given its warm-up."""
        out: list[RunnableStage] = []
        seen: dict[str, int] = {}
        for stage in self.stages:
            for s in stage.expand() if isinstance(stage, LadderStage) else [stage]:
                base = s.name or s.default_name()
                seen[base] = seen.get(base, 0) + 1
                name = base if seen[base] == 1 else f"{base}-{seen[base]}"
                out.append(s.model_copy(update={"name": name, "warmup": s.warmup or self.warmup}))
        return out


# -- finding and loading --------------------------------------------------------------------------------------------

def list_profiles(directory: Path | None = None) -> list[str]:
    directory = directory or PROFILES_DIR
    return sorted(p.stem for p in directory.glob("*.yaml")) if directory.is_dir() else []


def find_profile(name_or_path: str | os.PathLike[str], directory: Path | None = None) -> Path:
    """A profile's file: an existing path as given, or a shipped profile's name."""
    directory = directory or PROFILES_DIR
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    if path.is_file():
        return path
    candidate = directory / f"{text}.yaml"
    if "/" not in text and not text.endswith((".yaml", ".yml")) and candidate.is_file():
        return candidate
    names = ", ".join(list_profiles(directory)) or "(none)"
    raise ConfigError(f"no load profile {text!r}: not a file, and not a name in {directory}",
                      hint=f"available profiles: {names}")


def load_profile(name_or_path: str | os.PathLike[str] = DEFAULT_PROFILE, directory: Path | None = None) -> LoadProfile:
    """Find, parse and validate a profile; any problem is a ConfigError naming the file and the field."""
    path = find_profile(name_or_path, directory)
    shown = _shown(path)
    return profile_from_data(read_yaml(path, shown), source=shown)


def profile_from_data(data: Any, source: str = "<profile>") -> LoadProfile:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a profile is a mapping (name, input_tokens, stages…), got {type(data).__name__}")
    try:
        return LoadProfile.model_validate(data)
    except ValidationError as err:
        # pydantic puts the union tag (stage kind, prompt kind) in the location; drop it
        message = validation_messages(err, source, skip=(*STAGE_KINDS, "synthetic", "jsonl"))
        about_kind = any(e["type"] == "union_tag_invalid" for e in err.errors())
        hint = f"valid stage kinds: {', '.join(STAGE_KINDS)}" if about_kind else None
        raise ConfigError(message, hint=hint) from None


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        try:
            return str(path.resolve().relative_to(PROFILES_DIR.parents[1]))
        except ValueError:
            return str(path)
