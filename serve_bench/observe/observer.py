"""Everything a run observes beside its own records, behind the few calls the pipeline makes.

    start()                 the exporter and the energy track, for the whole run
    checkpoint_started()    the server's metrics: a time series while it serves, a scrape at each boundary;
                            the idle power with the model loaded, before any request
    record()                every finished request (exporter, per-stage reconciliation)
    stage_begun()           the host's CPU accounts at a stage's start
    stage_done()            what goes into the stage's result: the server's view reconciled with the
                            client's, the energy over the stage's steady window, what else ran on the host
    checkpoint_done(), close()

The pipeline stays the only orchestrator; this module only watches.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from serve_bench.errors import ConfigError
from serve_bench.load.live import LiveStage
from serve_bench.measure.records import RequestRecord
from serve_bench.observe import server_metrics, vllm_names
from serve_bench.observe.energy import EnergyMeter, IdleBaseline, idle_baseline, probe, scope, stage_energy
from serve_bench.observe.energy_track import MIN_SAMPLES, EnergyTrack
from serve_bench.observe.exporter import DEFAULT_PORT, ENERGY_BASES, Exporter
from serve_bench.observe.host_noise import HostNoise, gpu_state_flags, nvml_state
from serve_bench.serve.server import port_in_use


class Observer:
    def __init__(self, *, slos_ms: Mapping[str, float] | None, metrics_host: str = "127.0.0.1",
                 metrics_port: int | None = None, gpus: list[int] | None = None, idle_s: float = 10.0,
                 meter: EnergyMeter | None = None) -> None:
        """``gpus``: the server's GPUs (None: every visible one); ``meter`` replaces the probe (tests)."""
        self.live = LiveStage()
        self.exporter = Exporter(self.live, slos_ms)
        self.meter = meter if meter is not None else probe(gpus)
        self.track = EnergyTrack(self.meter, self.exporter)
        self.idle_s = idle_s
        self.min_energy_samples = MIN_SAMPLES
        self.idle = IdleBaseline(None, None, None, self.meter.reason)
        self.host, self.port = metrics_host, metrics_port
        self.gpus = gpus
        self.noise: HostNoise | None = None
        self.notes: list[str] = []
        self._urls: list[str] = []
        self._replica_gpus: list[list[int]] = []
        self._key: str | None = None
        self._path: Callable[[int, str], Path] | None = None
        self._last_text: server_metrics.Text | list[server_metrics.Text] = None
        self._scraper: server_metrics.ServerScraper | None = None
        self._records: dict[tuple[str | None, str], list[RequestRecord]] = defaultdict(list)

    def start(self) -> str:
        """Serve /metrics; the default port falls back to a free one when busy, an explicit one must be free."""
        port = DEFAULT_PORT if self.port is None else self.port
        if port and port_in_use(self.host, port):
            if self.port is not None:
                raise ConfigError(f"metrics port {port} on {self.host} is already in use",
                                  hint="choose another --metrics-port, or 0 for any free port")
            self.notes.append(f"metrics port {DEFAULT_PORT} is in use; the exporter took a free port instead")
            port = 0
        try:
            url = self.exporter.start(self.host, port)
        except OSError as err:
            raise ConfigError(f"cannot serve metrics on {self.host}:{port}: {err.strerror}",
                              hint="check --metrics-host and --metrics-port") from None
        if not self.meter.available:
            self.notes.append(f"energy: not measured ({self.meter.reason})")
        else:
            self.notes += [f"energy: not measured for {part}" for part in self.meter.unmeasured]
        if self.meter.available:  # NVML's state of the server's GPUs, read by the track once a second
            self.track.state = nvml_state(self.gpus)
        self.track.start()
        return url

    def checkpoint_started(self, name: str, url: str, key: str | None, boundary_path: Callable[[int, str], Path],
                           timeseries_path: Path, endpoints: Sequence[str] = (),
                           replica_gpus: Sequence[Sequence[int]] = ()) -> None:
        """``boundary_path(index, when)``: where the scrape after stage ``index`` goes (0: before the first);
        ``endpoints``: a fleet's every server (each one scraped, none of them other work); ``replica_gpus``:
        launched replicas' GPUs, each one's (a stage's energy is also given replica by replica)."""
        self.live.checkpoint = name
        self._replica_gpus = [list(g) for g in replica_gpus]
        servers = list(endpoints or [url])
        self.exporter.set_replicas(name, len(servers))
        self._urls, self._key, self._path = servers, key, boundary_path
        self._records.clear()
        self._last_text = self._boundary(0, "start")
        self._scraper = server_metrics.ServerScraper(servers, key, timeseries_path)
        self._scraper.start()
        if self.noise is None or self.noise.server_urls != servers:
            self.noise = HostNoise(servers, self.track.state)
        if self.meter.available and self.idle_s > 0:
            # the scraper's and the exporter's threads go on meanwhile
            self.idle = idle_baseline(self.meter, self.idle_s, key=f"serve-bench-idle-{name}")
            for device, watts in (self.idle.watts_by_device or {}).items():
                self.exporter.set_idle_power(name, device, watts)
        elif self.meter.available:
            self.idle = IdleBaseline(None, None, None, "idle baseline skipped (energy.idle_s is 0)")

    def dashboard_names(self) -> dict[str, list[str]] | None:
        """Which of the dashboards' vLLM metric names the server (the first endpoint) does not export, from its
        first scrape (:func:`serve_bench.observe.vllm_names.check_text`)."""
        first = self._last_text[0] if isinstance(self._last_text, list) else self._last_text
        return vllm_names.check_text(first)

    def stage_begun(self) -> None:
        """A stage's first request is about to go: the host's CPU accounts start here."""
        if self.noise is not None:
            self.noise.begin()

    def record(self, record: RequestRecord) -> None:
        self.exporter.observe(record, self.live.checkpoint)
        self._records[(record.profile, record.stage)].append(record)

    def stage_done(self, index: int, profile: str, result: Any, load: str) -> dict[str, Any]:
        """Extra fields for the stage's result file."""
        key = (self.live.checkpoint, profile, result.stage)
        self.exporter.stage_target(key, result.kind, load, result.target)
        text = self._boundary(index, f"after-{result.stage}")
        records = self._records.pop((profile, result.stage), [])
        reconciled = server_metrics.reconcile(self._last_text, text, records, result.warmup_end_s,
                                              self._urls if len(self._urls) > 1 else ())
        self._last_text = text
        energy = self._stage_energy(result.summary)
        for basis in ENERGY_BASES:
            self.exporter.set_energy_per_token(key, basis, energy["energy_per_output_token_joules"][basis])
        host = self.noise.stage() if self.noise is not None else None
        return {"server": reconciled, "energy": energy, "host": host,
                "host_contended": bool(host and host["contended"])}

    def _stage_energy(self, s: Mapping[str, Any]) -> dict[str, Any]:
        """Over the steady window (every user busy, or the schedule running), else the whole measured part."""
        if s.get("steady_window_start_s") is not None:
            a, b, basis = s["steady_window_start_s"], s["steady_window_end_s"], f"steady window: {s['steady_basis']}"
            tokens = round(s["steady_output_throughput"] * s["steady_duration"])
            requests = round(s["steady_request_throughput"] * s["steady_duration"])
        else:
            a, b, basis = s.get("first_send_s"), s.get("last_response_s"), "the whole stage (it has no steady window)"
            tokens, requests = s.get("total_output_tokens", 0), s.get("completed", 0)
        window = self.track.window(a, b) if a is not None and b is not None else None
        why = self.meter.reason or ("the stage is outside the energy series" if window is None else None)
        states = self.track.states_between(a, b) if a is not None and b is not None else []
        numbers = self.gpus if self.gpus is not None else range(len(states[-1]) if states else 0)
        limits = {f"gpu{g}": st["power_limit_w"] for g, st in zip(numbers, states[-1] if states else [])
                  if st.get("power_limit_w")}
        out = stage_energy(window, output_tokens=tokens, requests=requests, idle_watts=self.idle.total_watts,
                           idle_by_device=self.idle.watts_by_device, not_measured_reason=why,
                           min_samples=self.min_energy_samples, power_limits_w=limits)
        if out["measured"]:
            out["flags"] += gpu_state_flags(states, self.gpus)
        by_device = out.get("energy_joules_by_device")
        if by_device and self._replica_gpus:  # the fleet's total is the sum of these
            out["energy_joules_by_replica"] = [sum(by_device.get(f"gpu{g}", 0.0) for g in gpus)
                                               for gpus in self._replica_gpus]
        return {**out, "window": basis, "output_tokens": tokens, "requests": requests, "idle": self.idle.to_dict()}

    def joules_per_token_so_far(self, since_s: float | None, output_tokens: int) -> float | None:
        """The running stage's gross J per output token so far, for the live view: the energy series from
        the stage's start to its last tick over the tokens of the requests finished by now (requests still
        in flight make it a little high until the stage ends; the stage's own figure uses its steady window)."""
        if not self.meter.available or since_s is None or not output_tokens or not self.track.times:
            return None
        window = self.track.window(since_s, self.track.times[-1])
        if window is None or window.invalid or window.total_joules is None:
            return None
        _, heads, _ = scope(list(window.joules))  # the same scope as the stage's own figure
        return sum(window.joules[d] for d in heads) / output_tokens

    def checkpoint_done(self) -> None:
        if self._scraper is not None:
            self._scraper.stop()
            self._scraper = None

    def close(self) -> None:
        self.checkpoint_done()
        self.track.stop()
        self.exporter.close()

    def _boundary(self, index: int, when: str) -> server_metrics.Text | list[server_metrics.Text]:
        """The server's /metrics now (a fleet's: each endpoint's, in ``NN-when-eK.prom``), kept in the run
        directory; a server without them is noted, not fatal."""
        assert self._path is not None
        texts = [server_metrics.fetch(url, self._key) for url in self._urls]
        path = self._path(index, when)
        path.parent.mkdir(parents=True, exist_ok=True)
        fleet = len(self._urls) > 1
        for k, (url, text) in enumerate(zip(self._urls, texts), 1):
            where = path.with_name(f"{path.stem}-e{k}{path.suffix}") if fleet else path
            head = f"# endpoint {url}\n" if fleet else ""
            where.write_text(head + (text if text is not None else "# /metrics unreachable, or not answering 200\n"))
        return texts if fleet else texts[0]
