"""Flags in two spellings: --slo NAME=MS and vllm bench serve's --goodput KEY:MS, one SLO set; --label."""

from __future__ import annotations

import pytest

from serve_bench.cli.options import parse_goodput, parse_labels, slo_flags
from serve_bench.errors import ConfigError

pytestmark = pytest.mark.unit


def test_goodput_in_vllms_spelling_is_the_same_slo_set():
    assert parse_goodput(("ttft:500 tpot:50",)) == {"ttft_ms": 500.0, "tpot_ms": 50.0}
    assert parse_goodput(("e2el:2000", "ttft:300")) == {"e2el_ms": 2000.0, "ttft_ms": 300.0}
    assert slo_flags(("itl_ms=80",), ("ttft:500",)) == {"itl_ms": 80.0, "ttft_ms": 500.0}
    assert slo_flags(("ttft_ms=500",), ("ttft:500",)) == {"ttft_ms": 500.0}  # the same limit twice agrees


@pytest.mark.parametrize("given, words", [(("ttft=500",), "expected KEY:MILLISECONDS"),
                                          (("itl:5",), "KEY one of ttft, tpot, e2el"),
                                          (("tpot:fast",), "'fast' is not a number")])
def test_bad_goodput_is_named(given, words):
    with pytest.raises(ConfigError, match=words):
        parse_goodput(given)


def test_a_limit_given_twice_differently_is_refused():
    with pytest.raises(ConfigError, match="--slo and --goodput give ttft_ms different limits"):
        slo_flags(("ttft_ms=400",), ("ttft:500",))


def test_labels():
    assert parse_labels(("gpu=h100", "note=a=b", "gpu=h200")) == {"gpu": "h200", "note": "a=b"}
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_labels(("gpu",))


def test_a_studys_labels_take_yaml_scalars_as_text_and_refuse_the_rest():
    from serve_bench.study import StudySpec
    from serve_bench.validation import validate

    spec = validate(StudySpec, {"labels": {"build": 3, "nightly": True, "gpu": "h100"}}, "s.yaml")
    assert spec.labels == {"build": "3", "nightly": "true", "gpu": "h100"}
    with pytest.raises(ConfigError, match="s.yaml: labels.build"):
        validate(StudySpec, {"labels": {"build": [1]}}, "s.yaml")
