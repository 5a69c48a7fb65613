"""Kneedle on throughput against load: a curve with a known knee, one without, too few points."""

from __future__ import annotations

import pytest

from serve_bench.report.knee import find_knee

pytestmark = pytest.mark.unit


def test_saturating_curve_has_its_knee_where_throughput_stops_growing():
    loads = [1, 2, 4, 6, 8, 10, 12, 14, 16]
    rps = [min(x, 8) * 0.5 for x in loads]  # linear up to 8 users, flat after: the knee is at 8
    knee = find_knee(loads, rps, [f"c{x}" for x in loads])
    assert knee.load == 8 and knee.stage == "c8" and knee.throughput_rps == 4.0
    assert knee.stages == [f"c{x}" for x in loads] and "Kneedle" in knee.method
    assert knee.strength is not None and 0 < knee.strength <= 1


def test_points_in_any_order_give_the_same_knee():
    loads = [16, 1, 8, 4, 2, 12]
    rps = [min(x, 8) for x in loads]
    assert find_knee(loads, rps, [str(x) for x in loads]).load == 8


def test_straight_line_has_no_knee_and_says_so():
    knee = find_knee([1, 2, 4, 8, 16], [1, 2, 4, 8, 16], ["a", "b", "c", "d", "e"])
    assert knee.load is None and "no knee" in knee.note


def test_two_points_are_too_few():
    knee = find_knee([1, 4], [1, 3], ["c1", "c4"])
    assert knee.load is None and "at least 3" in knee.note


def test_same_knee_as_the_kneed_package_on_many_curves():
    kneed = pytest.importorskip("kneed")
    import numpy as np

    from serve_bench.report.knee import kneedle

    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(300):
        n = int(rng.integers(3, 12))
        x = np.unique(np.round(np.sort(rng.uniform(1, 256, n)), 3))
        if x.size < 3:
            continue
        y = np.minimum(x, rng.uniform(5, 300)) * rng.uniform(0.1, 5) + rng.normal(0, rng.uniform(0, 5), x.size)
        ours, _ = kneedle(x, y)
        theirs = kneed.KneeLocator(x, y, S=1.0, curve="concave", direction="increasing", interp_method="interp1d")
        assert (None if ours is None else x[ours]) == theirs.knee, (x.tolist(), y.tolist())
        checked += 1
    assert checked > 250
