"""Energy over windows known only afterwards (a stage's steady window), from a counter read every tick; and
the observer's stage figures, with a fake energy counter standing in for the GPU this machine lacks."""

from __future__ import annotations

import math
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from serve_bench.measure.clock import now_s
from serve_bench.observe.energy import EnergyMeter, EnergyWindow
from serve_bench.observe.energy_track import EnergyTrack
from serve_bench.observe.observer import Observer

pytestmark = pytest.mark.unit


class FakeCounter(EnergyMeter):
    """A GPU's total-energy counter: power set by the test, integrated over wall time."""

    def __init__(self, watts: float) -> None:
        self.available, self.reason, self.devices, self.unmeasured = True, None, ["gpu0"], []
        self.watts, self._energy, self._since = watts, 0.0, now_s()
        self._open: dict[str, float] = {}
        self.broken = False

    def _read(self, t: float) -> float:
        self._energy += self.watts * (t - self._since)
        self._since = t
        return self._energy

    def set_watts(self, watts: float) -> None:
        self._read(now_s())
        self.watts = watts

    def begin_window(self, key: str) -> None:
        t = now_s()
        self._open[key] = (t, self._read(t))

    def end_window(self, key: str) -> EnergyWindow:
        t = now_s()
        t0, e0 = self._open.pop(key)
        joules = self._read(t) - e0
        if self.broken:
            return EnergyWindow(t - t0, {"gpu0": -joules}, {"gpu0": "the counter went backwards"})
        return EnergyWindow(t - t0, {"gpu0": joules})


def test_a_window_between_ticks_is_interpolated() -> None:
    meter = FakeCounter(100.0)
    track = EnergyTrack(meter)
    track.times.append(track._open())
    track.totals.append({"gpu0": 0.0})
    for _ in range(4):
        time.sleep(0.05)
        track.tick()
    a, b = track.times[0] + 0.03, track.times[-1] - 0.02  # inside the series, between ticks
    w = track.window(a, b)
    # the track and the counter read the clock a few microseconds apart (milliseconds on a loaded machine)
    assert w is not None and w.total_joules == pytest.approx(100.0 * (b - a), rel=5e-3)
    assert track.window(track.times[0] - 1, b) is None  # before the series: not covered
    assert track.window(a, track.times[-1] + 1) is None
    meter.broken = True  # a counter reset inside a later tick: windows across it are refused
    time.sleep(0.05)
    track.tick()
    bad = track.window(a, track.times[-1])
    assert bad is not None and bad.total_joules is None and "backwards" in bad.reason


def test_stage_energy_gross_and_net_of_idle_from_the_observer() -> None:
    meter = FakeCounter(40.0)  # idle: 40 W
    obs = Observer(slos_ms=None, metrics_port=0, meter=meter, idle_s=0.2)
    url = obs.start()
    try:
        obs.checkpoint_started("base", "http://127.0.0.1:9", None, lambda i, w: _tmp() / f"{i}-{w}.prom",
                               _tmp() / "timeseries.jsonl")
        assert obs.idle.total_watts == pytest.approx(40.0, rel=5e-3)
        meter.set_watts(140.0)  # under load; ticks at its start and end, so the window is exact
        obs.track.tick()
        a = obs.track.times[-1]
        for _ in range(12):  # enough counter readings for a figure (MIN_SAMPLES)
            time.sleep(0.025)
            obs.track.tick()
        b = obs.track.times[-1]
        summary = {"steady_window_start_s": a, "steady_window_end_s": b, "steady_basis": "all 2 users busy",
                   "steady_duration": b - a, "steady_output_throughput": 100 / (b - a),
                   "steady_request_throughput": 4 / (b - a)}
        energy = obs._stage_energy(summary)
        text = urllib.request.urlopen(url, timeout=5).read().decode()
    finally:
        obs.close()
    d = b - a
    assert energy["measured"] and energy["output_tokens"] == 100 and energy["requests"] == 4
    assert energy["energy_joules"] == pytest.approx(140.0 * d, rel=5e-3)
    assert energy["energy_per_output_token_joules"]["gross"] == pytest.approx(140.0 * d / 100, rel=5e-3)
    assert energy["energy_per_output_token_joules"]["net"] == pytest.approx(100.0 * d / 100, rel=5e-3)
    assert energy["energy_per_request_joules"]["gross"] == pytest.approx(140.0 * d / 4, rel=5e-3)
    assert energy["idle"]["idle_power_watts"] == pytest.approx(40.0, rel=5e-3)
    samples = {s.name + str(sorted(s.labels.items())): s.value
               for f in text_string_to_metric_families(text) for s in f.samples}
    assert samples["serve_bench_idle_power_watts[('checkpoint', 'base'), ('device', 'gpu0')]"] == pytest.approx(
        40.0, rel=5e-3)
    assert samples["serve_bench_energy_joules_total[('device', 'gpu0')]"] > 0


class SlowCounter(FakeCounter):
    """A counter that moves only every third reading, as NVML's does when read faster than it updates."""

    def __init__(self, watts: float) -> None:
        super().__init__(watts)
        self.reads = 0
        self.shown = 0.0

    def end_window(self, key: str) -> EnergyWindow:
        from serve_bench.observe.energy import STALE

        window = super().end_window(key)
        self.reads += 1
        if self.reads % 3:
            return EnergyWindow(window.duration_s, {}, {"gpu0": STALE})
        t = self._energy - self.shown  # everything since the last time it moved
        self.shown = self._energy
        return EnergyWindow(window.duration_s, {"gpu0": t})


def test_ticks_faster_than_the_counter_are_kept_and_few_readings_refuse_the_figure() -> None:
    meter = SlowCounter(100.0)
    obs = Observer(slos_ms=None, metrics_port=0, meter=meter, idle_s=0)
    track = obs.track
    track.times.append(track._open())
    track.totals.append({"gpu0": 0.0})
    for _ in range(45):
        time.sleep(0.01)
        track.tick()
    assert track.gaps == [], "an unchanged reading is the counter's resolution, not a gap"
    a, b = track.times[0], track.times[-1]
    whole = track.window(a, b)
    assert whole.invalid == {} and whole.samples == 15  # one reading in three moved
    assert whole.total_joules == pytest.approx(100.0 * (b - a), rel=0.02)
    short = obs._stage_energy({"steady_window_start_s": track.times[3], "steady_window_end_s": track.times[20],
                               "steady_basis": "x", "steady_duration": 1.0, "steady_output_throughput": 10.0,
                               "steady_request_throughput": 1.0})
    assert not short["measured"] and "counter reading(s)" in short["reason"] and short["samples"] < 10
    obs.close()


def test_the_gpus_state_is_read_beside_the_energy_and_flags_the_stage() -> None:
    from serve_bench.observe.energy_track import STATE_EVERY

    meter = FakeCounter(300.0)
    obs = Observer(slos_ms=None, metrics_port=0, meter=meter, idle_s=0, gpus=[0])
    readings = iter(range(1000))
    obs.track.state = lambda: [{"temperature_c": 70, "sm_clock_mhz": 1900 if next(readings) != 2 else 1200,
                                "throttle_reasons": []}]
    track = obs.track
    track.times.append(track._open())
    track.totals.append({"gpu0": 0.0})
    for _ in range(4 * STATE_EVERY):
        time.sleep(0.002)
        track.tick()
    a, b = track.times[0], track.times[-1]
    assert len(track.states_between(a, b)) == 4
    energy = obs._stage_energy({"steady_window_start_s": a, "steady_window_end_s": b, "steady_basis": "x",
                                "steady_duration": b - a, "steady_output_throughput": 10.0,
                                "steady_request_throughput": 1.0})
    assert energy["measured"]
    assert [f["check"] for f in energy["flags"]] == ["window", "clock"]
    assert "between 1200 and 1900 MHz" in energy["flags"][1]["reason"]
    obs.close()


def test_not_measured_is_null_with_the_reason_never_zero() -> None:
    from serve_bench.observe.energy import NotMeasured

    obs = Observer(slos_ms=None, metrics_port=0, meter=NotMeasured("no NVIDIA GPU (NVML not available)"))
    obs.start()
    try:
        energy = obs._stage_energy({"steady_window_start_s": None, "first_send_s": now_s() - 1,
                                    "last_response_s": now_s(), "total_output_tokens": 10, "completed": 2})
    finally:
        obs.close()
    assert energy["measured"] is False and "NVML" in energy["reason"]
    assert energy["energy_joules"] is None and energy["energy_per_output_token_joules"] == {"gross": None,
                                                                                            "net": None}
    assert any("not measured" in note for note in obs.notes)
    assert not math.isnan(energy["output_tokens"])


class TwoGpus(FakeCounter):
    """gpu2 and gpu3 at 100 W and 300 W: two replicas of one GPU each."""

    def __init__(self) -> None:
        super().__init__(400.0)
        self.devices = ["gpu2", "gpu3"]

    def end_window(self, key: str) -> EnergyWindow:
        window = super().end_window(key)
        total = window.joules["gpu0"]
        return EnergyWindow(window.duration_s, {"gpu2": total / 4, "gpu3": 3 * total / 4})


def test_a_fleets_stage_energy_is_given_replica_by_replica_and_in_total() -> None:
    obs = Observer(slos_ms=None, metrics_port=0, meter=TwoGpus(), idle_s=0)
    obs.start()
    try:
        obs.checkpoint_started("base", "http://127.0.0.1:9", None, lambda i, w: _tmp() / f"f{i}-{w}.prom",
                               _tmp() / "f-timeseries.jsonl", endpoints=["http://127.0.0.1:9", "http://127.0.0.1:10"],
                               replica_gpus=[[3], [2]])
        obs.track.tick()
        a = obs.track.times[-1]
        for _ in range(12):
            time.sleep(0.02)
            obs.track.tick()
        b = obs.track.times[-1]
        energy = obs._stage_energy({"steady_window_start_s": a, "steady_window_end_s": b, "steady_basis": "x",
                                    "steady_duration": b - a, "steady_output_throughput": 10 / (b - a),
                                    "steady_request_throughput": 1 / (b - a)})
    finally:
        obs.close()
    first, second = energy["energy_joules_by_replica"]
    assert first == pytest.approx(300.0 * (b - a), rel=5e-3) and second == pytest.approx(100.0 * (b - a), rel=5e-3)
    assert first + second == pytest.approx(energy["energy_joules"])


def _tmp():
    import tempfile
    from pathlib import Path

    global _TMP
    try:
        return _TMP
    except NameError:
        _TMP = Path(tempfile.mkdtemp())
        return _TMP


def test_the_running_stage_joules_per_token_so_far() -> None:
    meter = FakeCounter(200.0)
    observer = Observer(slos_ms=None, meter=meter)
    track = observer.track
    track.times.append(track._open())
    track.totals.append({"gpu0": 0.0})
    started = track.times[0]
    for _ in range(3):
        time.sleep(0.05)
        track.tick()
    span = track.times[-1] - started
    # 200 W over the span, over 40 tokens
    assert observer.joules_per_token_so_far(started, 40) == pytest.approx(200.0 * span / 40, rel=5e-3)
    assert observer.joules_per_token_so_far(started, 0) is None  # no token yet: nothing to divide by
    meter.broken = True
    time.sleep(0.02)
    track.tick()
    assert observer.joules_per_token_so_far(started, 40) is None  # an unusable tick inside: refused


def test_the_observer_threads_yield_to_the_load_process() -> None:
    import os
    import threading

    meter = FakeCounter(10.0)
    track = EnergyTrack(meter, tick_s=0.01)
    track.start()
    try:
        deadline = time.monotonic() + 5
        while len(track.times) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        tid = track._thread.native_id
        assert os.getpriority(os.PRIO_PROCESS, tid) > os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    finally:
        track.stop()
