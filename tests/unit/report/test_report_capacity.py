"""Replicas, GPU-hours, cost, energy and CO2 worked by hand; the verdict sentence."""

from __future__ import annotations

import pytest

from serve_bench.report.accuracy import TaskScore
from serve_bench.report.capacity import OperatingEnergy, accuracy_deltas, plan, replicas_for, verdict
from serve_bench.study import CapacitySettings

pytestmark = pytest.mark.unit


def settings(**kw):
    return CapacitySettings(**{"rps": 10, "headroom": 0.2, "gpu_hour_price": 2.0, "gpus_per_replica": 1, **kw})


def test_replicas_round_up_after_headroom():
    assert replicas_for(10, 3.0, 0.2) == 5  # 10 / (3 × 0.8) = 4.17 -> 5
    assert replicas_for(12, 3.0, 0.0) == 4  # exactly 4, not 5 from rounding noise
    assert replicas_for(0.1, 3.0, 0.2) == 1
    assert replicas_for(10, 0.0, 0.2) is None


def test_plan_worked_by_hand():
    p = plan(3.0, (2.5, 4.0), settings(), measured_input_tokens=64, measured_output_tokens=32,
             energy=None, energy_reason="no counter")
    assert p.answered and p.replicas == 5 and p.replicas_ci == (4, 5)  # 10/(4×0.8)=3.1 -> 4; 10/(2.5×0.8)=5
    assert p.gpu_hours_per_day == 120 and p.cost_per_day == 240
    # 10 req/s × 64 tokens × 86,400 s = 55.296 M input tokens/day, 27.648 M output tokens/day: the fleet's
    # 240 a day over the tokens it serves
    assert p.cost_per_m_tokens == pytest.approx(240 / (55.296 + 27.648))
    assert p.cost_per_m_output_tokens == pytest.approx(240 / 27.648)
    # one replica (2 an hour) at its capacity, 3 req/s × 32 tokens × 3,600 s = 0.3456 M output tokens an hour
    assert p.cost_per_m_output_tokens_at_capacity == pytest.approx(2 / 0.3456)
    assert p.kwh_per_day is None and p.co2_kg_per_day is None and p.energy_note == "not measured (no counter)"
    assert not p.notes


def test_energy_gross_and_with_idle_and_co2():
    s = settings(gpus_per_replica=2, grid_g_per_kwh=400)
    gross = plan(3.0, (3.0, 3.0), s, measured_input_tokens=64, measured_output_tokens=32,
                 energy=OperatingEnergy(0.5))
    # 0.5 J × 27.648 M output tokens/day = 13.824 MJ = 3.84 kWh; × 400 g = 1.536 kg
    assert gross.kwh_per_day == pytest.approx(3.84) and gross.co2_kg_per_day == pytest.approx(1.536)
    assert gross.gpu_hours_per_day == 240 and "no idle baseline" in gross.energy_note
    net = plan(3.0, (3.0, 3.0), s, measured_input_tokens=64, measured_output_tokens=32,
               energy=OperatingEnergy(0.5, net_j_per_output_token=0.25, idle_w=100.0))
    # 0.25 J × 27.648 M + 100 W × 5 replicas × 86,400 s = 6.912 MJ + 43.2 MJ = 50.112 MJ = 13.92 kWh
    assert net.kwh_per_day == pytest.approx(13.92)


def test_a_different_traffic_mix_scales_by_output_tokens_and_says_so():
    p = plan(3.0, (2.0, 4.0), settings(input_tokens=64, output_tokens=64), measured_input_tokens=64,
             measured_output_tokens=32, energy=None)
    assert p.capacity_rps == pytest.approx(1.5) and p.replicas == 9  # 10 / (1.5 × 0.8) = 8.3
    assert any("decode-bound" in n for n in p.notes)


def test_no_capacity_is_no_answer():
    p = plan(None, (None, None), settings(), measured_input_tokens=64, measured_output_tokens=32,
             energy=None, no_answer="the lowest load tested already misses p99 ttft_ms")
    assert not p.answered and p.replicas is None and "lowest load" in p.reason


def test_verdict_has_its_numbers():
    kw = dict(measured_input_tokens=64, measured_output_tokens=32)
    base = plan(2.0, (1.9, 2.1), settings(), energy=OperatingEnergy(1.0), **kw)  # 7 replicas
    pruned = plan(3.0, (2.9, 3.1), settings(), energy=OperatingEnergy(0.8), **kw)  # 5 replicas
    def scores(mmlu, ifeval):
        return {"mmlu": TaskScore("mmlu", "acc", mmlu, 0.01), "ifeval": TaskScore("ifeval", "acc", ifeval, 0.02)}

    acc = accuracy_deltas(scores(0.30, 0.50), scores(0.42, 0.51))
    text = verdict("p40", pruned, "base", base, acc, pruned_text="p40 (40% pruned)", rps=10)
    assert text == ("p40 (40% pruned): 5 replica(s) instead of 7 for 10 req/s, −20% kWh/day, −29% daily cost, −33% "
                    "cost per million output tokens at SLO capacity (efficiency of a full replica), ifeval within "
                    "noise (−1.0 points, ±5.7), −12.0 points mmlu.")


def test_fleets_of_one_size_cost_the_same_and_the_verdict_says_so():
    kw = dict(measured_input_tokens=64, measured_output_tokens=32, energy=None)
    base = plan(2.6, (2.5, 2.7), settings(), **kw)
    pruned = plan(2.86, (2.76, 2.96), settings(), **kw)  # 10% more capacity, still 5 replicas for 10 req/s
    assert pruned.replicas == base.replicas == 5
    assert pruned.cost_per_m_output_tokens == base.cost_per_m_output_tokens
    assert pruned.cost_per_m_tokens == base.cost_per_m_tokens
    text = verdict("p20", pruned, "base", base, rps=10)
    assert "as many as base" in text and "the same daily cost" in text
    assert "−9% cost per million output tokens at SLO capacity" in text  # 1/1.1: the efficiency, on its own


def test_verdict_says_when_the_interval_is_too_wide():
    kw = dict(measured_input_tokens=64, measured_output_tokens=32, energy=None)
    base = plan(2.0, (1.0, 3.0), settings(), **kw)
    pruned = plan(3.0, (1.5, 5.0), settings(), **kw)
    text = verdict("p20", pruned, "base", base)
    assert "too wide for a verdict" in text and "kWh/day not measured" in text and "accuracy not evaluated" in text


def test_accuracy_not_evaluated_is_none():
    assert accuracy_deltas(None, {"mmlu": TaskScore("mmlu", "acc", 0.4, None)}) is None
