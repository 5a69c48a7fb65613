"""Length distributions: the request plan's lengths follow the requested distribution (a stated test)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import TypeAdapter
from scipy import stats

from serve_bench.errors import ConfigError
from serve_bench.measure.metrics import describe_lengths
from serve_bench.workload.lengths import BLOCK, LengthDist, LengthSampler

pytestmark = pytest.mark.unit

# The test: one-sample Kolmogorov–Smirnov of N planned lengths against the requested distribution, rejecting
# at ALPHA. Lengths are whole numbers (ties), so each is spread uniformly over [k − ½, k + ½) (a fixed-seed
# jitter) and compared with the requested CDF interpolated linearly over that interval: under the null the
# jittered sample is exactly continuous with that CDF, so the KS p-value is exact. Seeds are fixed, so the
# outcome is deterministic; the negative cases show the test catches a wrong distribution.
ALPHA = 0.01
N = 5000
DISTS = {
    "uniform": {"kind": "uniform", "min_tokens": 100, "max_tokens": 900},
    "normal": {"kind": "normal", "mean_tokens": 500, "std_tokens": 120, "min_tokens": 200, "max_tokens": 800},
    "lognormal": {"kind": "lognormal", "mean_tokens": 500, "std_tokens": 250, "min_tokens": 50, "max_tokens": 1500},
}


def dist(data: dict) -> LengthDist:
    return TypeAdapter(LengthDist).validate_python(data)  # type: ignore[return-value]


def ks_pvalue(lengths: np.ndarray, target: LengthDist) -> float:
    jittered = lengths + np.random.default_rng(0).uniform(-0.5, 0.5, lengths.size)

    def cdf(x: np.ndarray) -> np.ndarray:
        k = np.floor(x + 0.5)
        below = target.cdf(k - 1)
        return below + (x + 0.5 - k) * (target.cdf(k) - below)

    return float(stats.kstest(jittered, cdf).pvalue)


@pytest.mark.parametrize("name", list(DISTS))
def test_planned_lengths_match_the_requested_distribution(name: str) -> None:
    d = dist(DISTS[name])
    lengths = LengthSampler(d, seed=7, stream="input:p").many(0, N)
    lo, hi = d.bounds()
    assert lengths.min() >= lo and lengths.max() <= hi and lengths.dtype == np.int64
    assert ks_pvalue(lengths, d) > ALPHA
    assert abs(lengths.mean() - d.mean()) < 0.05 * d.mean()


@pytest.mark.parametrize(("name", "wrong"), [
    ("lognormal", {"kind": "lognormal", "mean_tokens": 530, "std_tokens": 250, "min_tokens": 50, "max_tokens": 1500}),
    ("lognormal", {"kind": "normal", "mean_tokens": 500, "std_tokens": 250, "min_tokens": 50, "max_tokens": 1500}),
    ("normal", {"kind": "normal", "mean_tokens": 500, "std_tokens": 150, "min_tokens": 200, "max_tokens": 800}),
    ("uniform", {"kind": "uniform", "min_tokens": 100, "max_tokens": 950}),
])
def test_the_test_rejects_a_wrong_distribution(name: str, wrong: dict) -> None:
    lengths = LengthSampler(dist(DISTS[name]), seed=7, stream="input:p").many(0, N)
    assert ks_pvalue(lengths, dist(wrong)) < ALPHA


def test_lengths_are_seeded_per_index_whatever_the_order() -> None:
    d = dist(DISTS["lognormal"])
    a = LengthSampler(d, seed=1, stream="input")
    b = LengthSampler(d, seed=1, stream="input")
    picks = [BLOCK * 3 + 5, 17, BLOCK + 1]
    assert [b.at(i) for i in picks] == [int(a.many(0, BLOCK * 4)[i]) for i in picks]
    assert list(LengthSampler(d, seed=2, stream="input").many(0, 50)) != list(a.many(0, 50))
    assert list(LengthSampler(d, seed=1, stream="output").many(0, 50)) != list(a.many(0, 50))
    assert list(a.many(BLOCK - 3, 6)) == [a.at(i) for i in range(BLOCK - 3, BLOCK + 3)]


def test_clipping_puts_the_tail_on_the_bound() -> None:
    d = dist({"kind": "lognormal", "mean_tokens": 500, "std_tokens": 400, "min_tokens": 300, "max_tokens": 600})
    lengths = LengthSampler(d, seed=0).many(0, N)
    assert (lengths == 300).mean() == pytest.approx(float(d.cdf(300)), abs=0.03)
    assert (lengths == 600).mean() == pytest.approx(1 - float(d.cdf(599)), abs=0.03)


def test_fixed_and_empirical(tmp_path: Path) -> None:
    assert set(LengthSampler(dist({"kind": "fixed", "tokens": 9})).many(0, 100)) == {9}
    path = tmp_path / "lengths.txt"
    path.write_text("10\n20\n\n30\n")
    e = dist({"kind": "empirical", "path": str(path)})
    got = LengthSampler(e, seed=3).many(0, 3000)
    assert set(got) == {10, 20, 30} and e.bounds() == (10, 30)
    assert ks_pvalue(got, e) > ALPHA
    csv_path = tmp_path / "l.csv"
    csv_path.write_text("a,n\nx,5\ny,7\n")
    assert dist({"kind": "empirical", "path": str(csv_path), "field": "n"}).bounds() == (5, 7)


def test_bad_lengths_files_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_text("10\nten\n")
    with pytest.raises(ConfigError, match=r"bad.txt:2: 'ten' is not a whole number"):
        dist({"kind": "empirical", "path": str(path)}).bounds()
    path.write_text("10\n0\n")
    with pytest.raises(ConfigError, match=r"bad.txt:2: a length must be at least 1"):
        dist({"kind": "empirical", "path": str(path)}).bounds()
    with pytest.raises(ValueError, match="min_tokens .* is above max_tokens"):
        dist({"kind": "uniform", "min_tokens": 10, "max_tokens": 5})


def test_describe_lengths() -> None:
    assert describe_lengths([1, 2, 3, 4]) == {"mean": 2.5, "p50": 2.5, "p90": pytest.approx(3.7), "min": 1, "max": 4,
                                              "n": 4}
    assert describe_lengths([])["mean"] is None
