import pytest
import torch

from serve_bench.errors import ConfigError
from serve_bench.prune import criteria

pytestmark = pytest.mark.system  # imports torch
H = 8


def rows(*specs):
    """One row per spec: a list of (position, value) over zeros."""
    w = torch.zeros(len(specs), H)
    for i, spec in enumerate(specs):
        for j, v in spec:
            w[i, j] = v
    return w


def test_ppm_uses_peak_to_peak_not_max_abs():
    # row 0: +1/-1 (range 2); row 1: +1.5 only (range 1.5, but larger |w|)
    gate = rows([(0, 1.0), (1, -1.0)], [(0, 1.5)])
    up = torch.zeros_like(gate)
    assert criteria.keep_indices(criteria.ppm(gate, up), 1).tolist() == [0]
    assert criteria.keep_indices(criteria.maxabs(gate, up), 1).tolist() == [1]


def test_ppm_adds_gate_and_up():
    gate = rows([(0, 1.0)], [(0, 0.5)], [(0, 0.1)])
    up = rows([(0, 0.0)], [(0, 0.6)], [(0, 0.2)])
    assert criteria.ppm(gate, up).tolist() == pytest.approx([1.0, 1.1, 0.3])


def test_vow_prefers_spread_rows():
    gate = rows([(j, 1.0) for j in range(H)], [(0, 1.0), (1, -1.0)])  # constant row has zero variance
    up = torch.zeros_like(gate)
    assert criteria.keep_indices(criteria.vow(gate, up), 1).tolist() == [1]


def test_pon_is_a_product():
    gate = rows([(0, 10.0)], [(0, 2.0)])
    up = rows([], [(0, 2.0)])  # row 0's up row is all zeros: product 0
    assert criteria.pon(gate, up).tolist() == pytest.approx([0.0, 4.0])
    assert criteria.l2(gate, up).tolist() == pytest.approx([10.0, 4.0])


def test_keep_indices_original_order_and_deterministic_ties():
    scores = torch.tensor([1.0, 5.0, 3.0, 5.0, 0.0])
    assert criteria.keep_indices(scores, 3).tolist() == [1, 2, 3]
    assert criteria.keep_indices(torch.ones(6), 2).tolist() == [0, 1]


def test_registry_and_alias():
    assert criteria.get("maw")[0] == "ppm"
    assert set(criteria.CRITERIA) == {"ppm", "maxabs", "vow", "pon", "l2"}
    with pytest.raises(ConfigError, match="valid: .*l2.*maw"):
        criteria.get("random")


def test_bf16_input_scored_in_float32():
    g = torch.randn(16, H).to(torch.bfloat16)
    assert criteria.ppm(g, g).dtype == torch.float32
