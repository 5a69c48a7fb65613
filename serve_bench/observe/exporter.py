"""The live Prometheus exporter: every finished request, the running stage, energy, as ``serve_bench_`` metrics.

A custom prometheus-client collector rather than the library's Counter and
Histogram objects: a request's record carries tens of chunk gaps, and
observing each into a Histogram (a lock and a bisect each) would cost the load
generator's event loop several percent of its capacity. Here the record sink
only appends the record to a list (``observe``), and the arithmetic is done in
batches, vectorised with numpy, when Prometheus scrapes (or a stage ends).
Definitions of the values come from :mod:`serve_bench.measure.metrics`; metric
names from :mod:`serve_bench.observe.names`.

With ``--workers`` every record reaches the master, so one exporter gives one
view of all workers; the running stage's in-flight count and CPU come from the
workers' reports through :class:`~serve_bench.load.live.LiveStage`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from serve_bench.load.live import LiveStage
from serve_bench.measure import metrics as m
from serve_bench.measure.records import RequestRecord
from serve_bench.measure.stage_result import load_label
from serve_bench.observe import names as n
from serve_bench.observe.server_metrics import histogram_quantile

DEFAULT_PORT = 9464  # the port dashboards/prometheus.yml scrapes
# Energy that could not be measured is exported as NaN under this device, never as 0: a query still finds
# the series, and a dashboard can say "not measured".
NOT_MEASURED = float("nan")
NO_DEVICE = "none"
ENERGY_BASES = ("gross", "net")
_EDGES = np.asarray(n.LATENCY_BUCKETS_S)
_LE = [floatToGoString(b) for b in n.LATENCY_BUCKETS_S]
StageKey = tuple[str, str, str]  # checkpoint, profile, stage


@dataclass
class _Hist:
    counts: np.ndarray = field(default_factory=lambda: np.zeros(len(_EDGES) + 1, dtype=np.int64))
    total: float = 0.0

    def add(self, values: np.ndarray) -> None:
        if values.size:
            self.counts += np.bincount(np.searchsorted(_EDGES, values, side="left"), minlength=len(_EDGES) + 1)
            self.total += float(values.sum())

    def buckets(self) -> list[tuple[str, float]]:
        cum = np.cumsum(self.counts)
        return [(le, float(c)) for le, c in zip(_LE, cum[:-1])] + [("+Inf", float(cum[-1]))]


@dataclass
class _StageStats:
    outcomes: dict[str, int] = field(default_factory=dict)
    prompt_tokens: int = 0
    output_tokens: int = 0
    good: int = 0
    hists: dict[str, _Hist] = field(default_factory=dict)
    kind: str = ""
    load: str = ""
    target_users: float = 0.0
    target_rate: float = 0.0
    energy_per_token: dict[str, float] = field(default_factory=dict)

    def hist(self, name: str) -> _Hist:
        h = self.hists.get(name)
        if h is None:
            h = self.hists[name] = _Hist()
        return h


def outcome(r: RequestRecord) -> str:
    """A small, fixed set of label values: ok, or what kind of failure."""
    if m.completed(r):
        return "ok"
    if 400 <= r.status < 500:
        return "http_4xx"
    if r.status >= 500:
        return "http_5xx"
    error = (r.error or "").lower()
    for kind, marks in (("timeout", ("timeout",)), ("refused", ("refused",)), ("prompt", ("prompt",)),
                        ("aborted", ("stage stopped",)), ("disconnected", ("disconnected", "ended before")),
                        ("stream", ("stream", "malformed", "usage", "no content"))):
        if any(mark in error for mark in marks):
            return kind
    return "other"


class Exporter:
    """Collects records and the live stage; serves them on /metrics once :meth:`start` is called."""

    def __init__(self, live: LiveStage, slos_ms: Mapping[str, float] | None = None) -> None:
        self.live = live
        self.slos_ms = dict(slos_ms or {})
        self._pending: list[tuple[StageKey, RequestRecord]] = []
        self._stages: dict[StageKey, _StageStats] = {}
        self._warm: dict[StageKey, int] = {}  # warm-up requests finished, per stage (for the live view)
        self._energy: dict[str, float] = {}
        self._power: dict[str, float] = {}
        self._idle: dict[tuple[str, str], float] = {}
        self._replicas: dict[str, int] = {}
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)
        self._server: Any = None
        self.url: str | None = None
        # the HTTP server's thread collects while the run's thread feeds: every state change under one lock
        self._lock = threading.RLock()

    # -- feeding ----------------------------------------------------------------------------------------------

    def observe(self, record: RequestRecord, checkpoint: str) -> None:
        """The record sink's part: O(1), no arithmetic."""
        with self._lock:
            key = (checkpoint, record.profile or "", record.stage)
            if record.warmup:
                self._warm[key] = self._warm.get(key, 0) + 1
            else:
                self._pending.append((key, record))

    def stage_target(self, key: StageKey, kind: str, load: str, target: Mapping[str, Any]) -> None:
        with self._lock:
            st = self._stages.setdefault(key, _StageStats())
            st.kind, st.load = kind, load
            st.target_users = float(target.get("users") or target.get("end_users") or 0)
            st.target_rate = float(target.get("rate_rps") or 0)

    def set_energy(self, device: str, joules_total: float, watts: float | None) -> None:
        with self._lock:
            self._energy[device] = joules_total
            if watts is not None:
                self._power[device] = watts

    def set_replicas(self, checkpoint: str, count: int) -> None:
        with self._lock:
            self._replicas[checkpoint] = count

    def set_idle_power(self, checkpoint: str, device: str, watts: float) -> None:
        with self._lock:
            self._idle[(checkpoint, device)] = watts

    def set_energy_per_token(self, key: StageKey, basis: str, joules: float | None) -> None:
        with self._lock:
            if joules is not None:
                self._stages.setdefault(key, _StageStats()).energy_per_token[basis] = joules

    def fold(self) -> None:
        """Move pending records into the counters and histograms, one vectorised pass per stage."""
        with self._lock:
            pending, self._pending = self._pending, []
            by_stage: dict[StageKey, list[RequestRecord]] = {}
            for key, r in pending:
                by_stage.setdefault(key, []).append(r)
            for key, records in by_stage.items():
                st = self._stages.get(key) or self._stages.setdefault(key, _StageStats())
                done = []
                for r in records:
                    kind = outcome(r)
                    st.outcomes[kind] = st.outcomes.get(kind, 0) + 1
                    if kind == "ok":
                        done.append(r)
                if not done:
                    continue
                st.prompt_tokens += sum(r.prompt_tokens or 0 for r in done)
                st.output_tokens += sum(r.output_tokens or 0 for r in done)
                a = m.request_arrays(done)
                st.good += int(m.good_mask(a, self.slos_ms).sum())
                # open loop: ttft and e2el from the schedule, as the headlines; never below 0 in a histogram
                for metric, values in ((n.TTFT, a["ttft"]), (n.E2E, a["e2el"]), (n.TPOT, a["tpot"]),
                                       (n.SEND_LAG, a["send_lag"]), (n.ITL, a["itl"])):
                    st.hist(metric.name).add(np.maximum(values, 0.0))

    def stage_stats(self, key: StageKey) -> dict[str, Any]:
        """The stage so far, for the live view: counts, tokens, and percentiles from the histograms
        (linear within a bucket, as Prometheus's histogram_quantile)."""
        with self._lock:
            self.fold()
            st = self._stages.get(key) or _StageStats()
            out: dict[str, Any] = {"ok": st.outcomes.get("ok", 0),
                                   "failed": sum(c for k, c in st.outcomes.items() if k != "ok"),
                                   "output_tokens": st.output_tokens, "warmup_done": self._warm.get(key, 0)}
            for metric, short in ((n.TTFT, "ttft"), (n.TPOT, "tpot"), (n.SEND_LAG, "send_lag")):
                h = st.hists.get(metric.name)
                cum = [(float(le), c) for le, c in h.buckets()] if h is not None else []
                for q in (0.5, 0.99):
                    out[f"{short}_p{int(q * 100)}_s"] = histogram_quantile(q, cum)
            return out

    # -- serving ----------------------------------------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            self.fold()
            live = self.live
            running = (live.checkpoint, live.profile, live.stage) if live.running else None
            if running is not None and not (running in self._stages and self._stages[running].kind):
                self.stage_target(running, live.kind, load_label(live.target), live.target)
            fams = {
                "requests": CounterMetricFamily(n.REQUESTS.name, n.REQUESTS.help, labels=n.REQUESTS.labels),
                "prompt": CounterMetricFamily(n.PROMPT_TOKENS.name, n.PROMPT_TOKENS.help, labels=n.STAGE_LABELS),
                "output": CounterMetricFamily(n.OUTPUT_TOKENS.name, n.OUTPUT_TOKENS.help, labels=n.STAGE_LABELS),
                "good": CounterMetricFamily(n.GOOD_REQUESTS.name, n.GOOD_REQUESTS.help, labels=n.STAGE_LABELS),
                "in_flight": GaugeMetricFamily(n.IN_FLIGHT.name, n.IN_FLIGHT.help, labels=n.STAGE_LABELS),
                "users": GaugeMetricFamily(n.TARGET_USERS.name, n.TARGET_USERS.help, labels=n.STAGE_LABELS),
                "rate": GaugeMetricFamily(n.TARGET_RATE.name, n.TARGET_RATE.help, labels=n.STAGE_LABELS),
                "info": GaugeMetricFamily(n.STAGE_INFO.name, n.STAGE_INFO.help, labels=n.STAGE_INFO.labels),
                "ept": GaugeMetricFamily(n.ENERGY_PER_TOKEN.name, n.ENERGY_PER_TOKEN.help,
                                         labels=n.ENERGY_PER_TOKEN.labels),
            }
            hists = {h.name: HistogramMetricFamily(h.name, h.help, labels=n.STAGE_LABELS)
                     for h in (n.TTFT, n.TPOT, n.ITL, n.E2E, n.SEND_LAG)}
            for key, st in self._stages.items():
                labels = list(key)
                for kind, count in sorted(st.outcomes.items()):
                    fams["requests"].add_metric([*labels, kind], count)
                fams["prompt"].add_metric(labels, st.prompt_tokens)
                fams["output"].add_metric(labels, st.output_tokens)
                fams["good"].add_metric(labels, st.good)
                is_running = key == running
                fams["in_flight"].add_metric(labels, live.in_flight() if is_running else 0)
                fams["users"].add_metric(labels, st.target_users)
                fams["rate"].add_metric(labels, st.target_rate)
                fams["info"].add_metric([*labels, st.kind, st.load], 1.0 if is_running else 0.0)
                for basis in ENERGY_BASES:  # NaN: not measured (never 0); the dashboards show NaN as "not measured"
                    fams["ept"].add_metric([*labels, basis], st.energy_per_token.get(basis, NOT_MEASURED))
                for name, h in st.hists.items():
                    hists[name].add_metric(labels, h.buckets(), sum_value=h.total)
            cpu = GaugeMetricFamily(n.LOADGEN_CPU.name, n.LOADGEN_CPU.help)
            cpu.add_metric([], (live.loadgen_cpu() or 0.0) if live.running else 0.0)
            energy = CounterMetricFamily(n.ENERGY.name, n.ENERGY.help, labels=n.ENERGY.labels)
            power = GaugeMetricFamily(n.POWER.name, n.POWER.help, labels=n.POWER.labels)
            idle = GaugeMetricFamily(n.IDLE_POWER.name, n.IDLE_POWER.help, labels=n.IDLE_POWER.labels)
            for device, joules in sorted(self._energy.items()) or [(NO_DEVICE, NOT_MEASURED)]:
                energy.add_metric([device], joules)
            for device, watts in sorted(self._power.items()) or [(NO_DEVICE, NOT_MEASURED)]:
                power.add_metric([device], watts)
            idle_by = dict(self._idle)
            for checkpoint in {k[0] for k in self._stages}:
                if not any(c == checkpoint for c, _ in idle_by):
                    idle_by[(checkpoint, NO_DEVICE)] = NOT_MEASURED
            for (checkpoint, device), watts in sorted(idle_by.items()):
                idle.add_metric([checkpoint, device], watts)
            replicas = GaugeMetricFamily(n.REPLICAS.name, n.REPLICAS.help, labels=n.REPLICAS.labels)
            for checkpoint, count in sorted(self._replicas.items()):
                replicas.add_metric([checkpoint], float(count))
            families = [*fams.values(), *hists.values(), cpu, energy, power, idle, replicas]
        yield from families  # outside the lock: a generator holds it across yields

    def start(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> str:
        self._server, _ = start_http_server(port, addr=host, registry=self.registry)
        bound = self._server.server_address[1]
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{bound}/metrics"
        return self.url

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
