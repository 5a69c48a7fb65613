"""Load profiles: YAML stage tables, validated strictly.

The shipped profiles are the repository's ``load_profiles/*.yaml``, carried in
the wheel as package data (:mod:`serve_bench.assets`), so a plain ``pip install`` has them;
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
    replay        open loop at a trace's own send times (prompts: {kind: trace}), time-scaled by speed

The work per request is ``input_tokens``/``output_tokens``, or distributions
of them (``input_lengths``/``output_lengths``, lengths.py), optionally a
``shared_prefix`` (prefixes.py) and multi-turn ``conversation`` (conversations.py), with ``sampling``
parameters sent as they are (sampling.py); prompts are
synthetic, a JSONL or CSV file's rows (field mapping, cycle or stop when used
up), or a trace's token counts (traces.py).

Every stage is bounded by ``duration_s``, ``requests`` or both (whichever
comes first) and may override the profile's warm-up. Errors name the file and
the field path (``load_profiles/x.yaml: stages[1].rate_rps: ...``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import Field, PositiveFloat, PositiveInt, ValidationError, model_validator

from serve_bench.assets import LOAD_PROFILES, asset_dir
from serve_bench.errors import ConfigError
from serve_bench.validation import Strict, read_yaml, validation_messages
from serve_bench.workload.datasets import expand
from serve_bench.workload.lengths import LENGTH_KINDS, LengthDist
from serve_bench.workload.prefixes import SharedPrefix
from serve_bench.workload.sampling import Sampling

PROFILES_DIR = asset_dir(LOAD_PROFILES)
DEFAULT_PROFILE = "quick"


class Warmup(Strict):
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


class SyntheticPrompts(Strict):
    kind: Literal["synthetic"] = "synthetic"


class _FilePrompts(Strict):
    """Prompts from a file's rows (``$VARS`` and ``~`` expanded in the path: ``${SERVE_BENCH_DATA_DIR}/gsm8k/
    test.jsonl``); each request's answer length from ``output_tokens_field`` where the row has one."""

    path: Path
    field: str = "prompt"
    output_tokens_field: str | None = None
    exhaust: Literal["cycle", "stop"] = Field("cycle", description="when every row is used: start again "
                                              "(stated in the stage result), or end the stage")


class JsonlPrompts(_FilePrompts):
    kind: Literal["jsonl"]


class CsvPrompts(_FilePrompts):
    kind: Literal["csv"]


class TracePrompts(Strict):
    """A request trace's token counts (and Mooncake hash ids as shared prefix blocks): see traces.py."""

    kind: Literal["trace"]
    path: Path
    format: Literal["azure", "mooncake"]
    block_tokens: PositiveInt = Field(512, description="tokens per Mooncake hash id (its block size)")


PromptSource = Annotated[Union[SyntheticPrompts, JsonlPrompts, CsvPrompts, TracePrompts], Field(discriminator="kind")]
PROMPT_KINDS = ("synthetic", "jsonl", "csv", "trace")


class Conversation(Strict):
    """Multi-turn (conversations.py): each request index is a conversation of ``turns`` turns (a length
    distribution), each turn sending the whole history plus a new user message, ``think_time_s`` after a reply."""

    turns: LengthDist
    think_time_s: float = Field(0.0, ge=0)


class _Bounded(Strict):
    name: str | None = None
    duration_s: PositiveFloat | None = None
    requests: PositiveInt | None = None
    warmup: Warmup | None = None  # None: the profile's

    @model_validator(mode="after")
    def _bounded(self) -> _Bounded:
        if self.duration_s is None and self.requests is None:
            raise ValueError("a stage needs duration_s, requests or both")
        return self


class _OpenLoop(Strict):
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


class RampStage(Strict):
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


class ReplayStage(Strict):
    """Open loop at a trace's own send times (the profile's ``prompts: {kind: trace}``), ``speed`` times faster;
    bounded by the trace's end, and by ``duration_s`` / ``requests`` when given."""

    kind: Literal["replay"]
    name: str | None = None
    speed: PositiveFloat = Field(1.0, description="time scale: 2 replays the trace in half its time")
    duration_s: PositiveFloat | None = None
    requests: PositiveInt | None = None
    max_concurrency: PositiveInt = 256
    warmup: Warmup | None = None

    def default_name(self) -> str:
        return f"replay{self.speed:g}x"


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


Stage = Annotated[Union[ConcurrencyStage, RateStage, RampStage, SweepStage, LadderStage, ReplayStage],
                  Field(discriminator="kind")]
RunnableStage = ConcurrencyStage | RateStage | RampStage | SweepStage | ReplayStage
STAGE_KINDS = ("concurrency", "rate", "ramp", "sweep", "ladder", "replay")


class LoadProfile(Strict):
    name: str
    description: str = ""
    api: Literal["chat", "completions"] = "chat"
    input_tokens: PositiveInt | None = Field(None, description="fixed prompt tokens; with input_lengths, "
                                                                "filled with its mean")
    output_tokens: PositiveInt | None = Field(None, description="fixed answer tokens (max_tokens); with "
                                                                  "output_lengths, filled with its mean")
    input_lengths: LengthDist | None = Field(None, description="a distribution of prompt tokens (lengths.py)")
    output_lengths: LengthDist | None = Field(None, description="a distribution of answer tokens (lengths.py)")
    shared_prefix: SharedPrefix | None = None
    conversation: Conversation | None = None
    ignore_eos: bool = True
    sampling: Sampling = Field(default_factory=Sampling, description="temperature, top_p, top_k, stop… sent with "
                                                                     "every request (sampling.py); unset: the "
                                                                     "server's defaults")
    seed: int = 0
    warmup: Warmup = Field(default_factory=Warmup)
    prompts: PromptSource = Field(default_factory=SyntheticPrompts)
    timeout_s: PositiveFloat = Field(300.0, description="per request, from send to the end of the stream")
    stages: list[Stage] = Field(min_length=1)

    @model_validator(mode="after")
    def _lengths(self) -> LoadProfile:
        for name in ("input", "output"):
            dist = getattr(self, f"{name}_lengths")
            if getattr(self, f"{name}_tokens") is None:
                if dist is None:
                    raise ValueError(f"give {name}_tokens (a number) or {name}_lengths (a distribution)")
                setattr(self, f"{name}_tokens", max(1, round(dist.mean())))
        if any(isinstance(s, ReplayStage) for s in self.stages) and self.prompts.kind != "trace":
            raise ValueError("a replay stage needs the profile's prompts from a trace (prompts: {kind: trace, "
                             "path: ..., format: azure | mooncake})")
        if self.conversation is not None and (self.api != "chat" or self.prompts.kind == "trace"):
            raise ValueError("conversations need api: chat, and synthetic or file prompts")
        self.sampling.body()  # a field given twice (named and in extra_body) is refused here, not per request
        return self

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
    profile = profile_from_data(_beside(read_yaml(path, shown), path.parent), source=shown)
    if isinstance(profile.prompts, _FilePrompts):  # before any server starts, as a trace file is
        prompts_file = expand(profile.prompts.path)
        if not prompts_file.is_file():
            raise ConfigError(f"{shown}: prompts.path: {prompts_file} is not a file")
    return profile


def _beside(data: Any, directory: Path) -> Any:
    """Relative prompts, lengths and turns paths not found from the working directory are looked up beside the
    profile. On the raw data, before validation: an empirical distribution reads its file as it is validated."""
    def moved(node: Any) -> Any:
        if not isinstance(node, dict) or not isinstance(node.get("path"), str):
            return node
        text = node["path"]
        path = Path(text)
        if path.is_absolute() or "$" in text or path.exists() or not (directory / path).exists():
            return node
        return {**node, "path": str(directory / path)}

    if not isinstance(data, dict):
        return data
    out = {**data, **{key: moved(data[key]) for key in ("prompts", "input_lengths", "output_lengths") if key in data}}
    conversation = data.get("conversation")
    if isinstance(conversation, dict) and "turns" in conversation:
        out["conversation"] = {**conversation, "turns": moved(conversation["turns"])}
    return out


def profile_from_data(data: Any, source: str = "<profile>") -> LoadProfile:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a profile is a mapping (name, input_tokens, stages…), got {type(data).__name__}")
    missing = [f"{source}: {n}_tokens: Field required (or give {n}_lengths, a distribution)"
               for n in ("input", "output") if data.get(f"{n}_tokens") is None and data.get(f"{n}_lengths") is None]
    try:
        profile = LoadProfile.model_validate(data)
    except ValidationError as err:
        # pydantic puts the union tag (stage kind, prompt kind) in the location; drop it
        message = validation_messages(err, source, skip=(*STAGE_KINDS, *PROMPT_KINDS, *LENGTH_KINDS))
        message = "\n".join([*missing, *(line for line in message.splitlines() if "_lengths (a distribution)"
                                          not in line)])
        hint = None
        for e in err.errors():
            if e["type"] == "union_tag_invalid":
                top = e["loc"][0] if e["loc"] else ""
                kinds = {"prompts": PROMPT_KINDS, "input_lengths": LENGTH_KINDS, "output_lengths": LENGTH_KINDS,
                         "conversation": LENGTH_KINDS}.get(str(top), STAGE_KINDS)
                what = "stage" if kinds is STAGE_KINDS else ("prompt source" if kinds is PROMPT_KINDS else "length")
                hint = f"valid {what} kinds: {', '.join(kinds)}"
        raise ConfigError(message, hint=hint) from None
    return profile


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        try:
            return str(path.resolve().relative_to(PROFILES_DIR.parents[1]))
        except ValueError:
            return str(path)
