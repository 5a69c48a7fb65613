"""The latency percentiles a run's stage summaries give: chosen by the study or `run --percentiles`, p99 always
among them (the saturation check and the results table read it), bad ones refused with the field named."""

from __future__ import annotations

import pytest

from serve_bench.cli.options import parse_percentiles
from serve_bench.errors import ConfigError
from serve_bench.measure.metrics import PERCENTILES
from serve_bench.study import StudySpec
from serve_bench.validation import validate

pytestmark = pytest.mark.unit


def test_the_default_and_a_chosen_set_with_p99_always_in_it():
    assert StudySpec().percentiles == list(PERCENTILES)
    assert validate(StudySpec, {"percentiles": [99.9, 75, 75]}, "s").percentiles == [75.0, 99.0, 99.9]


def test_bad_percentiles_are_refused_naming_the_field():
    with pytest.raises(ConfigError, match="percentiles.*must be in \\(0, 100\\], not 0, 101"):
        validate(StudySpec, {"percentiles": [0, 50, 101]}, "s")
    with pytest.raises(ConfigError, match="comma-separated numbers"):
        parse_percentiles("50,ninety")
    assert parse_percentiles("50, 99.9,") == [50.0, 99.9]
