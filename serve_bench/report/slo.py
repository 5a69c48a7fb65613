"""The highest load that meets the SLOs, interpolated between stages, with a bootstrap confidence interval.

Constraints, each checked per stage on the raw records (definitions in :mod:`serve_bench.measure.metrics`):

    <metric> at the SLO percentile  ≤ its limit        e.g. p99 TTFT ≤ 1000 ms; ITL is the pooled gaps
    SLO attainment                  ≥ min_attainment   good / attempted, failed requests count as not good

Attainment is a step function of load (every request good at one stage, none at the next, when requests
are alike), so it is never interpolated as a share. Attainment ≥ q holds exactly when the q-quantile of the
requests' scores (each request's worst value / limit over the per-request SLOs; a failed request scores ∞)
is ≤ 1, and that quantile moves smoothly with load: the boundary is interpolated on it. With one limit,
"attainment ≥ 95%" is then "p95 ≤ limit", weaker than p99 ≤ limit, and the two agree on which binds.

Along the stages of one load curve (sorted by load), a constraint's boundary is the first stage that
misses it, linearly interpolated against the last stage before it that met it; stages where a constraint
has no samples are skipped, never taken as a miss or a pass. The checkpoint's answer is the lowest
boundary, and that constraint *binds*. Request rate and concurrency at the boundary are interpolated
between the same stages (a closed loop's rate through Little's law: :func:`rate_at`). When every
stage meets every constraint the answer is a lower bound (the highest load tested); when the lowest stage
misses one there is no answer.

Confidence interval: percentile bootstrap over blocks of requests. Requests in flight together share the
server's steps (their latencies move together: in a closed loop of equal requests, a whole wave has the
same TPOT), so they are not resampled one by one, which would count a wave of N as N independent draws and
shrink the interval to nothing; each stage's requests are cut into blocks by send time, one median
request life long, and the blocks are drawn with replacement. What a stage's values are worth as
independent samples is their count over the design effect, 1 + (block size − 1)·ρ, with ρ the intraclass
correlation of their ranks within blocks. Each resample draws every stage's blocks once,
and that one draw feeds every constraint and the stage's request rate:
the metric percentiles over the drawn completed requests, the pooled inter-token gaps of the drawn
requests (gaps are resampled by request, since they cluster within one), the scores' quantile, and the
rate (closed loop: by Little's law, requests in flight over the drawn requests' mean life; open loop: the
drawn requests' shares of the steady window over its length). A percentile from fewer samples than
10 / (1 − q) (p99: 1,000) is too extreme for the bootstrap, which never looks past the largest sample:
there each resample draws the quantile between the distribution-free order statistics instead (ranks K and
K + 1, K ~ Binomial(n, q) the count below the true quantile, n the independent samples; unbounded when K = n: then
bounded by the next higher load's draw, since latency does not fall as load rises, and where none bounds
it, a miss by at least the stage's largest sample, the crossing interpolated against that), which widens
the interval, and the report says so. A straight line between stages far apart misses how a latency curve
bends between them (it is convex as a server saturates, so the line crosses the limit early), and no
resample of the stages' requests moves that error: each resample also finds the crossing of a quadratic
through the two stages and the next one below them (:func:`_curved`), and the interval runs from the lower
of the two crossings' lower quantile to the higher's upper one. The interval covers the sampling noise of
the requests within each stage and that interpolation error, not run-to-run noise of the host or server.
Fixed seed: the same run gives the same interval.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from serve_bench.measure.metrics import PERCENTILE_METHOD, per_request_slos, percentile_label
from serve_bench.report.inputs import StageData
from serve_bench.report.resample import (
    ATTAINMENT,
    CELLS_PER_CHUNK,
    UNBOUNDED,
    StageSample,
    draw_counts,
    evaluate_draws,
    stage_sample,
)

WITHIN, ABOVE, BELOW = "within", "above", "below"


def samples_needed(percentile: float) -> int:
    """Samples a percentile wants before its estimate can be trusted: about ten beyond it (p99: 1,000)."""
    return math.ceil(10.0 / (1.0 - percentile / 100.0)) if percentile < 100 else 10**9


@dataclass
class Constraint:
    name: str  # "p99 ttft_ms" or "slo_attainment"
    limit: float
    upper: bool  # True: value ≤ limit; False: value ≥ limit
    values: list[float | None]  # per stage, in the curve's order (attainment: the share of good requests)
    boundary_load: float | None
    status: str  # within / above (never missed) / below (missed at the lowest load)
    samples: list[int] = field(default_factory=list)  # per stage, the samples behind the value
    needed: int = 0  # samples the percentile wants (10 / (1 − q)); fewer widen the interval
    curved_load: float | None = None  # the crossing of a quadratic through three stages (interpolation error)


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
    why_binding: str = ""
    notes: list[str] = field(default_factory=list)
    # the bootstrap's draws of the load and the rate by the straight line (rows: resamples), for comparing two
    # runs' capacity (``serve-bench compare``); not part of the report
    draws: dict[str, np.ndarray] | None = field(default=None, repr=False)


# -- the boundary ---------------------------------------------------------------------------------------------------

def _boundaries(values: np.ndarray, loads: np.ndarray, limit: float,
                upper: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row of ``values`` (resamples × stages, NaN: no samples there): the interpolated load where the
    limit is first missed, the status (WITHIN / ABOVE / BELOW; "" where no stage has a value), and the
    crossing of a quadratic through the same two stages and a third (:func:`_curved`)."""
    valid = ~np.isnan(values)
    missed = valid & ((values > limit) if upper else (values < limit))
    rows, stages = values.shape
    idx = np.arange(stages)
    any_missed = missed.any(axis=1)
    first = np.where(any_missed, missed.argmax(axis=1), stages)
    before = np.where(valid & (idx[None, :] < first[:, None]), idx[None, :], -1).max(axis=1)
    last_valid = np.where(valid, idx[None, :], -1).max(axis=1)
    load = np.full(rows, np.nan)
    status = np.full(rows, "", dtype=object)
    above = ~any_missed & (last_valid >= 0)
    load[above], status[above] = loads[-1], ABOVE
    below = any_missed & (before < 0)
    status[below] = BELOW
    within = any_missed & (before >= 0)
    r = np.nonzero(within)[0]
    bent = load.copy()
    if r.size:
        a, b = values[r, before[r]], values[r, first[r]]
        with np.errstate(invalid="ignore", divide="ignore"):
            t = np.where(b == a, 1.0, np.clip((limit - a) / (b - a), 0.0, 1.0))
        load[r] = loads[before[r]] + t * (loads[first[r]] - loads[before[r]])
        status[r] = WITHIN
        bent[r] = _curved(values[r], valid[r], loads, limit, before[r], first[r], load[r])
    return load, status, bent


def _curved(values: np.ndarray, valid: np.ndarray, loads: np.ndarray, limit: float, before: np.ndarray,
            first: np.ndarray, straight: np.ndarray) -> np.ndarray:
    """Where a quadratic through the stages either side of the crossing and the nearest valid stage below
    them (above them when there is none below) crosses ``limit``, between the two stages. A latency curve
    bends between stages that are far apart (it is convex as a server saturates), which a straight line
    does not see and a resample of each stage's requests cannot move; the spread between the two crossings
    is that interpolation error. Rows with no third stage keep the straight crossing."""
    idx = np.arange(values.shape[1])
    below = np.where(valid & (idx[None, :] < before[:, None]), idx[None, :], -1).max(axis=1)
    above = np.where(valid & (idx[None, :] > first[:, None]), idx[None, :], values.shape[1]).min(axis=1)
    third = np.where(below >= 0, below, above)
    ok = third < values.shape[1]
    out = straight.copy()
    if not ok.any():
        return out
    rows = np.nonzero(ok)[0]
    lo, hi = loads[before[rows]], loads[first[rows]]
    # in units where the two stages are 0 and 1, so the roots are well conditioned
    x = (np.stack([loads[third[rows]], lo, hi], axis=1) - lo[:, None]) / (hi - lo)[:, None]
    y = np.stack([values[rows, third[rows]], values[rows, before[rows]], values[rows, first[rows]]], axis=1)
    y = np.minimum(y, np.maximum(y[:, 2:3], limit)) - limit  # an unbounded miss bends nothing: capped at the miss
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        # Newton's divided differences: p(x) = y0 + d1 (x − x0) + d2 (x − x0)(x − x1)
        d1 = (y[:, 1] - y[:, 0]) / (x[:, 1] - x[:, 0])
        d12 = (y[:, 2] - y[:, 1]) / (x[:, 2] - x[:, 1])
        d2 = (d12 - d1) / (x[:, 2] - x[:, 0])
        qa = d2
        qb = d1 - d2 * (x[:, 0] + x[:, 1])
        qc = y[:, 0] - d1 * x[:, 0] + d2 * x[:, 0] * x[:, 1]
        # the stable form (no cancellation when the curve is nearly straight: then c / q is the line's root)
        q = -0.5 * (qb + np.copysign(np.sqrt(np.maximum(qb * qb - 4 * qa * qc, 0.0)), qb))
        roots = np.stack([q / qa, qc / q], axis=1)
    inside = np.isfinite(roots) & (roots >= 0.0) & (roots <= 1.0)
    # the crossing nearest the straight line's, of those between the two stages (one always is, unless the
    # quadratic is degenerate: then the straight one stands)
    t = (straight[rows] - lo) / (hi - lo)
    gap = np.where(inside, np.abs(roots - t[:, None]), np.inf)
    pick = roots[np.arange(rows.size), gap.argmin(axis=1)]
    out[rows] = np.where(np.isfinite(gap.min(axis=1)), lo + pick * (hi - lo), straight[rows])
    return out


# -- the answer -----------------------------------------------------------------------------------------------------

def _constraint_names(slos_ms: Mapping[str, float], percentile: float,
                      min_attainment: float | None) -> dict[str, str]:
    names = {_name(m, percentile): m for m in slos_ms}
    if min_attainment is not None and per_request_slos(slos_ms):
        names[ATTAINMENT] = ATTAINMENT
    return names


def stage_constraint_values(stage: StageData, slos_ms: Mapping[str, float], percentile: float,
                            min_attainment: float | None) -> dict[str, float | None]:
    """Each constraint's value at one stage (metric percentiles in ms; attainment as the share of good)."""
    names = _constraint_names(slos_ms, percentile, min_attainment)
    sample = stage_sample(stage, names, slos_ms)
    out: dict[str, float | None] = {}
    for name, metric in names.items():
        v = sample.sorted_values[name]
        if metric == ATTAINMENT:
            out[name] = float(np.mean(v <= 1.0)) if v.size else None
        else:
            out[name] = float(np.percentile(v, percentile, method=PERCENTILE_METHOD)) if v.size else None
    return out


def slo_capacity(curve: Sequence[StageData], slos_ms: Mapping[str, float], *, percentile: float = 99.0,
                 min_attainment: float | None = 0.95, resamples: int = 1000, confidence: float = 0.95,
                 seed: int = 0) -> SloCapacity:
    """The highest load of ``curve`` (usable stages of one profile and load axis) meeting the SLOs."""
    curve = sorted(curve, key=lambda s: s.load)  # type: ignore[arg-type, return-value]
    loads = np.array([s.load for s in curve], dtype=float)
    conc = np.array([s.concurrency or 0.0 for s in curve], dtype=float)
    names = _constraint_names(slos_ms, percentile, min_attainment)
    quantiles = {n: (min_attainment if m == ATTAINMENT else percentile / 100.0) for n, m in names.items()}
    needed = {n: samples_needed(q * 100.0) for n, q in quantiles.items()}
    samples = [stage_sample(s, names, slos_ms) for s in curve]
    # a percentile wants its samples independent: what counts is what they are worth (requests in flight
    # together move together)
    widen = [{n: 0 < s.effective[n] < needed[n] for n in names} for s in samples]
    point = [evaluate_draws(s, np.ones((1, s.attempted), dtype=np.int64), quantiles, w, None)
             for s, w in zip(samples, widen)]
    rates = np.array([s.rate for s in samples])
    shown = [stage_constraint_values(s, slos_ms, percentile, min_attainment) for s in curve]
    notes: list[str] = []
    if min_attainment is not None and not per_request_slos(slos_ms):
        notes.append("SLO attainment not checked: only itl_ms is set, which limits a stage's pooled gaps, not "
                     "each request (set max_itl_ms to bound every request's worst gap)")
    constraints: list[Constraint] = []
    for name, metric in names.items():
        row = np.array([[p[0][name][0] for p in point]])
        if np.isnan(row).all():
            notes.append(f"{name}: no samples at any stage; not checked")
            continue
        limit = float(min_attainment if metric == ATTAINMENT else slos_ms[metric])  # type: ignore[arg-type]
        b, status, bent = _boundaries(row, loads, 1.0 if metric == ATTAINMENT else limit, True)
        values = [shown[i][name] for i in range(len(curve))]
        n = [int(s.sorted_values[name].size) for s in samples]
        independent = [s.effective[name] for s in samples]
        constraints.append(Constraint(name, limit, metric != ATTAINMENT, values,
                                      None if status[0] == BELOW else float(b[0]), str(status[0]), n, needed[name],
                                      float(bent[0]) if status[0] == WITHIN else None))
        _note_recovery(notes, name, row[0], 1.0 if metric == ATTAINMENT else limit, curve)
        few = [f"{s.name} ({k:,} samples, worth {b:,} independent ones)"
               for s, k, b, w in zip(curve, n, independent, widen) if w[name]]
        if few:
            notes.append(f"{name}: too few independent samples for a {_q_text(quantiles[name])} at {', '.join(few)}: "
                         f"it wants about {needed[name]:,} (10 / (1 − {quantiles[name]:g})); requests in flight "
                         f"together move together, so they count by their design effect; the interval there uses "
                         f"the distribution-free order-statistic bound, open above where the true value may lie "
                         f"beyond the largest sample")
    method = (f"highest load meeting {', '.join(c.name for c in constraints) or 'no constraint'}; boundaries "
              f"interpolated linearly between stages on each constraint's quantile (attainment: on the "
              f"{_q_text(min_attainment or 0.95)} of each request's worst value/limit); {confidence:.0%} "
              f"percentile-bootstrap interval, {resamples} resamples of each stage's requests in blocks of one "
              f"median request life, one draw feeding every constraint and the rate, spanning both a straight "
              f"and a quadratic (three-stage) crossing, seed {seed}; percentiles: "
              f"{PERCENTILE_METHOD}")
    axis = curve[0].load_axis if curve else "concurrency"
    result = SloCapacity(method=method, axis=str(axis), stages=[s.name for s in curve],
                         samples=[s.attempted for s in curve], constraints=constraints, status=BELOW,
                         binding=None, load=None, rate_rps=None, concurrency=None, notes=notes)
    if not constraints:
        return result
    best = min(constraints, key=_order)
    result.status = best.status
    if best.status == ABOVE:  # nothing missed: no constraint binds yet; name the one closest to its limit
        result.notes.append(f"no constraint was missed up to the highest load tested; closest to its limit there: "
                            f"{_closest(constraints)}")
    else:
        result.binding = best.name
        result.why_binding = _why(best, constraints, axis)
        result.notes.insert(0, result.why_binding)
        if best.curved_load is not None and abs(best.curved_load - best.boundary_load) > 0.01 * best.boundary_load:
            result.notes.append(f"{best.name}: a curve through three stages crosses at {best.curved_load:.3g}, the "
                                f"straight line between two at {best.boundary_load:.3g}: the stages are far apart "
                                f"where the curve bends; the interval spans both, a closer ladder narrows it")
    if best.status != BELOW:
        load = best.boundary_load
        result.load, result.rate_rps = load, rate_at(load, loads, rates, conc, axis == "concurrency")
        result.concurrency = float(np.interp(load, loads, conc))
    _bootstrap(result, samples, names, quantiles, widen, loads, resamples, confidence, seed)
    return result


def _note_recovery(notes: list[str], name: str, row: np.ndarray, limit: float, curve: Sequence[StageData]) -> None:
    missed = [not np.isnan(v) and v > limit for v in row]
    if any(missed) and not missed[-1]:
        first = missed.index(True)
        notes.append(f"{name} is missed at {curve[first].name} but met again at a higher load (noise, or "
                     f"something else running then): the boundary is taken at the first miss")


def _why(best: Constraint, constraints: list[Constraint], axis: str) -> str:
    unit = "users" if axis == "concurrency" else "req/s"

    def where(c: Constraint) -> str:
        if c.status == WITHIN:
            return f"{c.name} at {c.boundary_load:.3g} {unit}"
        return f"{c.name} never missed" if c.status == ABOVE else f"{c.name} missed at the lowest load"

    rest = "; ".join(where(c) for c in sorted((c for c in constraints if c is not best), key=_order))
    head = (f"{best.name} is crossed first, at {best.boundary_load:.3g} {unit}" if best.status == WITHIN else
            f"{best.name} is missed at the lowest load tested")
    return head + (f" (then {rest})" if rest else "")


def _q_text(q: float) -> str:
    return f"{percentile_label(round(q * 100, 6))}th percentile"


def _closest(constraints: list[Constraint]) -> str:
    def used(c: Constraint) -> float:
        v = c.values[-1]
        if v is None:
            return -np.inf
        return v / c.limit if c.upper else (1.0 - v) / max(1.0 - c.limit, 1e-9)

    return max(constraints, key=used).name


def _order(c: Constraint) -> float:
    return -np.inf if c.status == BELOW else (c.boundary_load if c.status == WITHIN else np.inf)  # type: ignore


def _bootstrap(result: SloCapacity, samples: list[StageSample], names: dict[str, str], quantiles: dict[str, float],
               widen: list[dict[str, bool]], loads: np.ndarray, resamples: int, confidence: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    checked = [c.name for c in result.constraints]
    values = {n: np.empty((resamples, len(samples))) for n in checked}
    rates = np.empty((resamples, len(samples)))
    for j, s in enumerate(samples):
        width = max(s.attempted, max((v.size for v in s.sorted_values.values()), default=1), 1)
        step = max(1, CELLS_PER_CHUNK // width)
        for start in range(0, resamples, step):
            rows = min(step, resamples - start)
            counts = draw_counts(s, rows, rng)
            v, r = evaluate_draws(s, counts, {n: quantiles[n] for n in checked}, widen[j], rng)
            for n in checked:
                values[n][start:start + rows, j] = v[n]
            rates[start:start + rows, j] = r
    # per resample, the answer by the lower and the higher of the straight and the curved crossing, and by the
    # straight one alone (each the lowest boundary over the constraints); the interval spans both: the lower
    # end from the lower, the upper from the higher
    lowest = np.full((3, resamples), np.inf)
    below = np.zeros(resamples, dtype=bool)
    for c in result.constraints:
        v = values[c.name]
        limit = 1.0 if names[c.name] == ATTAINMENT else c.limit
        # an unbounded draw (too few samples to bound the quantile) is bounded by the stage above it: latency
        # does not fall as load rises, so a miss is never made up where a higher load is known to pass
        for j in range(v.shape[1] - 2, -1, -1):
            v[:, j] = np.where(v[:, j] >= UNBOUNDED, v[:, j + 1], v[:, j])
        # still unbounded: a miss by an unknown amount, at least the stage's largest sample; the crossing is
        # interpolated against that least value (any larger one would put it at a lower load)
        for j, sample in enumerate(samples):
            known = sample.sorted_values[c.name]
            known = known[known < UNBOUNDED]
            least = max(float(known[-1]) if known.size else limit, limit) * (1 + 1e-9) + 1e-12
            v[:, j] = np.where(v[:, j] >= UNBOUNDED, least, v[:, j])
        load, status, bent = _boundaries(v, loads, limit, True)
        is_below = status == BELOW
        below |= is_below
        for k, crossing in enumerate((np.fmin(load, bent), np.fmax(load, bent), load)):
            lowest[k] = np.minimum(lowest[k], np.where(is_below | np.isnan(crossing), np.inf, crossing))
    boot_load = np.where(below, 0.0, np.where(np.isinf(lowest), loads[-1], lowest))
    conc = np.array([s.in_flight for s in samples])
    closed = result.axis == "concurrency"
    boot_rate = np.array([[0.0 if b else rate_at(x, loads, row, conc, closed)
                           for x, b, row in zip(side, below, rates)] for side in boot_load])
    tail = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(boot_load[0], tail), np.quantile(boot_load[1], 1.0 - tail)
    rate_lo, rate_hi = (np.nanquantile(boot_rate[:2].min(axis=0), tail),
                        np.nanquantile(boot_rate[:2].max(axis=0), 1.0 - tail))
    result.ci_load, result.ci_rate_rps = (float(lo), float(hi)), (float(rate_lo), float(rate_hi))
    result.draws = {"load": boot_load[2], "rate_rps": boot_rate[2]}
    if below.mean() > tail:
        result.ci_censored = "lower"
        result.notes.append(f"{below.mean():.0%} of resamples miss an SLO at the lowest load tested")
    elif np.mean(boot_load[1] >= loads[-1]) > tail:
        result.ci_censored = "upper"
        result.notes.append("the upper end is the highest load tested: the SLOs may hold beyond it")


def rate_at(load: float, loads: np.ndarray, rates: np.ndarray, in_flight: np.ndarray, closed: bool) -> float:
    """The request rate at ``load`` between stages. Closed loop: by Little's law, requests in flight over a
    request's life, each interpolated linearly: a request's life grows about linearly with users where the
    rate bends (it saturates), so a straight line through two rates would fall short of it. Open loop: the
    rates, linearly."""
    ok = np.isfinite(rates) & (rates > 0)
    if not ok.any():
        return np.nan
    if not closed or not (in_flight[ok] > 0).all():
        return float(np.interp(load, loads[ok], rates[ok]))
    life = in_flight[ok] / rates[ok]
    return float(np.interp(load, loads[ok], in_flight[ok]) / np.interp(load, loads[ok], life))


def _name(metric: str, percentile: float) -> str:
    return f"p{percentile_label(percentile)} {metric}"
