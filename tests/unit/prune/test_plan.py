import pytest

from serve_bench.errors import ConfigError
from serve_bench.prune.plan import Target, k_for_fraction, plan, round_to_divisor, serving_warnings

pytestmark = pytest.mark.unit
FRACTIONS = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6]


def test_k_table_without_rounding():
    assert [k_for_fraction(8192, p) for p in FRACTIONS] == [8192, 7373, 6554, 5735, 4916, 4096, 3277]


def test_k_table_divisor_128():
    got = [plan(Target(prune=p), 8192, 2048, 128).k for p in FRACTIONS[1:]]
    assert got == [7424, 6528, 5760, 4864, 4096, 3328]


def test_divisor_zero_keeps_raw_k_and_records_both():
    p = plan(Target(prune=0.4), 8192, 2048, 0)
    assert (p.k_unrounded, p.k) == (4916, 4916)
    p = plan(Target(prune=0.4), 8192, 2048, 128)
    assert (p.k_unrounded, p.k) == (4916, 4864)
    assert p.realised_prune == pytest.approx(1 - 4864 / 8192)
    assert p.expansion_ratio == pytest.approx(4864 / 2048)


def test_extreme_fraction_keeps_one_neuron():
    assert k_for_fraction(8192, 0.99999999) == 1


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_fraction_outside_range(p):
    with pytest.raises(ConfigError, match=r"outside \[0, 1\)"):
        k_for_fraction(8192, p)


def test_expansion_ratio_target():
    p = plan(Target(expansion_ratio=2.4), 8192, 2048, 0)
    assert p.k == round(2.4 * 2048)
    assert plan(Target(expansion_ratio=2.4), 8192, 2048, 128).k == 4864


def test_expansion_ratio_too_small_or_too_large():
    with pytest.raises(ConfigError, match="at least 1"):
        plan(Target(expansion_ratio=0.0001), 8192, 2048, 0)
    with pytest.raises(ConfigError, match="cannot widen"):
        plan(Target(expansion_ratio=5), 8192, 2048, 0)


def test_rounding_never_reaches_zero_or_exceeds_width():
    assert round_to_divisor(10, 128, 8192) == 128
    assert round_to_divisor(8190, 256, 8192) == 8192


def test_labels():
    assert Target(prune=0.4).label == "p40"
    assert Target(prune=0.125).label == "p12_5"
    assert Target(expansion_ratio=2.4).label == "er2.4"


def test_serving_warnings():
    assert any("odd" in w for w in serving_warnings(4917))
    assert any("FP8" in w for w in serving_warnings(4916 + 2))
    assert any("4-bit" in w for w in serving_warnings(4912))
    assert serving_warnings(8192) == []
