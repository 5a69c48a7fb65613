"""Neuron importance criteria for GLU-MLP width pruning.

Each criterion maps the gate and up projection weights of one layer, both
shaped [intermediate, hidden] (row i belongs to neuron i), to one score per
neuron; higher means keep. Scores are computed in float32.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from serve_bench.errors import ConfigError

if TYPE_CHECKING:
    import torch

# torch is imported where a score is computed, not here: a study names criteria without pruning anything
Criterion = Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]
CRITERIA: dict[str, Criterion] = {}
ALIASES = {"maw": "ppm"}
DEFAULT = "ppm"


def register(name: str) -> Callable[[Criterion], Criterion]:
    def add(fn: Criterion) -> Criterion:
        CRITERIA[name] = fn
        return fn
    return add


def _peak_to_peak(w: torch.Tensor) -> torch.Tensor:
    return w.amax(dim=1) + w.amin(dim=1).abs()


@register("ppm")
def ppm(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """Peak-to-Peak Magnitude (the paper's "Maximum Absolute Weight"):
    (max G_i + |min G_i|) + (max U_i + |min U_i|)."""
    return _peak_to_peak(gate.float()) + _peak_to_peak(up.float())


@register("maxabs")
def maxabs(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """The literal maximum absolute weight: max|G_i| + max|U_i|."""
    return gate.float().abs().amax(dim=1) + up.float().abs().amax(dim=1)


@register("vow")
def vow(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """Variance of weights: var(G_i) + var(U_i) (population variance)."""
    return gate.float().var(dim=1, correction=0) + up.float().var(dim=1, correction=0)


@register("pon")
def pon(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """Product of norms: ||G_i||_1 * ||U_i||_1."""
    return gate.float().abs().sum(dim=1) * up.float().abs().sum(dim=1)


@register("l2")
def l2(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """Sum of L2 norms: ||G_i||_2 + ||U_i||_2."""
    import torch

    return torch.linalg.vector_norm(gate.float(), dim=1) + torch.linalg.vector_norm(up.float(), dim=1)


def get(name: str) -> tuple[str, Criterion]:
    key = ALIASES.get(name.lower(), name.lower())
    if key not in CRITERIA:
        valid = ", ".join(sorted([*CRITERIA, *ALIASES]))
        raise ConfigError(f"unknown pruning criterion {name!r}; valid: {valid}")
    return key, CRITERIA[key]


def keep_indices(scores: torch.Tensor, k: int) -> torch.Tensor:
    """The k highest-scoring neurons, in their original order. Ties go to the
    lower index, so the result is deterministic."""
    import torch

    order = torch.argsort(scores, descending=True, stable=True)
    return torch.sort(order[:k]).values
