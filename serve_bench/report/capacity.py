"""From one replica's capacity within the SLOs to a fleet: replicas, GPU-hours, cost, energy, CO2; and the
one-sentence verdict of a pruned checkpoint against its base.

Assumptions, stated in every report:
- replicas scale linearly: N replicas serve N times one replica's capacity (a load balancer spreads the
  traffic evenly; no shared bottleneck), unless a scaling efficiency is given (``serve-bench validate``
  measures one on a real fleet: then N × efficiency × one replica's);
- a replica runs at most at (1 − headroom) of its capacity within the SLOs;
- a traffic mix other than the one measured is served at the measured output-token rate (decode-bound):
  capacity in requests/s scales by measured output tokens / traffic output tokens; prompt length changes
  TTFT, which this does not model, so measure with a profile of your mix for a measured answer;
- cost per million tokens at the target traffic: the fleet's daily cost over the tokens that traffic
  brings in a day (so two fleets of one size cost the same); efficiency at capacity: one replica's cost
  per hour over the output tokens it serves in an hour running at its SLO capacity;
- kWh/day: energy per output token at the operating point × output tokens per day; when the idle power
  was measured, net energy per token plus idle power × replicas × 24 h (so idle headroom is paid for).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from serve_bench.study import CapacitySettings

SECONDS_PER_DAY = 86_400.0
J_PER_KWH = 3.6e6
ASSUMPTIONS = [
    "replicas scale linearly (N replicas serve N × one replica's capacity within the SLOs)",
    "each replica runs at most at (1 − headroom) of that capacity",
    "a traffic mix other than the measured one is served at the measured output-token rate (decode-bound)",
    "cost per million tokens: the fleet's daily cost over the tokens the target traffic brings in a day; "
    "efficiency at capacity: a replica's hourly cost over the output tokens it serves at its SLO capacity",
    "kWh/day: energy per output token at the operating point × output tokens/day (+ idle power × replicas "
    "× 24 h when idle was measured, with net energy per token)",
    "confidence intervals cover the sampling noise of the requests within each stage, not run-to-run "
    "variation (other work on the machine, another day): repeat the run to see that",
]


@dataclass
class OperatingEnergy:
    """Energy at the operating point: joules per output token (gross, and net of idle), idle watts."""

    gross_j_per_output_token: float
    net_j_per_output_token: float | None = None
    idle_w: float | None = None
    basis: str = ""


@dataclass
class Plan:
    answered: bool
    reason: str = ""
    lower_bound: bool = False  # capacity is "at least" (no stage missed the SLOs): replicas are "at most"
    capacity_rps: float | None = None  # one replica, within the SLOs, at the traffic's mix
    capacity_rps_ci: tuple[float | None, float | None] = (None, None)
    replicas: int | None = None
    replicas_ci: tuple[int | None, int | None] = (None, None)  # from the capacity interval (high, low ends)
    gpu_hours_per_day: float | None = None
    cost_per_day: float | None = None
    cost_per_m_tokens: float | None = None  # the fleet's daily cost / (input + output) tokens per day
    cost_per_m_output_tokens: float | None = None  # the fleet's daily cost / output tokens per day
    cost_per_m_output_tokens_at_capacity: float | None = None  # one replica at its SLO capacity
    kwh_per_day: float | None = None
    co2_kg_per_day: float | None = None
    energy_note: str = "not measured"
    notes: list[str] = field(default_factory=list)
    # the traffic planned for (per request; `serve-bench validate` replays it) and the scaling assumed
    input_tokens: float | None = None
    output_tokens: float | None = None
    scaling_efficiency: float = 1.0


def replicas_for(rps: float, capacity_rps: float, headroom: float) -> int | None:
    """ceil(traffic / (capacity × (1 − headroom))); None without capacity."""
    if capacity_rps <= 0:
        return None
    return max(1, math.ceil(rps / (capacity_rps * (1.0 - headroom)) - 1e-9))


def plan(capacity_rps: float | None, capacity_ci: tuple[float | None, float | None], settings: CapacitySettings, *,
         measured_input_tokens: float, measured_output_tokens: float, energy: OperatingEnergy | None,
         energy_reason: str = "not measured", lower_bound: bool = False,
         no_answer: str = "") -> Plan:
    """The fleet for ``settings``' traffic from one replica's capacity (requests/s at the measured mix)."""
    if capacity_rps is None or capacity_rps <= 0:
        return Plan(answered=False, reason=no_answer or "no load tested meets the SLOs")
    if measured_output_tokens <= 0:
        return Plan(answered=False, reason="no output tokens were measured (the server reported no usage)")
    tokens_in = settings.input_tokens or measured_input_tokens
    tokens_out = settings.output_tokens or measured_output_tokens
    scale = measured_output_tokens / tokens_out if tokens_out else 1.0
    out = Plan(answered=True, lower_bound=lower_bound, capacity_rps=capacity_rps * scale, input_tokens=tokens_in,
               output_tokens=tokens_out, scaling_efficiency=settings.scaling_efficiency)
    if abs(scale - 1.0) > 1e-9 or (settings.input_tokens and abs(tokens_in - measured_input_tokens) > 0.5):
        out.notes.append(f"measured at {measured_input_tokens:.0f} input / {measured_output_tokens:.0f} output "
                         f"tokens per request; the traffic's {tokens_in:.0f} / {tokens_out:.0f} is scaled by output "
                         f"tokens (decode-bound assumption): measure with a profile of that mix to be sure")
    lo, hi = capacity_ci
    out.capacity_rps_ci = (None if lo is None else lo * scale, None if hi is None else hi * scale)
    eff = settings.scaling_efficiency  # a replica in a fleet serves this share of what it serves alone
    if eff != 1.0:
        out.notes.append(f"replicas at a scaling efficiency of {eff:.3g} (a fleet of N serves N × {eff:.3g} × one "
                         "replica's capacity), not linear")
    n = replicas_for(settings.rps, out.capacity_rps * eff, settings.headroom)
    out.replicas = n
    out.replicas_ci = (None if hi is None or hi <= 0 else replicas_for(settings.rps, hi * scale * eff,
                                                                       settings.headroom),
                       None if lo is None or lo <= 0 else replicas_for(settings.rps, lo * scale * eff,
                                                                       settings.headroom))
    assert n is not None  # capacity_rps and scale are positive here
    out.gpu_hours_per_day = n * settings.gpus_per_replica * 24.0
    out.cost_per_day = out.gpu_hours_per_day * settings.gpu_hour_price
    in_per_day = settings.rps * tokens_in * SECONDS_PER_DAY
    out_per_day = settings.rps * tokens_out * SECONDS_PER_DAY
    out.cost_per_m_tokens = out.cost_per_day / (in_per_day + out_per_day) * 1e6 if in_per_day + out_per_day else None
    out.cost_per_m_output_tokens = out.cost_per_day / out_per_day * 1e6 if out_per_day else None
    replica_hour = settings.gpus_per_replica * settings.gpu_hour_price
    out.cost_per_m_output_tokens_at_capacity = replica_hour / (out.capacity_rps * tokens_out * 3600.0) * 1e6
    if energy is None:
        out.energy_note = f"not measured ({energy_reason})"
        return out
    if energy.net_j_per_output_token is not None and energy.idle_w is not None:
        joules = energy.net_j_per_output_token * out_per_day + energy.idle_w * n * SECONDS_PER_DAY
        out.energy_note = (f"net {energy.net_j_per_output_token:.3g} J/output token at the operating point "
                           f"× output tokens/day + idle {energy.idle_w:.3g} W × {n} replica(s) × 24 h")
    else:
        joules = energy.gross_j_per_output_token * out_per_day
        out.energy_note = (f"{energy.gross_j_per_output_token:.3g} J/output token (gross) at the operating point "
                           "× output tokens/day; idle power of the headroom not included (no idle baseline)")
    if energy.basis:
        out.energy_note += f"; {energy.basis}"
    out.kwh_per_day = joules / J_PER_KWH
    if settings.grid_g_per_kwh is not None:
        out.co2_kg_per_day = out.kwh_per_day * settings.grid_g_per_kwh / 1000.0
    return out


def _signed(x: float) -> str:
    return f"{x:+.1f}".replace("-", "−")


def _pct(new: float, old: float) -> str:
    return f"{(new - old) / old:+.0%}".replace("-", "−") if old else "n/a"


def verdict(label: str, pruned: Plan, base_label: str, base: Plan,
            accuracy_deltas: list[str] | None = None, pruned_text: str | None = None,
            rps: float | None = None) -> str:
    """One sentence with its numbers: replicas, kWh/day, accuracy against the base; says when the confidence
    intervals are too wide to tell."""
    who = pruned_text or label
    if not pruned.answered or not base.answered:
        missing = label if not pruned.answered else base_label
        reason = (pruned if not pruned.answered else base).reason
        return f"{who}: no verdict: {missing} has no capacity within the SLOs ({reason})."
    parts = []
    at_most = " (at most: the SLOs held at every load tested)" if pruned.lower_bound or base.lower_bound else ""
    traffic = f" for {rps:g} req/s" if rps is not None else ""
    if pruned.replicas == base.replicas:
        parts.append(f"{pruned.replicas} replica(s){traffic}, as many as {base_label}{at_most}")
    else:
        parts.append(f"{pruned.replicas} replica(s) instead of {base.replicas}{traffic}{at_most}")
    if _overlap(pruned.replicas_ci, base.replicas_ci) and pruned.replicas != base.replicas:
        parts.append(f"but the confidence intervals overlap ({span(pruned.replicas_ci)} vs "
                     f"{span(base.replicas_ci)} replicas): too wide for a verdict on replicas")
    if pruned.kwh_per_day is not None and base.kwh_per_day is not None:
        parts.append(f"{_pct(pruned.kwh_per_day, base.kwh_per_day)} kWh/day")
    else:
        parts.append("kWh/day not measured")
    if pruned.cost_per_day is not None and base.cost_per_day is not None:  # the fleets' cost, as their size says
        parts.append("the same daily cost" if pruned.cost_per_day == base.cost_per_day else
                     f"{_pct(pruned.cost_per_day, base.cost_per_day)} daily cost")
    if pruned.cost_per_m_output_tokens_at_capacity and base.cost_per_m_output_tokens_at_capacity:
        at = "at least " if pruned.lower_bound or base.lower_bound else ""
        parts.append(f"{_pct(pruned.cost_per_m_output_tokens_at_capacity, base.cost_per_m_output_tokens_at_capacity)}"
                     f" cost per million output tokens at SLO capacity ({at}efficiency of a full replica)")
    parts += accuracy_deltas if accuracy_deltas else ["accuracy not evaluated"]
    return f"{who}: " + ", ".join(parts) + "."


def _overlap(a: tuple[int | None, int | None], b: tuple[int | None, int | None]) -> bool:
    if None in a or None in b:
        return True  # an open-ended interval overlaps anything
    return max(a[0], b[0]) <= min(a[1], b[1])  # type: ignore[type-var]


def span(ci: tuple[int | None, int | None]) -> str:
    lo, hi = ci
    return f"{lo if lo is not None else '?'}–{hi if hi is not None else '∞'}"


def accuracy_deltas(pruned: dict | None, base: dict | None) -> list[str] | None:
    """'−12.0 points mmlu', 'ifeval within noise' (|Δ| < 2 combined standard errors); None: not evaluated."""
    if not pruned or not base:
        return None
    out = []
    for task, score in sorted(pruned.items()):
        ref = base.get(task)
        if ref is None:
            continue
        if not (score.is_fraction and ref.is_fraction):  # a perplexity: relative change
            out.append(f"{task} {score.metric} {_pct(score.value, ref.value)}")
            continue
        delta = (score.value - ref.value) * 100.0
        errs = [e for e in (score.stderr, ref.stderr) if e is not None]
        noise = 2.0 * math.sqrt(sum(e * e for e in errs)) * 100.0 if len(errs) == 2 else None
        if noise is not None and abs(delta) < noise:
            out.append(f"{task} within noise ({_signed(delta)} points, ±{noise:.1f})")
        else:
            out.append(f"{_signed(delta)} points {task}")
    return out or None
