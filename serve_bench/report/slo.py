"""The highest load that meets the SLOs, interpolated between stages, with a bootstrap confidence interval.

Constraints, each checked per stage on the raw records (definitions in :mod:`serve_bench.load.metrics`):

    <metric> at the SLO percentile  ≤ its limit        e.g. p99 TTFT ≤ 1000 ms; ITL is the pooled gaps
    SLO attainment                  ≥ min_attainment   good / attempted, failed requests count as not good

Along the stages of one load curve (sorted by load), a constraint's boundary is the first stage that
misses it, linearly interpolated against the last one that met it; the checkpoint's answer is the lowest
boundary, and that constraint *binds*. Request rate and concurrency at the boundary are interpolated
between the same two stages. When every stage meets every constraint the answer is a lower bound (the
highest load tested); when the lowest stage misses one there is no answer.

Confidence interval: percentile bootstrap. Each stage's requests are resampled with replacement
(independently per stage and per metric; ITL resamples pooled gaps; attainment resamples good/not-good
outcomes), the boundary is recomputed, and the interval is the central ``confidence`` share of the
boundaries. Stage throughputs are held at their measured values. Fixed seed: the same run gives the same
interval.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from serve_bench.load.metrics import PERCENTILE_METHOD, good_mask, percentile_label
from serve_bench.load.metrics import percentile as percentile_of
from serve_bench.report.inputs import StageData

ATTAINMENT = "slo_attainment"
_ARRAY = {"ttft_ms": "ttft", "tpot_ms": "tpot", "e2el_ms": "e2el", "ntpot_ms": "ntpot", "itl_ms": "itl"}
WITHIN, ABOVE, BELOW = "within", "above", "below"


@dataclass
class Constraint:
    name: str  # "p99 ttft_ms" or "slo_attainment"
    limit: float
    upper: bool  # True: value ≤ limit; False: value ≥ limit
    values: list[float | None]  # per stage, in the curve's order
    boundary_load: float | None
    status: str  # within / above (never missed) / below (missed at the lowest load)


@dataclass
class SloCapacity:
    method: str
    axis: str  # concurrency or rate
    stages: list[str]
    samples: list[int]  # attempted requests per stage
    constraints: list[Constraint]
    status: str
    binding: str | None
    load: float | None
    rate_rps: float | None
    concurrency: float | None
    ci_rate_rps: tuple[float | None, float | None] = (None, None)
    ci_load: tuple[float | None, float | None] = (None, None)
    ci_censored: str | None = None  # "upper": the upper end is "at least"; "lower": the lower end is "below"
    notes: list[str] = field(default_factory=list)


def stage_constraint_values(stage: StageData, slos_ms: Mapping[str, float], percentile: float,
                            min_attainment: float | None) -> dict[str, float | None]:
    """Each constraint's value at one stage (metric percentiles in ms; attainment as a share)."""
    out: dict[str, float | None] = {}
    for metric in slos_ms:
        value = percentile_of(_metric_values(stage, metric), percentile)
        out[_name(metric, percentile)] = None if value is None else value * 1000.0
    if min_attainment is not None:
        out[ATTAINMENT] = _good(stage, slos_ms) / stage.attempted if stage.attempted else None
    return out


def slo_capacity(curve: Sequence[StageData], slos_ms: Mapping[str, float], *, percentile: float = 99.0,
                 min_attainment: float | None = 0.95, resamples: int = 1000, confidence: float = 0.95,
                 seed: int = 0) -> SloCapacity:
    """The highest load of ``curve`` (usable stages of one profile and load axis) meeting the SLOs."""
    curve = sorted(curve, key=lambda s: s.load)  # type: ignore[arg-type, return-value]
    loads = np.array([s.load for s in curve], dtype=float)
    rates = np.array([s.request_rate_rps or 0.0 for s in curve], dtype=float)
    conc = np.array([s.concurrency or 0.0 for s in curve], dtype=float)
    point = [stage_constraint_values(s, slos_ms, percentile, min_attainment) for s in curve]
    names = list(point[0]) if point else []
    limits = {_name(m, percentile): (float(v), True) for m, v in slos_ms.items()}
    if min_attainment is not None:
        limits[ATTAINMENT] = (float(min_attainment), False)
    notes: list[str] = []
    constraints: list[Constraint] = []
    point_loads = []
    for name in names:
        values = [p[name] for p in point]
        if all(v is None for v in values):
            notes.append(f"{name}: no samples at any stage; not checked")
            continue
        limit, upper = limits[name]
        arr = np.array([[np.nan if v is None else v for v in values]])
        b, status = _boundary(arr, loads, limit, upper)
        missed = [v is not None and (v > limit if upper else v < limit) for v in values]
        if any(missed) and not missed[-1]:
            first = missed.index(True)
            notes.append(f"{name} is missed at {curve[first].name} but met again at a higher load (noise, or "
                         f"something else running then): the boundary is taken at the first miss")
        constraints.append(Constraint(name, limit, upper, values, None if status[0] == BELOW else float(b[0]),
                                      status[0]))
        point_loads.append(b)
    method = (f"highest load meeting {', '.join(names) or 'no constraint'}, linear interpolation between "
              f"stages; {confidence:.0%} percentile-bootstrap interval, {resamples} resamples of the requests "
              f"of each stage, seed {seed}; percentiles: {PERCENTILE_METHOD}")
    axis = curve[0].load_axis if curve else "concurrency"
    result = SloCapacity(method=method, axis=str(axis), stages=[s.name for s in curve],
                         samples=[s.attempted for s in curve], constraints=constraints, status=BELOW,
                         binding=None, load=None, rate_rps=None, concurrency=None, notes=notes)
    if not constraints:
        return result
    lowest = min(range(len(constraints)), key=lambda i: _order(constraints[i]))
    best = constraints[lowest]
    result.status = best.status
    if best.status == ABOVE:  # nothing missed: no constraint binds yet; name the one closest to its limit
        result.notes.append(f"no constraint was missed up to the highest load tested; closest to its limit there: "
                            f"{_closest(constraints)}")
    else:
        result.binding = best.name
    if best.status != BELOW:
        load = best.boundary_load
        result.load, result.rate_rps = load, float(np.interp(load, loads, rates))
        result.concurrency = float(np.interp(load, loads, conc))
    _bootstrap(result, curve, slos_ms, percentile, limits, loads, rates, resamples, confidence, seed)
    return result


def _closest(constraints: list[Constraint]) -> str:
    def used(c: Constraint) -> float:
        v = c.values[-1]
        if v is None:
            return -np.inf
        return v / c.limit if c.upper else (1.0 - v) / max(1.0 - c.limit, 1e-9)

    return max(constraints, key=used).name


def _order(c: Constraint) -> float:
    return -np.inf if c.status == BELOW else (c.boundary_load if c.status == WITHIN else np.inf)


def _boundary(values: np.ndarray, loads: np.ndarray, limit: float, upper: bool) -> tuple[np.ndarray, list[str]]:
    """Per row of ``values`` (resamples × stages): the interpolated load where the limit is first missed."""
    missed = values > limit if upper else values < limit
    missed &= ~np.isnan(values)
    any_missed = missed.any(axis=1)
    first = np.where(any_missed, missed.argmax(axis=1), loads.size)
    out = np.full(values.shape[0], loads[-1])
    status = [ABOVE] * values.shape[0]
    for i in np.nonzero(any_missed)[0]:
        f = first[i]
        if f == 0:
            out[i], status[i] = np.nan, BELOW
            continue
        a, b = values[i, f - 1], values[i, f]
        t = 1.0 if np.isnan(a) or b == a else float(np.clip((limit - a) / (b - a), 0.0, 1.0))
        out[i], status[i] = loads[f - 1] + t * (loads[f] - loads[f - 1]), WITHIN
    return out, status


def _bootstrap(result: SloCapacity, curve: Sequence[StageData], slos_ms: Mapping[str, float], percentile: float,
               limits: dict[str, tuple[float, bool]], loads: np.ndarray,
               rates: np.ndarray, resamples: int, confidence: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    checked = {c.name for c in result.constraints}
    lowest = np.full(resamples, np.inf)
    below = np.zeros(resamples, dtype=bool)
    for name in checked:
        limit, upper = limits[name]
        matrix = np.column_stack([_resample(s, name, slos_ms, percentile, resamples, rng) for s in curve])
        load, status = _boundary(matrix, loads, limit, upper)
        is_below = np.array([x == BELOW for x in status])
        below |= is_below
        lowest = np.minimum(lowest, np.where(is_below, np.inf, load))
    tail = (1.0 - confidence) / 2.0
    boot_load = np.where(below, 0.0, lowest)
    lo, hi = np.quantile(boot_load, [tail, 1.0 - tail])
    rate_lo, rate_hi = (float(np.interp(x, loads, rates)) if x > 0 else 0.0 for x in (lo, hi))
    result.ci_load, result.ci_rate_rps = (float(lo), float(hi)), (rate_lo, rate_hi)
    censored_above = np.mean(boot_load >= loads[-1]) > tail
    if below.mean() > tail:
        result.ci_censored = "lower"
        result.notes.append(f"{below.mean():.0%} of resamples miss an SLO at the lowest load tested")
    elif censored_above:
        result.ci_censored = "upper"
        result.notes.append("the upper end is the highest load tested: the SLOs may hold beyond it")


def _resample(stage: StageData, name: str, slos_ms: Mapping[str, float], percentile: float, resamples: int,
              rng: np.random.Generator) -> np.ndarray:
    if name == ATTAINMENT:
        n = stage.attempted
        return rng.binomial(n, _good(stage, slos_ms) / n, size=resamples) / n if n else np.full(resamples, np.nan)
    metric = next(m for m in slos_ms if _name(m, percentile) == name)
    values = _metric_values(stage, metric)
    if not values.size:
        return np.full(resamples, np.nan)
    return bootstrap_percentile(values, percentile, resamples, rng) * 1000.0


def bootstrap_percentile(values: np.ndarray, percentile: float, resamples: int,
                         rng: np.random.Generator) -> np.ndarray:
    """The ``percentile`` (linear interpolation) of ``resamples`` bootstrap resamples of ``values``, drawn
    exactly without materialising them: a resample is F⁻¹(U₁…Uₙ) with Uᵢ uniform and F⁻¹ the empirical
    quantile function (monotone), so its r-th order statistic is F⁻¹(U₍ᵣ₎) with U₍ᵣ₎ ~ Beta(r, n−r+1), and
    the next one is U₍ᵣ₊₁₎ = U₍ᵣ₎ + (1 − U₍ᵣ₎)·Beta(1, n−r). O(resamples) after one sort, where drawing
    the resamples would be O(resamples × n)."""
    x = np.sort(values)
    n = x.size
    h = (n - 1) * percentile / 100.0
    r = int(np.floor(h)) + 1  # 1-based rank below the interpolation point
    frac = h - (r - 1)
    u_r = rng.beta(r, n - r + 1, size=resamples)
    u_next = u_r + (1.0 - u_r) * rng.beta(1, n - r, size=resamples) if r < n else u_r

    def inverse(u: np.ndarray) -> np.ndarray:
        return x[np.clip(np.ceil(n * u).astype(np.int64) - 1, 0, n - 1)]

    low = inverse(u_r)
    return low + frac * (inverse(u_next) - low)


def _metric_values(stage: StageData, metric: str) -> np.ndarray:
    """Seconds, per request (pooled gaps for ITL); ntpot only where defined."""
    values = stage.arrays.get(_ARRAY[metric]) if stage.arrays else None
    if values is None:
        return np.empty(0)
    return values[np.isfinite(values)]


def _good(stage: StageData, slos_ms: Mapping[str, float]) -> int:
    return int(good_mask(stage.arrays, slos_ms).sum()) if stage.arrays else 0


def _name(metric: str, percentile: float) -> str:
    return f"p{percentile_label(percentile)} {metric}"
