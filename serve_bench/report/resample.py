"""A stage's requests as a bootstrap draws them: the values each quantity reads (metric percentiles, the
pooled inter-token gaps, the SLO scores), sorted once, with the request each belongs to; the time blocks
the requests are drawn in (requests in flight together move together); what the values are worth as
independent samples; and one draw's evaluation of every quantity and the stage's rate at once. The SLO
capacity (:mod:`serve_bench.report.slo`) and ``serve-bench compare`` resample through this one place."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from serve_bench.measure.metrics import slo_scores
from serve_bench.report.inputs import StageData

ATTAINMENT = "slo_attainment"
_ARRAY = {"ttft_ms": "ttft", "tpot_ms": "tpot", "e2el_ms": "e2el", "ntpot_ms": "ntpot", "max_itl_ms": "max_itl"}
UNBOUNDED = 1e300  # a quantile past the largest sample, or a failed request's score: missed, whatever the limit
CELLS_PER_CHUNK = 4_000_000  # resamples × samples held at once in the bootstrap (memory, not speed)


# -- one stage's requests ---------------------------------------------------------------------------------------

@dataclass
class StageSample:
    """Per-request data of one stage, sorted once per constraint, with the request each value belongs to.
    Indices 0…done−1 are the completed requests, done…attempted−1 the failed ones."""

    attempted: int
    done: int
    sorted_values: dict[str, np.ndarray]  # constraint -> values in ascending order
    owners: dict[str, np.ndarray]  # constraint -> request index of each sorted value
    block: np.ndarray  # per attempted request: its time block (the bootstrap draws blocks)
    effective: dict[str, int]  # constraint -> independent samples its values are worth (design effect)
    share: np.ndarray  # completed requests: share of life inside the steady window
    life: np.ndarray  # completed requests: send to end, seconds
    in_flight: float  # requests in flight on average over the window
    window_s: float  # the window's length (the whole stage when it has none)
    open_loop: bool
    rate: float

    @property
    def blocks(self) -> int:
        return int(self.block.max()) + 1 if self.block.size else 0


def stage_sample(stage: StageData, names: dict[str, str], slos_ms: Mapping[str, float]) -> StageSample:
    a = stage.arrays
    done = int(a["ttft"].size) if a else 0
    sorted_values: dict[str, np.ndarray] = {}
    owners: dict[str, np.ndarray] = {}
    for name, metric in names.items():
        if not a:
            values, owner = np.empty(0), np.empty(0, dtype=np.int64)
        elif metric == ATTAINMENT:
            values = np.concatenate([slo_scores(a, slos_ms), np.full(stage.attempted - done, np.inf)])
            owner = np.arange(values.size)
        elif metric == "itl_ms":
            values, owner = a["itl"] * 1000.0, np.repeat(np.arange(done), a["gaps_per_request"])
        else:
            values, owner = a[_ARRAY[metric]] * 1000.0, np.arange(done)
            if metric == "tpot_ms":  # defined for requests of more than one token only
                owner = np.nonzero(a["out"] > 1)[0]
            keep = np.isfinite(values)
            values, owner = values[keep], owner[keep]
        order = np.argsort(values, kind="stable")
        sorted_values[name] = np.minimum(values[order], UNBOUNDED)
        owners[name] = owner[order]
    sm = stage.summary
    window = sm.get("steady_duration") or sm.get("duration") or 0.0
    block = request_blocks(a, stage.attempted)
    effective = {name: effective_samples(np.arange(v.size), block[owners[name]]) for name, v in sorted_values.items()}
    return StageSample(attempted=stage.attempted, done=done, sorted_values=sorted_values, owners=owners,
                   block=block, effective=effective,
                   share=a["share"] if a else np.empty(0), life=a["life"] if a else np.empty(0),
                   in_flight=float(stage.concurrency or 0.0), window_s=float(window),
                   open_loop=bool(sm.get("open_loop")), rate=float(stage.request_rate_rps or 0.0))


def request_blocks(arrays: dict[str, np.ndarray], attempted: int) -> np.ndarray:
    """Each attempted request's block: send time from the first send, in units of the median request life."""
    send = arrays.get("send") if arrays else None
    if send is None or send.size != attempted or not arrays["life"].size:
        return np.arange(attempted)  # no send times (hand-made arrays): every request its own block
    length = float(np.median(arrays["life"]))
    if not length > 0:
        return np.arange(attempted)
    raw = np.floor((send - send.min()) / length).astype(np.int64)
    return np.unique(raw, return_inverse=True)[1]


def effective_samples(ranks: np.ndarray, groups: np.ndarray) -> int:
    """How many independent samples ``ranks`` (of values in ascending order) grouped by block are worth:
    n / (1 + (m − 1)·ρ), ρ the intraclass correlation of the ranks within blocks (one-way ANOVA; m the
    blocks' mean size, adjusted for unequal sizes). A closed-loop wave of equal requests (ρ = 1) is worth
    one sample; requests queued behind each other in one block (ρ near 0) are worth each their own."""
    n = ranks.size
    if n < 2:
        return n
    sizes = np.bincount(groups)
    sizes = sizes[sizes > 0]
    k = sizes.size
    if k < 2 or n == k:
        return 1 if k < 2 else n
    _, inverse = np.unique(groups, return_inverse=True)
    x = ranks.astype(float)
    means = np.bincount(inverse, weights=x) / sizes
    grand = x.mean()
    msb = float(np.sum(sizes * (means - grand) ** 2) / (k - 1))
    msw = float(np.sum((x - means[inverse]) ** 2) / (n - k))
    m0 = (n - float(np.sum(sizes ** 2)) / n) / (k - 1)
    rho = 1.0 if msb + (m0 - 1) * msw <= 0 else float(np.clip((msb - msw) / (msb + (m0 - 1) * msw), 0.0, 1.0))
    return max(1, int(n / (1.0 + (float(np.mean(sizes)) - 1.0) * rho)))


def weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float, widen: bool,
                       rng: np.random.Generator | None, effective: int = 0) -> np.ndarray:
    """Per row of ``weights`` (counts of each sorted value in one resample): the q-quantile by linear
    interpolation of the values repeated by their counts, or (``widen``) a draw between the K-th and
    (K + 1)-th order statistics with K ~ Binomial(count, q) (the number of values below the true quantile;
    counted over ``effective`` independent samples, then scaled to the row's count), unbounded when K = count.
    NaN where a row holds no value."""
    n = values.size
    cum = np.cumsum(weights, axis=1)
    total = cum[:, -1]
    if widen and rng is not None:  # the true quantile lies between the K-th and (K+1)-th of the drawn values
        if effective:  # K counts independent samples below the quantile, scaled to the drawn requests
            kb = rng.binomial(effective, q, size=total.size)
            k = np.where(kb >= effective, total,
                         np.floor(kb * total / effective + rng.random(total.size))).astype(np.int64)
        else:
            k = rng.binomial(total, q)
        lo = values[np.minimum((cum <= np.maximum(k - 1, 0)[:, None]).sum(axis=1), n - 1)]
        hi = values[np.minimum((cum <= k[:, None]).sum(axis=1), n - 1)]
        out = np.where(k >= total, UNBOUNDED, lo + rng.random(k.size) * (hi - lo))
    else:
        h = (total - 1) * q
        k = np.floor(h)
        lo = values[np.minimum((cum <= k[:, None]).sum(axis=1), n - 1)]
        hi = values[np.minimum((cum <= (k + 1)[:, None]).sum(axis=1), n - 1)]
        out = lo + (h - k) * (hi - lo)
    return np.where(total > 0, out, np.nan)


def evaluate_draws(sample: StageSample, counts: np.ndarray, quantiles: dict[str, float], widen: dict[str, bool],
                   rng: np.random.Generator | None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Every constraint's value and the stage's rate for each row of ``counts`` (how often each attempted
    request is drawn): the one draw feeds them all."""
    values = {}
    for name, q in quantiles.items():
        v = sample.sorted_values[name]
        if not v.size:
            values[name] = np.full(counts.shape[0], np.nan)
            continue
        values[name] = weighted_quantile(v, counts[:, sample.owners[name]], q, widen[name], rng,
                                          sample.effective[name])
    c = counts[:, :sample.done].astype(float)
    served = c @ sample.share
    if sample.open_loop or not sample.done:
        rate = served / sample.window_s if sample.window_s > 0 else np.full(counts.shape[0], sample.rate)
    else:  # Little's law: a closed loop's concurrency is fixed, its rate follows the requests' mean life
        mean_life = (c @ (sample.share * sample.life)) / np.where(served > 0, served, np.nan)
        rate = sample.in_flight / mean_life
    return values, rate


def draw_counts(sample: StageSample, rows: int, rng: np.random.Generator) -> np.ndarray:
    """``rows`` bootstrap draws of a stage: how often each attempted request is drawn, its blocks drawn with
    replacement (a block's requests always together)."""
    if not sample.attempted:
        return np.zeros((rows, 0), dtype=np.int64)
    blocks = sample.blocks
    return rng.multinomial(blocks, np.full(blocks, 1.0 / blocks), size=rows)[:, sample.block]

