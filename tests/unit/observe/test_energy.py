"""Energy arithmetic through fakes at the Zeus boundary: a scripted ZeusMonitor, or Zeus's device layer
(GPUs, CPUs) under a real ZeusMonitor. Worked answers are in the comments."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence

import pytest
import zeus.device.cpu
import zeus.device.gpu
import zeus.device.gpu.nvidia
import zeus.monitor.energy
from zeus.device.cpu.common import CpuDramMeasurement, CPUs, ZeusCPUInitError, ZeusCPUNoPermissionError
from zeus.device.gpu.common import GPUs, ZeusGPUInitError, ZeusGPULostError
from zeus.device.soc.common import ZeusSoCInitError
from zeus.monitor.energy import Measurement, ZeusMonitor

from serve_bench.observe.energy import (
    NO_GPU,
    NO_RAPL,
    RAPL_NO_PERMISSION,
    EnergyWindow,
    NotMeasured,
    ZeusEnergyMeter,
    idle_baseline,
    probe,
    server_gpus,
    stage_energy,
)

# --- fakes -------------------------------------------------------------------------------------------------


class FakeCPUs(CPUs):
    """RAPL packages whose cumulative counters (mJ) are read from scripted lists, one value per read."""

    def __init__(self, cpu_mj: list[list[float]], dram_mj: list[list[float]] | None = None) -> None:
        self.cpu_mj, self.dram_mj = cpu_mj, dram_mj

    def __del__(self) -> None:
        pass

    @property
    def cpus(self) -> Sequence:
        return [None] * len(self.cpu_mj)

    def get_total_energy_consumption(self, index: int) -> CpuDramMeasurement:
        return CpuDramMeasurement(self.cpu_mj[index].pop(0), self.dram_mj[index].pop(0) if self.dram_mj else None)

    def supports_get_dram_energy_consumption(self, index: int) -> bool:
        return self.dram_mj is not None


class FakeGPUs(GPUs):
    """GPUs with NVML's total-energy counter (mJ since driver load), read from scripted lists."""

    def __init__(self, total_mj: list[list[int]]) -> None:
        self.total_mj = total_mj

    def __del__(self) -> None:
        pass

    @property
    def gpus(self) -> Sequence:
        return [None] * len(self.total_mj)

    def supports_get_total_energy_consumption(self, gpu_index: int) -> bool:
        return True

    def get_total_energy_consumption(self, gpu_index: int) -> int:
        return self.total_mj[gpu_index].pop(0)


class ScriptedMonitor(ZeusMonitor):
    """A ZeusMonitor that hands back scripted Measurements; it checks serve-bench never asks for a CUDA sync."""

    def __init__(self, measurements: list[Measurement | Exception], *, gpu_indices: list[int],
                 cpu_indices: list[int] = (), dram: bool = False) -> None:
        self.measurements = list(measurements)
        self.gpu_indices, self.cpu_indices = list(gpu_indices), list(cpu_indices)
        self.cpus = FakeCPUs([[]] * len(self.cpu_indices), [[]] * len(self.cpu_indices) if dram else None)
        self.open: set[str] = set()

    def begin_window(self, key: str, sync_execution: bool = True, restart: bool = False) -> None:
        assert not sync_execution
        self.open.add(key)

    def end_window(self, key: str, sync_execution: bool = True, cancel: bool = False) -> Measurement:
        assert not sync_execution
        self.open.remove(key)
        m = self.measurements.pop(0)
        if isinstance(m, Exception):
            raise m
        return m


def no_sleep(seconds: float) -> None:
    pass


@pytest.fixture
def devices(monkeypatch: pytest.MonkeyPatch):
    """Install fake GPUs/CPUs (or errors) where Zeus looks them up; returns the installer."""

    def install(gpus: GPUs | Exception, cpus: CPUs | Exception) -> None:
        def get_gpus(ensure_homogeneous: bool = False) -> GPUs:
            if isinstance(gpus, Exception):
                raise gpus
            return gpus

        def get_cpus() -> CPUs:
            if isinstance(cpus, Exception):
                raise cpus
            return cpus

        def get_soc():
            raise ZeusSoCInitError("no SoC")

        for module in (zeus.device.gpu, zeus.monitor.energy):
            monkeypatch.setattr(module, "get_gpus", get_gpus)
        for module in (zeus.device.cpu, zeus.monitor.energy):
            monkeypatch.setattr(module, "get_cpus", get_cpus)
        monkeypatch.setattr(zeus.monitor.energy, "get_soc", get_soc)

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return install


def all_figures(result: dict) -> list:
    keys = ("energy_joules", "net_energy_joules", "energy_joules_by_device", "average_power_watts", "duration_s")
    nested = ("energy_per_output_token_joules", "energy_per_request_joules", "output_tokens_per_joule")
    return [result[k] for k in keys] + [result[k][b] for k in nested for b in ("gross", "net")]


# --- windows ------------------------------------------------------------------------------------------------


@pytest.mark.unit
def test_a_window_names_every_device_and_sums_them() -> None:
    monitor = ScriptedMonitor([Measurement(time=10.0, gpu_energy={0: 2000.0, 1: 1800.0}, cpu_energy={0: 500.0},
                                           dram_energy={0: 100.0})], gpu_indices=[0, 1], cpu_indices=[0], dram=True)
    meter = ZeusEnergyMeter(monitor, gpu_names={0: "gpu2", 1: "gpu3"})
    assert meter.available and meter.reason is None
    assert meter.devices == ["gpu2", "gpu3", "cpu0", "dram0"]
    meter.begin_window("stage")
    window = meter.end_window("stage")
    assert window == EnergyWindow(10.0, {"gpu2": 2000.0, "gpu3": 1800.0, "cpu0": 500.0, "dram0": 100.0})
    assert window.total_joules == 4400.0 and window.reason is None


@pytest.mark.unit
def test_window_keys_are_checked() -> None:
    meter = ZeusEnergyMeter(ScriptedMonitor([], gpu_indices=[0]))
    meter.begin_window("a")
    with pytest.raises(ValueError, match="already open"):
        meter.begin_window("a")
    with pytest.raises(ValueError, match="not begun"):
        meter.end_window("b")


@pytest.mark.unit
def test_stage_energy_gross_and_net_of_idle() -> None:
    # GPU: 4000 J over 10 s: 400 W. Idle 100 W → net 4000 − 100 × 10 = 3000 J.
    # 1000 output tokens: 4.0 J/token gross, 3.0 net; 10 requests: 400 and 300 J/request;
    # tokens per joule 1000/4000 and 1000/3000. The CPU package's 400 J is beside it, never in it.
    window = EnergyWindow(10.0, {"gpu0": 4000.0, "cpu0": 400.0})
    r = stage_energy(window, output_tokens=1000, requests=10, idle_watts=100.0)
    assert r["measured"] and r["reason"] is None and r["net_reason"] is None
    assert (r["scope"], r["scope_devices"]) == ("gpu", ["gpu0"])
    assert r["energy_joules"] == 4000.0 and r["net_energy_joules"] == 3000.0 and r["duration_s"] == 10.0
    assert r["energy_joules_by_device"] == {"gpu0": 4000.0, "cpu0": 400.0}
    assert r["energy_per_output_token_joules"] == pytest.approx({"gross": 4.0, "net": 3.0})
    assert r["energy_per_request_joules"] == pytest.approx({"gross": 400.0, "net": 300.0})
    assert r["output_tokens_per_joule"] == pytest.approx({"gross": 1000 / 4000, "net": 1000 / 3000})
    assert r["average_power_watts"] == 400.0 and r["idle_power_watts"] == 100.0
    host = r["host"]
    assert host["devices"] == ["cpu0"] and host["energy_joules"] == 400.0
    assert host["energy_per_output_token_joules"] == pytest.approx({"gross": 0.4, "net": None})
    assert host["net_reason"] == "no idle baseline"  # the 100 W given is the headline's
    assert [f["check"] for f in r["flags"]] == ["window"] and "10.0 s window" in r["flags"][0]["reason"]


@pytest.mark.unit
def test_without_a_gpu_the_host_is_the_headline() -> None:
    r = stage_energy(EnergyWindow(40.0, {"cpu0": 2000.0, "dram0": 400.0}), output_tokens=600, requests=6,
                     idle_by_device={"cpu0": 20.0, "dram0": 5.0})
    assert (r["scope"], r["scope_devices"], r["host"]) == ("host", ["cpu0", "dram0"], None)
    assert r["energy_joules"] == 2400.0 and r["net_energy_joules"] == 2400.0 - 25.0 * 40
    assert r["flags"] == []


@pytest.mark.unit
def test_too_few_counter_readings_are_flagged_not_averaged() -> None:
    window = EnergyWindow(40.0, {"gpu0": 8000.0}, samples=6)
    r = stage_energy(window, output_tokens=100, requests=1, min_samples=10)
    assert not r["measured"] and r["energy_joules"] is None and r["samples"] == 6
    assert "only 6 counter reading(s)" in r["reason"] and "fewer than 10" in r["reason"]
    assert stage_energy(EnergyWindow(40.0, {"gpu0": 8000.0}, samples=10), output_tokens=100, requests=1,
                        min_samples=10)["energy_joules"] == 8000.0


@pytest.mark.unit
@pytest.mark.parametrize(("joules", "says"), [(40 * 45.0, "below its idle 50.0 W"),
                                              (40 * 750.0, "above its board limit 700 W")])
def test_power_outside_idle_and_the_board_limit_is_flagged(joules: float, says: str) -> None:
    r = stage_energy(EnergyWindow(40.0, {"gpu0": joules}), output_tokens=100, requests=1,
                     idle_by_device={"gpu0": 50.0}, power_limits_w={"gpu0": 700.0})
    assert r["measured"] and [f["check"] for f in r["flags"]] == ["power"] and says in r["flags"][0]["reason"]
    fine = stage_energy(EnergyWindow(40.0, {"gpu0": 40 * 300.0}), output_tokens=100, requests=1,
                        idle_by_device={"gpu0": 50.0}, power_limits_w={"gpu0": 700.0})
    assert fine["flags"] == []


@pytest.mark.unit
def test_gpu_state_flags_name_throttling_clock_moves_and_heat_anywhere_in_the_window() -> None:
    from serve_bench.observe.host_noise import gpu_state_flags

    calm = {"temperature_c": 60, "sm_clock_mhz": 1980, "throttle_reasons": []}
    assert gpu_state_flags([[calm]] * 5, [3]) == [] and gpu_state_flags([], [3]) == []
    hot = {"temperature_c": 88, "sm_clock_mhz": 1500, "throttle_reasons": ["hardware slowdown"]}
    flags = gpu_state_flags([[calm], [calm], [hot], [calm]], [3])  # mid-window, back to calm by its end
    assert [f["check"] for f in flags] == ["throttle", "clock", "temperature"]
    assert "gpu3 throttled (hardware slowdown)" in flags[0]["reason"] and "1500 and 1980" in flags[1]["reason"]


@pytest.mark.unit
def test_idle_baseline_then_a_stage_net_of_it() -> None:
    # idle: 1400 J (gpu0) + 600 J (cpu0) over 20 s → 70 W + 30 W = 100 W
    # stage: 3000 J (gpu0) + 1000 J (cpu0) over 8 s → GPU: 3000 J gross, 3000 − 70 × 8 = 2440 J net; 800 tokens
    # → 3.75 and 3.05 J/token. Beside it the host: 1000 J, 1000 − 30 × 8 = 760 J net
    monitor = ScriptedMonitor([Measurement(20.0, {0: 1400.0}, {0: 600.0}), Measurement(8.0, {0: 3000.0}, {0: 1000.0})],
                              gpu_indices=[0], cpu_indices=[0])
    meter = ZeusEnergyMeter(monitor)
    slept: list[float] = []
    idle = idle_baseline(meter, 20.0, sleep=slept.append)
    assert slept == [20.0] and not monitor.open
    assert idle.measured and idle.reason is None
    assert idle.watts_by_device == {"gpu0": 70.0, "cpu0": 30.0} and idle.total_watts == 100.0
    assert idle.to_dict()["idle_power_watts"] == 100.0
    meter.begin_window("stage-1")
    r = stage_energy(meter.end_window("stage-1"), output_tokens=800, requests=8, idle_watts=idle.total_watts,
                     idle_by_device=idle.watts_by_device)
    assert (r["energy_joules"], r["net_energy_joules"], r["idle_power_watts"]) == (3000.0, 2440.0, 70.0)
    assert r["energy_per_output_token_joules"] == pytest.approx({"gross": 3.75, "net": 3.05})
    assert (r["host"]["energy_joules"], r["host"]["net_energy_joules"]) == (1000.0, 760.0)


@pytest.mark.unit
def test_net_at_or_below_zero_is_reported_and_flagged_not_clamped() -> None:
    # 4400 J over 10 s with idle at 500 W: net 4400 − 5000 = −600 J; −0.6 J/token as computed; tokens/J undefined
    r = stage_energy(EnergyWindow(10.0, {"gpu0": 4400.0}), output_tokens=1000, requests=10, idle_watts=500.0)
    assert r["measured"] and r["net_energy_joules"] == pytest.approx(-600.0)
    assert r["energy_per_output_token_joules"]["net"] == pytest.approx(-0.6)
    assert r["output_tokens_per_joule"]["gross"] == pytest.approx(1000 / 4400)
    assert r["output_tokens_per_joule"]["net"] is None
    assert "≤ 0" in r["net_reason"] and "not meaningful" in r["net_reason"]


@pytest.mark.unit
def test_without_an_idle_baseline_net_is_null_and_says_why() -> None:
    r = stage_energy(EnergyWindow(10.0, {"gpu0": 4400.0}), output_tokens=1000, requests=10, idle_watts=None)
    assert r["measured"] and r["energy_joules"] == 4400.0
    assert r["net_energy_joules"] is None and r["net_reason"] == "no idle baseline"
    assert [r[k]["net"] for k in ("energy_per_output_token_joules", "energy_per_request_joules",
                                  "output_tokens_per_joule")] == [None, None, None]


@pytest.mark.unit
def test_no_tokens_or_requests_give_null_per_unit_figures_not_zero() -> None:
    r = stage_energy(EnergyWindow(10.0, {"gpu0": 4400.0}), output_tokens=0, requests=0, idle_watts=100.0)
    assert r["energy_per_output_token_joules"] == {"gross": None, "net": None}
    assert r["energy_per_request_joules"] == {"gross": None, "net": None}
    assert r["output_tokens_per_joule"] == {"gross": 0.0, "net": 0.0}  # no tokens for 4400 J: a measured zero


# --- counters that go backwards ------------------------------------------------------------------------------


@pytest.mark.unit
def test_a_gpu_counter_reset_comes_back_negative_from_zeus_and_is_refused(devices) -> None:
    # NVML's counter (mJ since driver load) read 5,000,000 at begin, then the driver reloaded: 1,000 at the end.
    # The CPU package read 10,000 then 13,000 mJ: 3 J.
    devices(FakeGPUs([[5_000_000, 1_000]]), FakeCPUs([[10_000.0, 13_000.0]]))
    meter = probe([0])
    assert meter.devices == ["gpu0", "cpu0"]
    meter.begin_window("stage")
    window = meter.end_window("stage")
    # what Zeus hands back is end − begin: −4999 J; serve-bench keeps the CPU's 3 J and refuses the window
    assert window.joules == {"cpu0": 3.0}
    assert "gpu0" in window.invalid and "-4999.000 J" in window.invalid["gpu0"]
    assert window.total_joules is None
    r = stage_energy(window, output_tokens=100, requests=1, idle_watts=50.0)
    assert not r["measured"] and "gpu0: counter went backwards" in r["reason"]
    assert all(v is None for v in all_figures(r))


@pytest.mark.unit
@pytest.mark.parametrize(("reading", "why"), [(-262_143.328, "counter went backwards (-262143.328 J"),
                                              (float("nan"), "unusable reading (nan J)"),
                                              (0.0, "counter did not advance")])
def test_a_backwards_or_unchanged_counter_is_refused(reading: float, why: str) -> None:
    # Zeus adds RAPL's range once its polling process has seen a wrap; a window that ends between the wrap and
    # that poll comes back about one range (262,143 J here) negative. Likewise a reading that is not a number,
    # or a counter that did not move (a window shorter than its update period): unknown, not zero.
    monitor = ScriptedMonitor([Measurement(10.0, {0: 2000.0}, {0: reading})], gpu_indices=[0], cpu_indices=[0])
    meter = ZeusEnergyMeter(monitor)
    meter.begin_window("stage")
    window = meter.end_window("stage")
    assert window.joules == {"gpu0": 2000.0} and window.total_joules is None
    assert window.invalid["cpu0"].startswith(why)


@pytest.mark.unit
def test_a_device_missing_from_a_measurement_spoils_the_window() -> None:
    monitor = ScriptedMonitor([Measurement(10.0, {0: 2000.0}, {0: 300.0}, dram_energy=None)],
                              gpu_indices=[0], cpu_indices=[0], dram=True)
    meter = ZeusEnergyMeter(monitor)
    meter.begin_window("w")
    window = meter.end_window("w")
    assert window.invalid == {"dram0": "no reading"} and window.total_joules is None


@pytest.mark.unit
def test_a_device_lost_mid_window_spoils_that_window_not_the_run() -> None:
    monitor = ScriptedMonitor([ZeusGPULostError("GPU is lost"), Measurement(5.0, {0: 900.0})], gpu_indices=[0])
    meter = ZeusEnergyMeter(monitor)
    meter.begin_window("a")
    lost = meter.end_window("a")
    assert lost.total_joules is None and "GPU is lost" in lost.reason
    r = stage_energy(lost, output_tokens=10, requests=1, idle_watts=None)
    assert not r["measured"] and "zeus end_window failed" in r["reason"]
    meter.begin_window("b")
    assert meter.end_window("b").total_joules == 900.0


@pytest.mark.unit
def test_a_window_of_no_duration_has_no_total() -> None:
    assert EnergyWindow(0.0, {"gpu0": 0.0}).total_joules is None


# --- nothing to measure ---------------------------------------------------------------------------------------


@pytest.mark.unit
def test_a_missing_meter_gives_null_figures_with_the_reason() -> None:
    meter = NotMeasured(f"{NO_GPU} and {NO_RAPL}")
    assert not meter.available and meter.devices == [] and meter.reason == f"{NO_GPU} and {NO_RAPL}"
    idle = idle_baseline(meter, 20.0, sleep=no_sleep)
    assert not idle.measured and idle.reason == meter.reason
    assert idle.to_dict() == {"measured": False, "reason": meter.reason, "duration_s": None,
                              "idle_power_watts": None, "idle_power_watts_by_device": None}
    meter.begin_window("stage")
    r = stage_energy(meter.end_window("stage"), output_tokens=1000, requests=10, idle_watts=idle.total_watts,
                     not_measured_reason=meter.reason)
    assert not r["measured"] and r["reason"] == meter.reason and r["idle_power_watts"] is None
    assert all(v is None for v in all_figures(r))
    assert '"energy_joules": null' in json.dumps(r) and ": 0" not in json.dumps(r)


@pytest.mark.unit
def test_probe_reads_gpus_and_says_what_it_left_out(devices, monkeypatch: pytest.MonkeyPatch) -> None:
    # this process sees machine GPUs 2 and 3 (Zeus's 0 and 1); the server uses 3 and 5
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    devices(FakeGPUs([[0, 1_500], [0, 2_500]]), ZeusCPUInitError("RAPL unvailable Failed to initialize"))
    meter = probe([3, 5])
    assert meter.available and meter.devices == ["gpu3"]
    assert meter.unmeasured == ["gpu5: not visible to this process (it sees GPUs [2, 3])", NO_RAPL]
    meter.begin_window("w")
    assert meter.end_window("w").joules == {"gpu3": 2.5}


@pytest.mark.unit
def test_probe_with_rapl_it_may_not_read(devices) -> None:
    devices(FakeGPUs([[0, 1_000]]), ZeusCPUNoPermissionError("permission denied"))
    meter = probe(None)
    assert meter.devices == ["gpu0"] and meter.unmeasured == [RAPL_NO_PERMISSION]


@pytest.mark.unit
def test_probe_cpu_only_server_with_rapl(devices) -> None:
    devices(FakeGPUs([]), FakeCPUs([[1_000.0, 4_000.0]], [[500.0, 700.0]]))
    meter = probe([], want_cpu=True)
    assert meter.devices == ["cpu0", "dram0"]
    meter.begin_window("w")
    assert meter.end_window("w").joules == pytest.approx({"cpu0": 3.0, "dram0": 0.2})


@pytest.mark.unit
def test_probe_with_nothing_to_read_is_not_measured(devices) -> None:
    devices(FakeGPUs([]), ZeusCPUInitError("RAPL unvailable Failed to initialize"))
    meter = probe(None)
    assert isinstance(meter, NotMeasured) and meter.reason == f"{NO_GPU} and {NO_RAPL}"


@pytest.mark.unit
def test_probe_on_this_machine_measures_what_it_has() -> None:
    """Wherever it runs: a host with neither counter says so; one with a counter measures a second of it (every
    device's energy positive), or names why it cannot (RAPL readable only by root)."""
    meter = probe(None)
    if not (os.path.exists("/sys/class/powercap") or os.path.exists("/dev/nvidiactl")):
        assert isinstance(meter, NotMeasured)
        assert meter.reason == "no NVIDIA GPU (NVML not available) and no RAPL (/sys/class/powercap absent)"
        return
    if not meter.available:
        assert meter.reason and ("RAPL" in meter.reason or "GPU" in meter.reason), meter.reason
        return
    meter.begin_window("here")
    time.sleep(1.0)
    window = meter.end_window("here")
    assert window.invalid == {} and window.joules and all(j > 0 for j in window.joules.values()), window
    assert set(window.joules) == set(meter.devices)


@pytest.mark.unit
def test_probe_gpu_error_with_nvml_present_is_a_reason_not_a_crash(devices, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(zeus.device.gpu.nvidia, "nvml_is_available", lambda: True)
    devices(ZeusGPUInitError("CUDA_VISIBLE_DEVICES contains MIG devices"), FakeCPUs([[0.0, 1.0]]))
    meter = probe(None, want_cpu=False)
    assert isinstance(meter, NotMeasured)
    assert meter.reason == "GPUs not measured: CUDA_VISIBLE_DEVICES contains MIG devices"


@pytest.mark.unit
def test_probe_with_gpus_named_by_uuid_says_so(devices, monkeypatch: pytest.MonkeyPatch) -> None:
    # Zeus itself would fail on int("GPU-…") with a ValueError out of ZeusMonitor()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-8f6a2c1e")
    devices(FakeGPUs([[0, 1]]), ZeusCPUInitError("RAPL unvailable Failed to initialize"))
    meter = probe(None)
    assert isinstance(meter, NotMeasured)
    assert meter.reason == ("GPUs not measured: CUDA_VISIBLE_DEVICES='GPU-8f6a2c1e' is not a list of GPU numbers"
                            f" and {NO_RAPL}")


# --- which GPUs the server uses -----------------------------------------------------------------------------


@pytest.mark.unit
@pytest.mark.parametrize(("args", "visible", "expected"), [
    ([], None, [0]),
    (["-tp", "2"], "4,5,6", [4, 5]),
    (["--tensor-parallel-size=2", "--pipeline-parallel-size", "2"], "0,1,2,3,4,5,6,7", [0, 1, 2, 3]),
    (["--tensor_parallel_size", "4", "--max-model-len", "4096"], None, [0, 1, 2, 3]),
    (["-tp=2", "-pp=1", "-dp", "2"], "7,6,5,4", [7, 6, 5, 4]),
    (["-tp", "2", "-tp", "4"], None, [0, 1, 2, 3]),  # the last one counts, as in argparse
    (["-tp", "4"], "1,2", [1, 2]),  # fewer than asked: vLLM will refuse to start; measure what is there
    (["-tp", "1"], "", []),
    (["-tp", "1"], "GPU-8f6a2c1e-0000-0000-0000-000000000000", None),
])
def test_server_gpus(args: list[str], visible: str | None, expected: list[int] | None) -> None:
    env = {} if visible is None else {"CUDA_VISIBLE_DEVICES": visible}
    assert server_gpus(args, env) == expected


@pytest.mark.unit
def test_server_gpus_refuses_a_bad_size() -> None:
    with pytest.raises(ValueError, match="--tensor-parallel-size 'two'"):
        server_gpus(["-tp", "two"], {})
