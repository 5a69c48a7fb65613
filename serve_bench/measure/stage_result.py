"""What one load stage hands back (the load process sends it to the orchestrator as JSON).

No Locust or gevent here: the orchestrating process reads these without the load generator's imports.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from pydantic import Field

from serve_bench.validation import Strict

SATURATION_LAG_MS = 100.0
# Each endpoint's figures in a fleet's stage result (keys of its records' summary).
ENDPOINT_FIGURES = ("attempted", "completed", "failed", "request_throughput", "output_throughput", "mean_in_flight",
                    "p50_ttft_ms", "p99_ttft_ms", "p50_tpot_ms", "p99_tpot_ms", "p50_e2el_ms", "p99_e2el_ms")


# The flags a stage's result can carry (its fields below), in the words every view uses: the run's tables, the live
# view, the report. A flagged stage is kept on disk and in the tables, and left off the load curves.
STAGE_FLAGS = {"server_died": "server died", "generator_saturated": "load generator saturated",
               "rejected": "requests rejected", "stopped_early": "stopped early",
               "host_contended": "host busy with other work", "dead_endpoints": "a replica died"}


def stage_flags(result: Mapping[str, Any]) -> dict[str, str]:
    """The flags a stage's result (a result file's mapping) carries: field name -> words."""
    return {key: words for key, words in STAGE_FLAGS.items() if result.get(key)}


def load_of(target: Mapping[str, Any]) -> tuple[str | None, float | None]:
    """A stage's place on a load curve: ("concurrency", users) or ("rate", req/s); (None, None) for a ramp,
    whose load is not one level. The one load axis the summary, the report and the plan use."""
    if "users" in target:
        return "concurrency", float(target["users"])
    if "rate_rps" in target:
        return "rate", float(target["rate_rps"])
    return None, None


def load_label(target: Mapping[str, Any]) -> str:
    """A stage's load in words: '16 users', '2 req/s poisson', '1→8 users'."""
    if "users" in target:
        return f"{target['users']} users"
    if "rate_rps" in target:
        return f"{target['rate_rps']:.3g} req/s {target.get('arrivals', '')}".strip()
    if "start_users" in target:
        return f"{target['start_users']}→{target.get('end_users')} users"
    return ""


class StageResult(Strict):

    stage: str
    kind: str
    target: dict[str, Any] = Field(description="users, rate_rps, arrivals… as run")
    started_s: float
    ended_s: float
    warmup_end_s: float | None
    records: int
    summary: dict[str, Any]
    server_died: bool = False
    rejected: bool = Field(False, description="stopped early: every request so far got an HTTP 4xx (model name, key…)")
    generator_saturated: bool = False
    stopped_early: bool = False
    host_contended: bool = Field(False, description="other processes or the hypervisor took the host's CPU (or a "
                                                    "GPU throttled) during the stage: the result file's host says")
    warnings: list[str] = Field(default_factory=list)
    locust_requests: int = 0
    locust_failures: int = 0
    workers: int = Field(0, description="load-generator worker processes; 0: this process")
    loadgen_cpu: dict[str, float | None] = Field(
        default_factory=dict, description="each load-generator process's CPU time / wall time over the stage "
                                          "(1.0: one core busy); 'master' is this process")
    worker_clocks: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="distributed: each worker's clock offset to the master and the "
                                          "round trip it was measured with (ms); records are on the master's clock")
    lost_workers: list[str] = Field(default_factory=list, description="workers that disconnected mid-stage")
    prompts: dict[str, Any] | None = Field(None, description="the prompt set: kind, distinct prompts, exhaust "
                                                              "(cycle | stop) and whether this stage cycled")
    endpoints: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="a fleet (several endpoints): each endpoint's share of the requests and "
                                          "its own figures (ENDPOINT_FIGURES of its records' summary)")
    balance: float | None = Field(None, description="a fleet: requests at the least-loaded endpoint over those at the "
                                                    "most-loaded (1: even; least-outstanding gives a slower replica "
                                                    "fewer on purpose)")
    dead_endpoints: list[str] = Field(default_factory=list, description="endpoints that stopped accepting "
                                                                         "connections mid-stage; the stage went on "
                                                                         "with the rest of the fleet")

    @property
    def flags(self) -> dict[str, str]:
        return {key: words for key, words in STAGE_FLAGS.items() if getattr(self, key)}

    @property
    def load(self) -> tuple[str | None, float | None]:
        return load_of(self.target)

    @property
    def load_text(self) -> str:
        return load_label(self.target)


def sweep_rates(sync_rps: float, max_rps: float, count: int) -> list[float]:
    """``count`` rates strictly between the synchronous and the max-throughput rate, evenly spaced."""
    return [float(r) for r in np.linspace(sync_rps, max_rps, count + 2)[1:-1]]
