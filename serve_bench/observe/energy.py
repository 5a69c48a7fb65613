"""Energy of the GPUs the server uses (and the CPU package and DRAM) through ML.ENERGY's Zeus.

Zeus's ``ZeusMonitor`` reads NVML's total-energy counter on Volta and newer
(and integrates power samples on older GPUs), RAPL for CPU packages and DRAM
(tracking RAPL's wrap-around), with the vocabulary used here:
``begin_window(key)`` / ``end_window(key)``.

Probe, degrade, say so. :func:`probe` never raises for missing hardware: it
returns a :class:`ZeusEnergyMeter` for what it found, with what it did not
find in ``unmeasured``, or a :class:`NotMeasured` meter carrying the reason.
Every figure derived here is ``None`` (JSON null) with a reason when it cannot
be measured, never zero. A counter that went backwards between the ends of a
window (a driver reload reset NVML's counter; a RAPL wrap Zeus had not yet
seen) makes that window unusable: its total is ``None``, with the reason.

GPU numbering is the machine's: the numbers ``CUDA_VISIBLE_DEVICES`` uses
(CUDA's order; NVML's order is the same when ``CUDA_DEVICE_ORDER=PCI_BUS_ID``
or the GPUs are all alike), and device names are ``gpu<N>``, ``cpu<N>``
(RAPL package N), ``dram<N>``.
"""

from __future__ import annotations

import abc
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

NO_GPU = "no NVIDIA GPU (NVML not available)"
# a reading that did not move: the window was shorter than the counter's update period (NVML's GPU counter
# moves every few tens of milliseconds), not a device that drew nothing
STALE = "counter did not advance (window shorter than its update period?)"
NO_RAPL = "no RAPL (/sys/class/powercap absent)"
RAPL_NO_PERMISSION = "RAPL not readable (energy_uj needs root, or the Zeus daemon)"


@dataclass(frozen=True)
class EnergyWindow:
    """One measurement window: joules per device, and devices whose reading is unusable (name → why)."""

    duration_s: float
    joules: dict[str, float]
    invalid: dict[str, str] = field(default_factory=dict)
    # how many times the counter moved inside the window, for the device that moved least (None: not counted,
    # a single window); fewer than a handful and the figure is mostly interpolation between readings
    samples: int | None = None

    @property
    def total_joules(self) -> float | None:
        return None if self.reason else sum(self.joules.values())

    @property
    def reason(self) -> str | None:
        if self.invalid:
            return "; ".join(f"{device}: {why}" for device, why in self.invalid.items())
        if not self.duration_s > 0:
            return f"window of {self.duration_s} s"
        if not self.joules:
            return "no device in the window"
        return None


class EnergyMeter(abc.ABC):
    """``begin_window(key)`` … ``end_window(key)``; ``end_window`` returns None when nothing is measured."""

    available: bool = False
    reason: str | None = None  # why nothing is measured
    devices: list[str]  # what every window measures: gpu0, cpu0, dram0…
    unmeasured: list[str]  # parts left out, each with its reason

    @abc.abstractmethod
    def begin_window(self, key: str) -> None: ...

    @abc.abstractmethod
    def end_window(self, key: str) -> EnergyWindow | None: ...


class NotMeasured(EnergyMeter):
    """The null meter: windows open and close, and every measurement is None."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self.devices = []
        self.unmeasured = [reason]

    def begin_window(self, key: str) -> None:
        pass

    def end_window(self, key: str) -> EnergyWindow | None:
        return None


class ZeusEnergyMeter(EnergyMeter):
    """Wraps a ``zeus.monitor.ZeusMonitor``. ``gpu_names`` maps Zeus's GPU indices (which count within this
    process's ``CUDA_VISIBLE_DEVICES``) to device names; by default ``gpu<zeus index>``."""

    available = True

    def __init__(self, monitor: Any, *, gpu_names: Mapping[int, str] | None = None,
                 unmeasured: Sequence[str] = ()) -> None:
        self._monitor = monitor
        self._gpu_names = {i: (gpu_names or {}).get(i, f"gpu{i}") for i in monitor.gpu_indices}
        self.devices = [*self._gpu_names.values()]
        for i in monitor.cpu_indices:
            self.devices.append(f"cpu{i}")
            if _supports_dram(monitor, i):
                self.devices.append(f"dram{i}")
        self.unmeasured = list(unmeasured)
        self._open: dict[str, tuple[float, str | None]] = {}  # key → (perf_counter at begin, failure)

    def begin_window(self, key: str) -> None:
        if key in self._open:
            raise ValueError(f"energy window {key!r} is already open")
        failure = None
        try:
            # serve-bench runs no GPU work itself: no torch.cuda.synchronize() around its windows
            self._monitor.begin_window(key, sync_execution=False)
        except Exception as err:  # a device that fails mid-run spoils this window, not the run
            failure = f"zeus begin_window failed: {err!r}"
        self._open[key] = (time.perf_counter(), failure)

    def end_window(self, key: str) -> EnergyWindow:
        if key not in self._open:
            raise ValueError(f"energy window {key!r} was not begun")
        began_s, failure = self._open.pop(key)
        if failure is None:
            try:
                m = self._monitor.end_window(key, sync_execution=False)
            except Exception as err:
                failure = f"zeus end_window failed: {err!r}"
        if failure is not None:
            return EnergyWindow(time.perf_counter() - began_s, {}, {"meter": failure})
        readings = {self._gpu_names.get(i, f"gpu{i}"): j for i, j in m.gpu_energy.items()}
        readings |= {f"cpu{i}": j for i, j in (m.cpu_energy or {}).items()}
        readings |= {f"dram{i}": j for i, j in (m.dram_energy or {}).items()}
        joules, invalid = {}, {}
        for device in self.devices:
            j = readings.get(device)
            if j is None:
                invalid[device] = "no reading"
            elif not math.isfinite(j):
                invalid[device] = f"unusable reading ({j} J)"
            elif j < 0:
                invalid[device] = (f"counter went backwards ({j:.3f} J over the window): "
                                   "reset, or a wrap not yet seen")
            elif j == 0:  # every device here draws watts: an unchanged counter means no update, not no energy
                invalid[device] = STALE
            else:
                joules[device] = float(j)
        return EnergyWindow(float(m.time), joules, invalid)


def _supports_dram(monitor: Any, cpu_index: int) -> bool:
    try:
        return bool(monitor.cpus.supports_get_dram_energy_consumption(cpu_index))
    except Exception:
        return False


def visible_gpus(env: Mapping[str, str]) -> list[int] | None:
    """The machine's GPU numbers a process with this environment sees, in its order; None: all of them
    (unset); raises ValueError for entries that are not plain numbers (UUIDs, MIG)."""
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return None
    entries = [e.strip() for e in visible.split(",") if e.strip()]
    if not all(e.isdigit() for e in entries):
        raise ValueError(f"CUDA_VISIBLE_DEVICES={visible!r} is not a list of GPU numbers")
    return [int(e) for e in entries]


def probe(gpu_indices: list[int] | None, *, want_cpu: bool = True) -> EnergyMeter:
    """A meter for these GPUs (machine numbers, as :func:`server_gpus` gives them; None: every GPU this
    process sees) plus, with ``want_cpu``, every RAPL package and its DRAM. Never raises for missing
    hardware: what cannot be measured is named in ``unmeasured``, or the whole meter is :class:`NotMeasured`."""
    # Zeus logs a warning for every vendor library it does not find (amdsmi on an NVIDIA or CPU-only host);
    # what cannot be measured is reported here, once, with its reason
    logging.getLogger("zeus").setLevel(logging.ERROR)
    try:
        from zeus.monitor.energy import ZeusMonitor
    except ImportError as err:
        return NotMeasured(f"zeus is not installed ({err}); pip install 'zeus>=0.16'")
    unmeasured: list[str] = []
    names: dict[int, str] = {}  # Zeus's GPU index → gpu<machine number>
    if gpu_indices != []:
        try:
            visible = visible_gpus(os.environ)  # Zeus numbers GPUs within this process's CUDA_VISIBLE_DEVICES
            n_gpus, why = _probe_gpus()
        except ValueError as err:  # UUIDs or MIG slices, which Zeus cannot number either
            n_gpus, why = 0, f"GPUs not measured: {err}"
        if why:
            unmeasured.append(why)
        else:
            own = list(range(n_gpus)) if visible is None else visible
            for gpu in dict.fromkeys(own if gpu_indices is None else gpu_indices):
                if gpu in own:
                    names[own.index(gpu)] = f"gpu{gpu}"
                else:
                    unmeasured.append(f"gpu{gpu}: not visible to this process (it sees GPUs {own})")
    cpus: list[int] = []
    if want_cpu:
        cpus, why = _probe_cpus()
        if why:
            unmeasured.append(why)
    if not names and not cpus:
        return NotMeasured(" and ".join(unmeasured) or "nothing to measure (no GPU asked for, CPU not wanted)")
    try:
        monitor = ZeusMonitor(gpu_indices=list(names), cpu_indices=cpus)
    except Exception as err:
        return NotMeasured(f"zeus could not start measuring: {err}")
    return ZeusEnergyMeter(monitor, gpu_names=names, unmeasured=unmeasured)


def _probe_gpus() -> tuple[int, str | None]:
    """How many GPUs Zeus sees, or 0 and why none."""
    from zeus.device.gpu import get_gpus
    from zeus.device.gpu.amd import amdsmi_is_available
    from zeus.device.gpu.nvidia import nvml_is_available

    try:
        n = len(get_gpus())
    except Exception as err:  # ZeusGPUInitError; ImportError for the unofficial `pynvml` package
        try:
            present = nvml_is_available() or amdsmi_is_available()
        except Exception:
            present = True
        return 0, f"GPUs not measured: {err}" if present else NO_GPU
    return n, None if n else NO_GPU


def _probe_cpus() -> tuple[list[int], str | None]:
    """The RAPL packages Zeus can read, or none and why."""
    from zeus.device.cpu import get_cpus
    from zeus.device.cpu.common import ZeusCPUNoPermissionError
    from zeus.device.cpu.rapl import rapl_is_available

    try:
        return list(range(len(get_cpus()))), None
    except ZeusCPUNoPermissionError:
        return [], RAPL_NO_PERMISSION
    except Exception as err:  # ZeusCPUInitError when /sys/class/powercap/intel-rapl is absent
        return [], f"CPU not measured: {err}" if rapl_is_available() else NO_RAPL


def _int_flag(args: Sequence[str], names: tuple[str, ...], default: int) -> int:
    value: str | None = None
    for i, arg in enumerate(args):
        flag, eq, inline = arg.partition("=")
        if flag.replace("_", "-") in names:
            value = inline if eq else (args[i + 1] if i + 1 < len(args) else None)
    if value is None:
        return default
    try:
        n = int(value)
    except ValueError:
        raise ValueError(f"engine argument {names[0]} {value!r} is not a whole number") from None
    if n < 1:
        raise ValueError(f"engine argument {names[0]} {value!r} must be at least 1")
    return n


def parallel_world(engine_args: Sequence[str]) -> int:
    """GPUs one ``vllm serve`` with these arguments uses: tensor- × pipeline-parallel × local data-parallel."""
    return (_int_flag(engine_args, ("--tensor-parallel-size", "-tp"), 1)
            * _int_flag(engine_args, ("--pipeline-parallel-size", "-pp"), 1)
            * _int_flag(engine_args, ("--data-parallel-size-local", "-dpl"),
                        _int_flag(engine_args, ("--data-parallel-size", "-dp"), 1)))


def server_gpus(engine_args: Sequence[str], env: Mapping[str, str]) -> list[int] | None:
    """The GPUs a ``vllm serve`` with these arguments and environment uses: the first
    tensor-parallel × pipeline-parallel × local data-parallel of those its ``CUDA_VISIBLE_DEVICES`` shows
    (machine numbers). ``[]`` when that is set empty (no GPU); None when it names GPUs by UUID or MIG
    slice, which only NVML could number."""
    world = parallel_world(engine_args)
    try:
        visible = visible_gpus(env)
    except ValueError:
        return None
    return list(range(world)) if visible is None else visible[:world]


@dataclass(frozen=True)
class IdleBaseline:
    """Power with the model loaded and no requests: per device and in total, or None with the reason."""

    duration_s: float | None
    watts_by_device: dict[str, float] | None
    total_watts: float | None
    reason: str | None = None

    @property
    def measured(self) -> bool:
        return self.total_watts is not None

    def to_dict(self) -> dict[str, Any]:
        return {"measured": self.measured, "reason": self.reason, "duration_s": self.duration_s,
                "idle_power_watts": self.total_watts, "idle_power_watts_by_device": self.watts_by_device}


def idle_baseline(meter: EnergyMeter, seconds: float, *, key: str = "idle",
                  sleep: Callable[[float], None] = time.sleep) -> IdleBaseline:
    """Measure for ``seconds``; the caller makes sure no request runs meanwhile."""
    meter.begin_window(key)
    try:
        sleep(seconds)
    finally:
        window = meter.end_window(key)
    if window is None:
        return IdleBaseline(None, None, None, meter.reason or "not measured")
    if window.total_joules is None:
        return IdleBaseline(window.duration_s, None, None, window.reason)
    watts = {device: j / window.duration_s for device, j in window.joules.items()}
    return IdleBaseline(window.duration_s, watts, window.total_joules / window.duration_s)


def _per(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either is unknown or the denominator is not positive."""
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


# ML.ENERGY measures over a steady window of at least this long: shorter, and the counter's update period and the
# window's ends weigh on the figure
MIN_WINDOW_S = 30.0
# the power checks allow this much for the counter's resolution and the idle baseline's own noise
POWER_SLACK = 0.05


def scope(devices: Sequence[str]) -> tuple[str, list[str], list[str]]:
    """What a stage's headline energy covers, and what is reported beside it: the server's GPUs where there are
    any (as ML.ENERGY reports it), with the host's CPU packages and DRAM (RAPL) beside; on a CPU-only host the
    CPU packages and DRAM themselves, since they are what serves."""
    gpus = [d for d in devices if d.startswith("gpu")]
    host = [d for d in devices if not d.startswith("gpu")]
    return ("gpu", gpus, host) if gpus else ("host", host, [])


SCOPE_WORDS = {"gpu": "the server's GPUs (NVML)",
               "host": "the host's CPU packages and DRAM (RAPL; the load generator's share included)"}


def _figures(gross: float, duration_s: float, idle_watts: float | None, output_tokens: int,
             requests: int) -> dict[str, Any]:
    net, net_reason = None, None
    if idle_watts is None:
        net_reason = "no idle baseline"
    else:
        net = gross - idle_watts * duration_s
        if net <= 0:
            net_reason = (f"net energy {net:.3f} J ≤ 0: the stage drew no more than the idle baseline "
                          f"({idle_watts:.3f} W); net figures are not meaningful")
    return {"net_reason": net_reason, "energy_joules": gross, "net_energy_joules": net,
            "energy_per_output_token_joules": {"gross": _per(gross, output_tokens), "net": _per(net, output_tokens)},
            "energy_per_request_joules": {"gross": _per(gross, requests), "net": _per(net, requests)},
            "output_tokens_per_joule": {"gross": _per(output_tokens, gross), "net": _per(output_tokens, net)},
            "average_power_watts": _per(gross, duration_s), "idle_power_watts": idle_watts}


def _idle_of(devices: Sequence[str], by_device: Mapping[str, float] | None, total: float | None) -> float | None:
    if by_device is None:
        return total
    if not all(d in by_device for d in devices):
        return None
    return sum(by_device[d] for d in devices)


def stage_energy(window: EnergyWindow | None, *, output_tokens: int, requests: int,
                 idle_watts: float | None = None, idle_by_device: Mapping[str, float] | None = None,
                 not_measured_reason: str | None = None, min_samples: int = 0,
                 power_limits_w: Mapping[str, float] | None = None) -> dict[str, Any]:
    """Energy figures of one stage from the window over its steady part, gross and net of idle power
    (net = gross − idle watts × duration_s), for the headline scope (:func:`scope`: the GPUs, else the host),
    with the host's figures beside a GPU headline (``host``), never summed into it. The idle power is the
    scope's devices' (``idle_by_device``), else ``idle_watts`` as given. Unknown figures are None, with
    ``reason`` (nothing measured, or a window with fewer than ``min_samples`` counter readings: flagged, not
    averaged) or ``net_reason`` (no idle baseline, or net ≤ 0: net joules and joules per token/request are then
    kept as computed, tokens per joule is None). ``flags``: ML.ENERGY's validity checks that failed, each with
    its reason (a window shorter than :data:`MIN_WINDOW_S`; a device's power below its idle power or above its
    board limit, ``power_limits_w``); the figures stay, the flags say what to doubt."""
    gross_all = None if window is None else window.total_joules
    too_few = (window is not None and gross_all is not None and window.samples is not None
               and window.samples < min_samples)
    if window is None or gross_all is None or too_few:
        if too_few:
            assert window is not None
            reason = (f"only {window.samples} counter reading(s) in the {window.duration_s:.1f} s window (fewer "
                      f"than {min_samples}): too few to give a figure; a longer stage gives one")
        else:
            reason = (window.reason if window is not None else None) or not_measured_reason or "not measured"
        nothing = {"gross": None, "net": None}
        return {"measured": False, "reason": reason, "net_reason": None, "duration_s": None, "scope": None,
                "scope_devices": [], "energy_joules": None, "net_energy_joules": None,
                "energy_joules_by_device": None, "energy_per_output_token_joules": dict(nothing),
                "energy_per_request_joules": dict(nothing), "output_tokens_per_joule": dict(nothing),
                "average_power_watts": None, "idle_power_watts": idle_watts, "host": None, "flags": [],
                "samples": None if window is None else window.samples}
    duration_s = window.duration_s
    kind, heads, beside = scope(list(window.joules))
    gross = sum(window.joules[d] for d in heads)
    out: dict[str, Any] = {"measured": True, "reason": None, "duration_s": duration_s, "scope": kind,
                           "scope_devices": heads, "energy_joules_by_device": dict(window.joules),
                           "samples": window.samples}
    out |= _figures(gross, duration_s, _idle_of(heads, idle_by_device, idle_watts), output_tokens, requests)
    out["host"] = None
    if beside:
        host = _figures(sum(window.joules[d] for d in beside), duration_s, _idle_of(beside, idle_by_device, None),
                        output_tokens, requests)
        out["host"] = {"devices": beside, **host}
    flags = []
    if duration_s < MIN_WINDOW_S:
        flags.append({"check": "window", "reason": f"a {duration_s:.1f} s window, shorter than the "
                                                   f"{MIN_WINDOW_S:.0f} s ML.ENERGY measures over"})
    for device in heads:
        watts = window.joules[device] / duration_s if duration_s > 0 else None
        idle = (idle_by_device or {}).get(device)
        limit = (power_limits_w or {}).get(device)
        if watts is not None and idle is not None and watts < idle * (1 - POWER_SLACK):
            flags.append({"check": "power", "reason": f"{device} drew {watts:.1f} W, below its idle {idle:.1f} W"})
        if watts is not None and limit is not None and watts > limit * (1 + POWER_SLACK):
            flags.append({"check": "power", "reason": f"{device} drew {watts:.1f} W, above its board limit "
                                                      f"{limit:.0f} W"})
    out["flags"] = flags
    return out
