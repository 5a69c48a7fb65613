"""The knee of a checkpoint's throughput-latency curve, by Kneedle (Satopää et al., 2011).

The curve is taken as request throughput against offered load (users, or scheduled requests/s), which
rises and then flattens: the knee is the load past which more load buys little throughput and only adds
latency (queueing). Load, not measured throughput, is the x axis because it is the one the run controls
and it only increases; measured throughput can stall or fall past saturation, which Kneedle cannot take
as x. Kneedle with sensitivity S = 1 on the points as measured (no smoothing, linear x); it needs at
least three usable stages and may find no knee on a curve that has not yet saturated, which is said.

Written here rather than taken from the maintained ``kneed`` package: importing kneed imports
scipy.signal and scipy.interpolate, over a second of the report's 10-second budget on a 2-vCPU host, for
the 20 lines of numpy below (kneed's offline algorithm on the measured points); a unit test holds the two
equal on many curves."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

METHOD = ("Kneedle (Satopää et al. 2011, S=1, concave increasing, as the `kneed` package computes it) on "
          "request throughput against offered load, unflagged stages only")
MIN_POINTS = 3


@dataclass
class Knee:
    method: str
    load: float | None
    throughput_rps: float | None
    stage: str | None
    stages: list[str] = field(default_factory=list)  # the stages the knee rests on
    strength: float | None = None  # Kneedle's normalised difference at the knee (0-1): how pronounced it is
    note: str = ""


def find_knee(loads: Sequence[float], throughputs: Sequence[float], stages: Sequence[str]) -> Knee:
    """The knee of throughput against load; ``stages`` names each point."""
    x = np.asarray(loads, dtype=float)
    y = np.asarray(throughputs, dtype=float)
    if x.size < MIN_POINTS:
        return Knee(METHOD, None, None, None, list(stages),
                    note=f"no knee: {x.size} usable stage(s), Kneedle needs at least {MIN_POINTS}")
    order = np.argsort(x)
    x, y = x[order], y[order]
    names = [stages[i] for i in order]
    if np.unique(x).size != x.size:
        return Knee(METHOD, None, None, None, names, note="no knee: two stages at the same load")
    i, differences = kneedle(x, y)
    if i is None:
        return Knee(METHOD, None, None, None, names,
                    note="no knee found: throughput has not flattened over the loads tested (no saturation)")
    return Knee(METHOD, float(x[i]), float(y[i]), names[i], names, strength=float(differences[i]))


def kneedle(x: np.ndarray, y: np.ndarray, sensitivity: float = 1.0) -> tuple[int | None, np.ndarray]:
    """Offline Kneedle on a concave increasing curve given at sorted, distinct ``x``: the index of the knee
    (or None) and the difference curve. The same steps as ``kneed.KneeLocator(x, y, S, curve="concave",
    direction="increasing")``: normalise both axes to [0, 1]; difference curve y − x; its local maxima
    (≥ both neighbours) each set a threshold max − S × mean x-step; the knee is the maximum whose threshold
    the difference curve drops below before the next extremum (past a local minimum, none until the next
    maximum)."""
    xn = (x - x.min()) / (x.max() - x.min())
    span = y.max() - y.min()
    yn = (y - y.min()) / span if span > 0 else np.zeros_like(y)
    diff = yn - xn
    left = np.concatenate(([diff[0]], diff[:-1]))
    right = np.concatenate((diff[1:], [diff[-1]]))
    maxima = np.nonzero((diff >= left) & (diff >= right))[0]
    minima = set(np.nonzero((diff <= left) & (diff <= right))[0].tolist())
    if maxima.size == 0:
        return None, diff
    thresholds = diff[maxima] - sensitivity * np.abs(np.diff(xn).mean())
    threshold, at, seen, active = 0.0, 0, 0, True
    for i in range(int(maxima[0]), x.size - 1):
        if seen < maxima.size and maxima[seen] == i:
            threshold, at, active = thresholds[seen], i, True
            seen += 1
        if i in minima:  # past a local minimum: no knee until the next maximum
            threshold, active = 0.0, False
        if active and diff[i + 1] < threshold:
            return at, diff
    return None, diff
