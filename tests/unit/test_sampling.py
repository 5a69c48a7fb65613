"""A profile's sampling parameters: sent as given, unset ones left to the server, the load generator's own
fields never overridden, bad values refused with the field named."""

from __future__ import annotations

import pytest

from serve_bench.errors import ConfigError
from serve_bench.workload.profiles import profile_from_data
from serve_bench.workload.sampling import Sampling

pytestmark = pytest.mark.unit

BASE = {"name": "p", "input_tokens": 8, "output_tokens": 8, "stages": [{"kind": "concurrency", "users": 1,
                                                                         "requests": 1}]}


def test_only_the_fields_given_are_sent():
    assert Sampling().body() == {}
    s = Sampling(temperature=0, top_k=-1, stop=["###"], extra_body={"min_tokens": 4, "guided_choice": ["a"]})
    assert s.body() == {"temperature": 0, "top_k": -1, "stop": ["###"], "min_tokens": 4, "guided_choice": ["a"]}


@pytest.mark.parametrize("sampling, words", [
    ({"temperature": -1}, "sampling.temperature"),
    ({"top_p": 0}, "sampling.top_p"),
    ({"top_k": -2}, "sampling.top_k"),
    ({"tempreature": 1}, "sampling.tempreature"),
    ({"extra_body": {"max_tokens": 9, "stream": False}}, "max_tokens, stream cannot be set in extra_body"),
    ({"temperature": 1, "extra_body": {"temperature": 0}}, "temperature given both as a field and in extra_body"),
])
def test_bad_sampling_is_refused_naming_the_field(sampling, words):
    with pytest.raises(ConfigError, match=words):
        profile_from_data({**BASE, "sampling": sampling})


def test_a_profile_keeps_its_sampling_for_the_manifest():
    prof = profile_from_data({**BASE, "sampling": {"temperature": 0.6, "top_p": 0.95}})
    assert prof.sampling.body() == {"temperature": 0.6, "top_p": 0.95}
    assert prof.model_dump(mode="json")["sampling"]["temperature"] == 0.6  # the run's manifest holds profiles
