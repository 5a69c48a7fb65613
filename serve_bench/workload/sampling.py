"""Sampling parameters a profile sends with every request: the OpenAI fields and vLLM's extra ones.

A profile's ``sampling:`` section (``vllm bench serve``'s ``--temperature``, ``--top-p``, ``--top-k`` and
the like) goes into every request body as it is; ``extra_body`` carries any other field the server takes.
Unset fields are not sent, so the server's own defaults (the model's generation config, for vLLM) apply.
The fields the load generator owns (the model, the prompt, ``max_tokens``, streaming, ``ignore_eos``) cannot
be set here: they are the profile's, and a clash is an error, not a silent override.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from serve_bench.validation import Strict

# Set by the load generator from the profile and its prompts; sampling may not override them.
OWNED_FIELDS = ("model", "messages", "prompt", "max_tokens", "max_completion_tokens", "stream", "stream_options",
                "ignore_eos", "n")


class Sampling(Strict):
    temperature: float | None = Field(None, ge=0, description="0: greedy")
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=-1, description="vLLM: -1 or 0 considers every token")
    min_p: float | None = Field(None, ge=0, le=1)
    seed: int | None = Field(None, description="the server's sampling seed (per request)")
    stop: list[str] | None = Field(None, description="stop sequences (with ignore_eos they still end an answer)")
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    repetition_penalty: float | None = Field(None, gt=0, description="vLLM's; 1: none")
    extra_body: dict[str, Any] = Field(default_factory=dict, description="any other request field, as sent")

    @field_validator("extra_body")
    @classmethod
    def _not_owned(cls, v: dict[str, Any]) -> dict[str, Any]:
        owned = sorted(set(v) & set(OWNED_FIELDS))
        if owned:
            raise ValueError(f"{', '.join(owned)} cannot be set in extra_body: the profile sets "
                             f"{'it' if len(owned) == 1 else 'them'} (input/output tokens, api, ignore_eos)")
        return v

    def body(self) -> dict[str, Any]:
        """The fields every request carries (empty: the server's defaults)."""
        named = self.model_dump(exclude={"extra_body"}, exclude_none=True)
        clash = sorted(set(named) & set(self.extra_body))
        if clash:
            raise ValueError(f"sampling: {', '.join(clash)} given both as a field and in extra_body")
        return {**named, **self.extra_body}
