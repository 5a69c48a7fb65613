"""The engine's stated costs: everything its truth is computed from."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class EngineParams(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    step_ms: float = Field(10.0, ge=0, description="fixed cost of one engine step")
    per_seq_ms: float = Field(1.0, ge=0, description="added per sequence in the step's batch (decoding or prefilling)")
    per_prefill_token_ms: float = Field(0.0, ge=0, description="added per prompt token prefilled in the step")
    max_num_seqs: int = Field(256, ge=1, description="running slots; requests beyond wait in a FCFS queue")
    max_prefill_tokens: int | None = Field(None, ge=1, description="prompt tokens admitted per step (at least one "
                                                                    "request is always admitted when a slot is "
                                                                    "free); None: no limit")
    jitter: float = Field(0.0, ge=0, le=1, description="each step's cost is multiplied by exp(jitter·Z − jitter²/2), "
                                                       "Z standard normal (mean factor 1)")
    seed: int = Field(0, description="seed of the jitter")

    def describe(self) -> str:
        """One line for people: 'step 10 ms + 1 ms/sequence + 0 ms/prefill token, 256 slots, jitter 0'."""
        budget = f", {self.max_prefill_tokens} prefill tokens/step" if self.max_prefill_tokens is not None else ""
        return (f"step {self.step_ms:g} ms + {self.per_seq_ms:g} ms/sequence + {self.per_prefill_token_ms:g} "
                f"ms/prefill token, {self.max_num_seqs} slots{budget}, jitter {self.jitter:g}")

    def cli_args(self) -> list[str]:
        """The server's command-line options for these parameters (``python -m serve_bench.simengine``)."""
        out: list[str] = []
        for name, value in self.model_dump().items():
            if value is not None:
                out += [f"--{name.replace('_', '-')}", repr(value)]  # repr: a float's exact digits
        return out
