"""Open-loop send schedules, precomputed and seeded.

A schedule is a sorted list of send offsets in seconds from the stage start,
the first at 0. Inter-arrival times are drawn per arrival process:

    poisson    exponential, mean 1/rate
    gamma      gamma with shape = burstiness and scale = 1/(rate·burstiness): mean 1/rate;
               burstiness 1 is Poisson, < 1 burstier, > 1 smoother (vLLM's convention)
    constant   exactly 1/rate apart

Bounded by a request count, a duration, or both (whichever comes first).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np

Arrivals = Literal["poisson", "gamma", "constant"]

_MAX_ARRIVALS = 10_000_000


def _poisson(rng: np.random.Generator, rate_rps: float, n: int, burstiness: float) -> np.ndarray:
    return rng.exponential(1.0 / rate_rps, n)


def _gamma(rng: np.random.Generator, rate_rps: float, n: int, burstiness: float) -> np.ndarray:
    return rng.gamma(burstiness, 1.0 / (rate_rps * burstiness), n)


def _constant(rng: np.random.Generator, rate_rps: float, n: int, burstiness: float) -> np.ndarray:
    return np.full(n, 1.0 / rate_rps)


ARRIVALS: dict[str, Callable[[np.random.Generator, float, int, float], np.ndarray]] = {
    "poisson": _poisson,
    "gamma": _gamma,
    "constant": _constant,
}


def build_schedule(arrivals: str, rate_rps: float, *, requests: int | None = None, duration_s: float | None = None,
                   seed: int = 0, burstiness: float = 1.0) -> list[float]:
    """Send offsets (s) from the stage start: ``requests`` of them, or all that fall before ``duration_s``."""
    if arrivals not in ARRIVALS:
        raise ValueError(f"unknown arrival process {arrivals!r}; valid: {sorted(ARRIVALS)}")
    if rate_rps <= 0 or burstiness <= 0:
        raise ValueError("rate_rps and burstiness must be > 0")
    if requests is None and duration_s is None:
        raise ValueError("a schedule needs requests, duration_s or both")
    draw = ARRIVALS[arrivals]
    rng = np.random.default_rng(seed)
    if requests is not None:
        n = requests
    else:
        assert duration_s is not None
        n = min(_MAX_ARRIVALS, int(duration_s * rate_rps * 1.5) + 16)
    if n <= 0:
        return []
    gaps = draw(rng, rate_rps, n, burstiness)
    offsets = np.concatenate(([0.0], np.cumsum(gaps[1:])))
    if duration_s is not None:
        while offsets[-1] < duration_s and requests is None and len(offsets) < _MAX_ARRIVALS:
            more = draw(rng, rate_rps, len(offsets), burstiness)
            offsets = np.concatenate((offsets, offsets[-1] + np.cumsum(more)))
        offsets = offsets[offsets < duration_s]
    return [float(x) for x in offsets]
