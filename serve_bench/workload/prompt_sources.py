"""Which prompt set a profile's ``prompts`` entry names, built (synthetic, a JSONL or CSV file, a trace, with
conversations on top), and the same set rebuilt from its spec in another process (the prompt feed, a worker).

Apart from prompts.py so that the prompt sets (prompts.py, datasets.py, traces.py, conversations.py) import
only their base, and this module imports them all: no import circle.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from serve_bench.errors import ConfigError
from serve_bench.workload.conversations import ConversationPromptSet, with_conversations
from serve_bench.workload.datasets import FilePromptSet
from serve_bench.workload.lengths import LengthDist, LengthSampler
from serve_bench.workload.prefixes import SharedPrefix
from serve_bench.workload.prompts import Api, PromptSet, SyntheticPromptSet
from serve_bench.workload.traces import TracePromptSet


def JsonlPromptSet(path: Path | str, api: Api, field: str = "prompt") -> PromptSet:  # noqa: N802 - the former class
    """A JSONL file's prompts (datasets.FilePromptSet)."""
    return FilePromptSet(path, api, field, kind="jsonl")


def build_prompt_set(source: Any, *, model_path: Path | str, api: Api, input_tokens: int, seed: int = 0,
                     salt: str = "", input_lengths: LengthDist | None = None, output_lengths: LengthDist | None = None,
                     shared_prefix: Any = None) -> PromptSet:
    """From a profile's ``prompts`` entry (its ``kind``: synthetic, jsonl, csv or trace) and its workload."""
    def file_set() -> PromptSet:
        got = FilePromptSet(source.path, api, source.field, output_tokens_field=source.output_tokens_field,
                            exhaust=source.exhaust, kind=source.kind)
        if output_lengths is not None:
            got.output = LengthSampler(output_lengths, seed, f"output:{salt}")
        return got

    builders: dict[str, Callable[[], PromptSet]] = {
        "synthetic": lambda: SyntheticPromptSet(model_path, api, input_tokens, seed, salt, input_lengths=input_lengths,
                                                output_lengths=output_lengths, shared_prefix=shared_prefix),
        "jsonl": file_set,
        "csv": file_set,
        "trace": lambda: TracePromptSet(model_path, api, source.path, source.format,
                                        block_tokens=source.block_tokens, seed=seed, salt=salt),
    }
    if source.kind not in builders:
        raise ConfigError(f"unknown prompt source kind {source.kind!r}; valid: {sorted(builders)}")
    return builders[source.kind]()


def profile_prompt_set(profile: Any, model_path: Path | str) -> PromptSet:
    """A profile's prompt set: its source, lengths, shared prefix and conversations, salted with its name."""
    return with_conversations(build_prompt_set(
        profile.prompts, model_path=model_path, api=profile.api, input_tokens=profile.input_tokens, seed=profile.seed,
        salt=profile.name, input_lengths=profile.input_lengths, output_lengths=profile.output_lengths,
        shared_prefix=profile.shared_prefix), profile)


def prompt_set_from_spec(spec: dict[str, Any]) -> PromptSet:
    """The set :meth:`PromptSet.spec` describes (in the prompt feed's child process)."""
    kind = spec["kind"]
    if kind == "conversation":
        return ConversationPromptSet(prompt_set_from_spec(spec["inner"]),
                                     TypeAdapter(LengthDist).validate_python(spec["turns"]), spec["think_time_s"],
                                     spec["seed"], spec["salt"])
    if kind == "synthetic":
        dist = TypeAdapter(LengthDist | None)
        prefix = spec.get("shared_prefix")
        return SyntheticPromptSet(spec["model_path"], spec["api"], spec["input_tokens"], spec["seed"], spec["salt"],
                                  input_lengths=dist.validate_python(spec.get("input_lengths")),
                                  output_lengths=dist.validate_python(spec.get("output_lengths")),
                                  shared_prefix=SharedPrefix.model_validate(prefix) if prefix else None)
    if kind == "trace":
            return TracePromptSet(spec["model_path"], spec["api"], spec["path"], spec["format"],
                              block_tokens=spec["block_tokens"], seed=spec["seed"], salt=spec["salt"])
    return FilePromptSet(spec["path"], spec["api"], spec["field"], output_tokens_field=spec.get("output_tokens_field"),
                         exhaust=spec.get("exhaust", "cycle"), kind=kind)
