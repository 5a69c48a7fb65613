"""The engine's stated costs: what its truth is computed from."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from serve_bench.validation import Strict


class EngineParams(Strict):
    model_config = ConfigDict(frozen=True)

    step_ms: float = Field(10.0, ge=0, description="fixed cost of one engine step")
    per_seq_ms: float = Field(1.0, ge=0, description="added per sequence in the step's batch (decoding or prefilling)")
    per_prefill_token_ms: float = Field(0.0, ge=0, description="added per prompt token prefilled in the step")
    max_num_seqs: int = Field(256, ge=1, description="running slots; requests beyond wait in a FCFS queue")
    max_prefill_tokens: int | None = Field(None, ge=1, description="prompt tokens admitted per step (the first "
                                                                    "request always fits); None: no limit")
    jitter: float = Field(0.0, ge=0, le=1, description="each step's cost × exp(jitter·Z − jitter²/2), Z ~ N(0, 1)")
    seed: int = Field(0, description="seed of the jitter")

    def describe(self) -> str:
        budget = f", {self.max_prefill_tokens} prefill tokens/step" if self.max_prefill_tokens else ""
        return (f"step {self.step_ms:g} ms + {self.per_seq_ms:g} ms/sequence + {self.per_prefill_token_ms:g} "
                f"ms/prefill token, {self.max_num_seqs} slots{budget}, jitter {self.jitter:g}")

    def cli_args(self) -> list[str]:
        """The server's command line for these parameters (``python -m serve_bench.simengine``)."""
        out = []
        for name, value in self.model_dump().items():
            if value is not None:
                out += [f"--{name.replace('_', '-')}", str(value)]
        return out
