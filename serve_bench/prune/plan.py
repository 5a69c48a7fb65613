"""How many neurons to keep (k) for a requested pruning fraction or expansion ratio."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

from serve_bench.errors import ConfigError

DIVISORS = (0, 32, 64, 128, 256)
# 128: the alignment that 4-bit (Marlin/AWQ/GPTQ) and FP8 block kernels want per
# shard, and a multiple of every smaller alignment; see the README.
DEFAULT_DIVISOR = 128


@dataclass(frozen=True)
class Target:
    """What the user asked for: exactly one of ``prune`` or ``expansion_ratio``."""

    prune: float | None = None
    expansion_ratio: float | None = None

    @property
    def label(self) -> str:
        if self.prune is not None:
            return f"p{_pct(self.prune)}"
        return f"er{self.expansion_ratio:g}"


@dataclass(frozen=True)
class Plan:
    target: Target
    intermediate_size: int
    hidden_size: int
    divisor: int
    k_unrounded: int
    k: int
    warnings: list[str] = field(default_factory=list)

    @property
    def realised_prune(self) -> float:
        return 1 - self.k / self.intermediate_size

    @property
    def expansion_ratio(self) -> float:
        return self.k / self.hidden_size

    @property
    def original_expansion_ratio(self) -> float:
        return self.intermediate_size / self.hidden_size


def _pct(p: float) -> str:
    pct = p * 100
    return f"{pct:.0f}" if math.isclose(pct, round(pct)) else f"{pct:g}".replace(".", "_")


def k_for_fraction(intermediate: int, p: float) -> int:
    """k = I - min(floor(p * I), I - 1), with p read exactly as written (0.3 is 3/10)."""
    if not 0 <= p < 1:
        raise ConfigError(f"pruning fraction {p} is outside [0, 1)", hint="--prune 0.4 removes 40% of neurons")
    removed = math.floor(Fraction(str(p)) * intermediate)
    return intermediate - min(removed, intermediate - 1)


def round_to_divisor(k: int, divisor: int, intermediate: int) -> int:
    """Nearest multiple of ``divisor`` (halves round up), kept within [divisor, I]."""
    if divisor == 0:
        return k
    if divisor not in DIVISORS:
        raise ConfigError(f"divisor {divisor} is not one of {', '.join(map(str, DIVISORS))}")
    rounded = math.floor(k / divisor + 0.5) * divisor
    return min(max(rounded, divisor), intermediate) if intermediate >= divisor else k


def plan(target: Target, intermediate: int, hidden: int, divisor: int = DEFAULT_DIVISOR) -> Plan:
    if (target.prune is None) == (target.expansion_ratio is None):
        raise ConfigError("give a pruning fraction or an expansion ratio, not both")
    if target.prune is not None:
        k0 = k_for_fraction(intermediate, target.prune)
    else:
        r = target.expansion_ratio
        assert r is not None
        if not r > 0:
            raise ConfigError(f"expansion ratio {r} must be positive")
        k0 = round(Fraction(str(r)) * hidden)
        if k0 < 1:
            raise ConfigError(f"expansion ratio {r} keeps k={k0} neurons of hidden size {hidden}; k must be at least 1")
        if k0 > intermediate:
            raise ConfigError(
                f"expansion ratio {r} asks for k={k0}, more than the model's {intermediate} neurons "
                f"(its ratio is {intermediate / hidden:.3g}); pruning cannot widen an MLP")
    k = round_to_divisor(k0, divisor, intermediate)
    return Plan(target, intermediate, hidden, divisor, k0, k, serving_warnings(k))


def serving_warnings(k: int) -> list[str]:
    """Kernel and parallelism constraints that this width breaks, per GPU shard."""
    out = []
    if k % 2:
        out.append(f"k={k} is odd: tensor parallelism cannot split it evenly across 2 or more GPUs")
    for tp in (1, 2, 4, 8):
        if k % tp:
            break
        shard = k // tp
        where = "" if tp == 1 else f" per GPU at tensor parallel {tp}"
        if shard % 16:
            out.append(f"k={k} gives {shard} neurons{where}, not a multiple of 16: FP8 kernels will refuse it")
            break
        if shard % 128:
            out.append(f"k={k} gives {shard} neurons{where}, not a multiple of 128: "
                       "4-bit (GPTQ/AWQ Marlin) kernels will refuse it")
            break
    return out
