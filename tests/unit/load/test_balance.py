"""Client-side balancing over a fleet's endpoints: who gets the next request, and a dead endpoint left out."""

from __future__ import annotations

import pytest

from serve_bench.errors import ConfigError
from serve_bench.load.balance import Balancer
from serve_bench.study import StudySpec
from serve_bench.validation import validate

pytestmark = pytest.mark.unit

A, B, C = "http://a:1", "http://b:2", "http://c:3"


def test_least_outstanding_sends_to_the_endpoint_with_fewest_in_flight_and_rotates_ties():
    b = Balancer([A, B, C])
    assert [b.pick() for _ in range(3)] == [0, 1, 2]  # all idle: in turn
    b.done(1, refused=False)
    assert b.pick() == 1  # the only one with a free slot
    b.done(0, refused=False)
    b.done(2, refused=False)
    assert b.outstanding == [0, 1, 0]
    assert b.pick() == 2 and b.pick() == 0  # ties among the idle ones: in turn, from after the last pick


def test_a_slow_endpoint_gets_fewer_requests_with_least_outstanding_and_as_many_with_round_robin():
    def drive(policy: str) -> list[int]:
        b = Balancer([A, B], policy)
        sent = [0, 0]
        held: list[tuple[int, int]] = []  # (round due, endpoint): B's requests take three rounds, A's one
        for round_ in range(60):
            for _ in range(4 - b.outstanding[0] - b.outstanding[1]):
                i = b.pick()
                sent[i] += 1
                held.append((round_ + (3 if i == 1 else 1), i))
            for due, i in [h for h in held if h[0] == round_ + 1]:
                held.remove((due, i))
                b.done(i, refused=False)
        return sent

    least, rr = drive("least-outstanding"), drive("round-robin")
    assert least[0] > 1.5 * least[1]
    assert abs(rr[0] - rr[1]) <= 4


def test_an_endpoint_refused_in_a_row_and_refusing_a_fresh_connection_is_dead_and_gets_nothing_more():
    checked: list[str] = []
    b = Balancer([A, B], "round-robin", is_refused=lambda u: checked.append(u) or u == B, threshold=2)
    assert b.pick() == 0 and b.pick() == 1
    b.done(1, refused=True)
    assert not b.dead and checked == []  # once is not yet suspicious
    b.done(0, refused=True)
    assert b.pick() == 0 and b.pick() == 1
    b.done(0, refused=True)
    b.done(1, refused=True)
    assert checked == [A, B] and b.dead == {1} and b.dead_urls() == [B] and b.alive == 1
    assert [b.pick() for _ in range(3)] == [0, 0, 0]
    b.dead.add(0)
    assert b.pick() is None


def test_a_success_resets_the_refusal_count():
    b = Balancer([A], is_refused=lambda u: True, threshold=2)
    b.pick()
    b.done(0, refused=True)
    b.pick()
    b.done(0, refused=False)
    b.pick()
    b.done(0, refused=True)
    assert not b.dead


def test_bad_policies_and_empty_fleets_are_refused():
    with pytest.raises(ValueError, match="unknown balance policy 'random'"):
        Balancer([A], "random")
    with pytest.raises(ValueError, match="at least one endpoint"):
        Balancer([])


def test_a_study_names_one_url_or_a_fleet_of_distinct_http_endpoints():
    spec = validate(StudySpec, {"server": {"endpoints": [A, B + "/"], "balance": "round-robin"}}, "s")
    assert spec.server.urls == [A, B] and spec.server.balance == "round-robin"
    assert validate(StudySpec, {"server": {"url": A}}, "s").server.urls == [A]
    assert validate(StudySpec, {}, "s").server.urls == []
    for server, words in (({"url": A, "endpoints": [B, C]}, "not both"),
                          ({"endpoints": [A, A + "/"]}, "the same server twice: http://a:1"),
                          ({"endpoints": [A, "b:2"]}, "'b:2' is not an http"),
                          ({"endpoints": [A, B], "balance": "random"}, "balance")):
        with pytest.raises(ConfigError, match=words):
            validate(StudySpec, {"server": server}, "s")


def test_a_conversation_keeps_its_endpoint_while_it_lives():
    b = Balancer([A, B])
    assert b.pick() == 0 and b.pick() == 1 and b.pick(prefer=1) == 1  # busier, but it holds the history
    assert b.outstanding == [1, 2]
    b.dead.add(1)
    assert b.pick(prefer=1) == 0  # gone: the balancer chooses again
