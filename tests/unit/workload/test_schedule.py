from __future__ import annotations

import numpy as np
import pytest

from serve_bench.workload.schedule import build_schedule

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("arrivals,burstiness", [("poisson", 1.0), ("gamma", 0.5), ("gamma", 4.0), ("constant", 1.0)])
def test_mean_rate_and_determinism(arrivals: str, burstiness: float) -> None:
    s = build_schedule(arrivals, 20.0, requests=20_000, seed=7, burstiness=burstiness)
    assert len(s) == 20_000 and s[0] == 0.0 and all(np.diff(s) >= 0)
    assert np.mean(np.diff(s)) == pytest.approx(1 / 20.0, rel=0.03)
    assert s == build_schedule(arrivals, 20.0, requests=20_000, seed=7, burstiness=burstiness)


def test_burstiness_changes_dispersion() -> None:
    cv = {b: np.std(np.diff(g)) / np.mean(np.diff(g))
          for b in (0.25, 1.0, 4.0) for g in [build_schedule("gamma", 10.0, requests=20_000, seed=1, burstiness=b)]}
    assert cv[0.25] > cv[1.0] > cv[4.0]
    assert cv[1.0] == pytest.approx(1.0, rel=0.05)  # gamma with shape 1 is Poisson


def test_duration_bound_and_constant_spacing() -> None:
    s = build_schedule("constant", 4.0, duration_s=2.0)
    assert s == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75])
    long = build_schedule("poisson", 100.0, duration_s=30.0, seed=2)
    assert max(long) < 30.0 and len(long) == pytest.approx(3000, rel=0.1)
    both = build_schedule("constant", 4.0, requests=3, duration_s=10.0)
    assert len(both) == 3
    assert build_schedule("poisson", 1.0, requests=5, seed=1) != build_schedule("poisson", 1.0, requests=5, seed=2)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="valid"):
        build_schedule("uniform", 1.0, requests=3)
    with pytest.raises(ValueError):
        build_schedule("poisson", 0.0, requests=3)
    with pytest.raises(ValueError):
        build_schedule("poisson", 1.0)
