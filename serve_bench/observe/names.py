"""Every Prometheus metric serve-bench exports: name, type, labels, help. The one place they are defined.

Names follow Prometheus conventions: base units (seconds, joules, watts),
``_total`` for counters, ``_ratio`` for 0..1 shares. The dashboards in
``dashboards/`` may use only these names (and vLLM's ``vllm:`` ones); a test
checks that.
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "serve_bench_"
STAGE_LABELS = ("checkpoint", "profile", "stage")


@dataclass(frozen=True)
class Metric:
    name: str
    kind: str  # counter | histogram | gauge
    help: str
    labels: tuple[str, ...] = STAGE_LABELS


def _buckets() -> tuple[float, ...]:
    """1 ms to 10 min: 1-2-5 steps with 1.25/1.5/3/4/7 between below 1 s, so percentiles under 10 ms
    are resolved to a few tenths of a millisecond."""
    steps = (1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0)
    out = [m * s for s in (0.001, 0.01, 0.1) for m in steps]
    out += [m * s for s in (1.0, 10.0, 100.0) for m in (1.0, 1.5, 2.0, 3.0, 5.0, 7.0)]
    out.append(600.0)
    return tuple(sorted(set(round(b, 6) for b in out if b <= 600.0)))


LATENCY_BUCKETS_S = _buckets()

REQUESTS = Metric(PREFIX + "requests_total", "counter", "Requests finished, by outcome (ok, or the error kind).",
                  (*STAGE_LABELS, "outcome"))
PROMPT_TOKENS = Metric(PREFIX + "prompt_tokens_total", "counter", "Prompt tokens of completed requests (server usage).")
OUTPUT_TOKENS = Metric(PREFIX + "output_tokens_total", "counter", "Output tokens of completed requests (server usage).")
GOOD_REQUESTS = Metric(PREFIX + "good_requests_total", "counter", "Completed requests meeting every SLO of the study.")
TTFT = Metric(PREFIX + "ttft_seconds", "histogram", "Time to first content token, from the send (closed loop) "
              "or the intended send (open loop).")
TPOT = Metric(PREFIX + "tpot_seconds", "histogram", "Time per output token after the first, per request.")
ITL = Metric(PREFIX + "itl_seconds", "histogram", "Gaps between consecutive content chunks.")
E2E = Metric(PREFIX + "e2e_latency_seconds", "histogram", "First send (or intended send) to the last content token.")
SEND_LAG = Metric(PREFIX + "send_lag_seconds", "histogram", "Open loop: actual send − intended send.")
IN_FLIGHT = Metric(PREFIX + "requests_in_flight", "gauge", "Requests sent and not finished.")
TARGET_USERS = Metric(PREFIX + "target_users", "gauge", "Closed loop: the stage's users (0 for open loop).")
TARGET_RATE = Metric(PREFIX + "target_rate_rps", "gauge", "Open loop: the stage's scheduled rate (0 for closed loop).")
STAGE_INFO = Metric(PREFIX + "stage_info", "gauge", "1 for the running stage, 0 for finished ones.",
                    (*STAGE_LABELS, "kind", "load"))
LOADGEN_CPU = Metric(PREFIX + "loadgen_cpu_ratio", "gauge",
                     "The load generator's CPU time / wall time, all its processes (1.0: one core busy).", ())
ENERGY = Metric(PREFIX + "energy_joules_total", "counter", "Energy measured since the run started.", ("device",))
POWER = Metric(PREFIX + "power_watts", "gauge", "Average power over the last measurement interval.", ("device",))
IDLE_POWER = Metric(PREFIX + "idle_power_watts", "gauge", "Idle power with the model loaded (baseline).",
                    ("checkpoint", "device"))
REPLICAS = Metric(PREFIX + "replicas", "gauge", "Servers a checkpoint's load is spread over: a fleet's endpoints "
                  "or the replicas serve-bench launched (1: one server).", ("checkpoint",))
ENERGY_PER_TOKEN = Metric(PREFIX + "energy_per_output_token_joules", "gauge",
                          "Energy per output token over the stage's steady window; basis gross or net of idle.",
                          (*STAGE_LABELS, "basis"))

ALL = (REQUESTS, PROMPT_TOKENS, OUTPUT_TOKENS, GOOD_REQUESTS, TTFT, TPOT, ITL, E2E, SEND_LAG, IN_FLIGHT,
       TARGET_USERS, TARGET_RATE, STAGE_INFO, LOADGEN_CPU, ENERGY, POWER, IDLE_POWER, ENERGY_PER_TOKEN, REPLICAS)


def exposed_names() -> set[str]:
    """Every series name as Prometheus sees it (histograms as _bucket, _sum, _count)."""
    out: set[str] = set()
    for m in ALL:
        if m.kind == "histogram":
            out |= {m.name + "_bucket", m.name + "_sum", m.name + "_count"}
        else:
            out.add(m.name)
    return out
