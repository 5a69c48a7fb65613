"""What else ran on the host during a stage: the load average, the CPU time of processes that are neither the
server nor the load generator nor serve-bench itself, the CPU time the hypervisor stole, and on a GPU its
temperature, clocks and throttle reasons. A stage run under contention is flagged (``host_contended``) and
left off the load curves, as a saturated one is: its latencies measure the neighbours as much as the server.

"Ours" is this process and every descendant (a launched vLLM server, the load process and its workers), load
workers started by hand on this host (``serve-bench worker``), and, for a server at a loopback ``--url``, the
process listening on its port and that process's descendants. The
others' CPU time is the host's busy time (``/proc/stat``) less ours; a process of ours that ended during the
stage (a Locust worker) stays ours through its parent's reaped-children time.

psutil is the library for process and system CPU accounting; only the choice of processes and the threshold
are written here.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import psutil

# A stage is flagged when others used on average at least this many cores, or the hypervisor stole at least
# this share of the host's CPU time. Half a core is a quarter of this project's 2-core machine: enough to move
# a CPU server's latencies by tens of percent (docs/benchmarks.md, "Host noise"), far above an idle host's
# daemons (0.01-0.05 core here).
CONTENDED_CORES = 0.5
CONTENDED_STEAL = 0.10
WORKER_MODULE = "serve_bench.load.worker"  # what `serve-bench worker` execs (python -m serve_bench.load.worker)


def _busy_and_steal(t: Any) -> tuple[float, float, float]:
    total = sum(t)
    idle = t.idle + getattr(t, "iowait", 0.0)
    # guest time is already counted in user time on Linux
    busy = total - idle - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)
    return busy, getattr(t, "steal", 0.0), total


@dataclass
class _Snapshot:
    at: float
    busy: float
    steal: float
    total: float
    ours: dict[int, float] = field(default_factory=dict)  # pid -> CPU seconds so far


class HostNoise:
    """Snapshots at a stage's start and end; :meth:`stage` says what else ran between them."""

    def __init__(self, server_urls: Sequence[str] = (), gpu: Any = None) -> None:
        self.root = psutil.Process(os.getpid())
        self.server_urls = list(server_urls)
        # the --url servers (a fleet's every endpoint) that run on this host are the server, not other work
        self.server_pids = [p for p in map(_listening_pid, self.server_urls) if p is not None]
        self.gpu = gpu  # a callable giving {"temperature_c", "sm_clock_mhz", "throttle_reasons"} per GPU, or None
        self._start: _Snapshot | None = None
        self._gpu_start: Any = None

    def begin(self) -> None:
        self._start = self._snapshot()
        self._gpu_start = self._gpu_state()

    def stage(self) -> dict[str, Any] | None:
        """What else ran since :meth:`begin`, with the verdict; None when no stage began."""
        if self._start is None:
            return None
        a, b = self._start, self._snapshot()
        self._start = None
        wall = max(b.at - a.at, 1e-9)
        busy, steal, total = b.busy - a.busy, b.steal - a.steal, b.total - a.total
        # each process's own time plus its ended children's (moved there when reaped): the sum over ours only
        # grows, whichever of them ended during the stage
        ours = sum(b.ours.values()) - sum(a.ours.values())
        others = max(0.0, busy - ours)
        steal_share = steal / total if total > 0 else 0.0
        load1, _, _ = os.getloadavg()
        out: dict[str, Any] = {
            "wall_s": round(wall, 3), "cpus": psutil.cpu_count() or 0, "load_average_1m": round(load1, 2),
            "busy_cores": round(busy / wall, 3), "ours_cores": round(ours / wall, 3),
            "others_cores": round(others / wall, 3), "steal_share": round(steal_share, 4),
            "server_processes": self.server_pids,  # the --url servers' processes that run here
            "thresholds": {"others_cores": CONTENDED_CORES, "steal_share": CONTENDED_STEAL},
        }
        reasons = []
        if others / wall >= CONTENDED_CORES:
            reasons.append(f"other processes used {others / wall:.2f} cores on average")
        if steal_share >= CONTENDED_STEAL:
            reasons.append(f"the hypervisor stole {steal_share:.0%} of the CPU time")
        gpu_end = self._gpu_state()
        if gpu_end is not None:
            out["gpu"] = {"start": self._gpu_start, "end": gpu_end}
            changed = [g for g, (s, e) in enumerate(zip(self._gpu_start or [], gpu_end))
                       if s.get("throttle_reasons") != e.get("throttle_reasons") or e.get("throttle_reasons")]
            if changed:
                reasons.append(f"GPU {', '.join(map(str, changed))} throttled during the stage")
        out["contended"] = bool(reasons)
        out["why"] = "; ".join(reasons)
        return out

    def _snapshot(self) -> _Snapshot:
        busy, steal, total = _busy_and_steal(psutil.cpu_times())
        snap = _Snapshot(time.monotonic(), busy, steal, total)
        for proc in self._ours():
            with contextlib.suppress(psutil.Error):
                t = proc.cpu_times()
                snap.ours[proc.pid] = t.user + t.system + t.children_user + t.children_system
        return snap

    def _ours(self) -> list[psutil.Process]:
        procs = [self.root]
        with contextlib.suppress(psutil.Error):
            procs += self.root.children(recursive=True)
        for pid in self.server_pids:
            with contextlib.suppress(psutil.Error):
                server = psutil.Process(pid)
                procs += [server, *server.children(recursive=True)]
        # load workers started by hand on this host (`serve-bench worker`) are the load generator too
        for proc in psutil.process_iter(["cmdline"]):
            if WORKER_MODULE in (proc.info.get("cmdline") or []):
                procs.append(proc)
        seen: dict[int, psutil.Process] = {p.pid: p for p in procs}
        return list(seen.values())

    def _gpu_state(self) -> Any:
        if self.gpu is None:
            return None
        try:
            return self.gpu()
        except Exception:  # noqa: BLE001 - a GPU query that fails is no host-noise reading, not a failed stage
            return None


def _listening_pid(url: str) -> int | None:
    """The process listening on a loopback URL's port (the server at ``--url`` when it runs here)."""
    parsed = urlparse(url)
    host, port = parsed.hostname or "", parsed.port or (443 if parsed.scheme == "https" else 80)
    if host not in ("localhost", "127.0.0.1", "::1", "0.0.0.0"):
        return None
    try:
        for conn in psutil.net_connections(kind="inet"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                return conn.pid
    except (psutil.Error, OSError):
        return None
    return None


# NVML throttle reasons that mean the clocks were held down (idle and application-clock settings do not)
_THROTTLING = {0x4: "software power cap", 0x8: "hardware slowdown", 0x20: "software thermal slowdown",
               0x40: "hardware thermal slowdown", 0x80: "hardware power brake"}


def nvml_state(indices: list[int] | None) -> Any:
    """A callable giving each GPU's temperature, SM clock and throttle reasons through NVML; None where NVML
    does not load (no NVIDIA GPU)."""
    try:
        import pynvml  # nvidia-ml-py, installed with zeus; loads only where a driver is

        pynvml.nvmlInit()
        count = pynvml.nvmlDeviceGetCount()
    except Exception:  # noqa: BLE001 - NVMLError, ImportError: no NVIDIA GPU here
        return None
    handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in (indices if indices is not None else range(count))]

    def state() -> list[dict[str, Any]]:
        out = []
        for h in handles:
            mask = pynvml.nvmlDeviceGetCurrentClocksThrottleReasons(h)
            out.append({"temperature_c": pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU),
                        "sm_clock_mhz": pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM),
                        "throttle_reasons": sorted(words for bit, words in _THROTTLING.items() if mask & bit),
                        "power_limit_w": _power_limit_w(pynvml, h)})
        return out

    return state


def _power_limit_w(pynvml: Any, handle: Any) -> float | None:
    try:
        return pynvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000.0  # milliwatts
    except Exception:  # noqa: BLE001 - NVMLError_NotSupported on some boards
        return None


# the energy checks ML.ENERGY applies to a GPU's state over a window: a clock that moved this much, or a
# temperature this high, and the joules per token measure the cooling as much as the model
CLOCK_CHANGE = 0.10
HOT_C = 85


def gpu_state_flags(states: Sequence[Sequence[dict[str, Any]]], gpus: Sequence[int] | None) -> list[dict[str, str]]:
    """Energy validity flags from the GPUs' states read across a window (:func:`nvml_state`, once a second by
    the energy track): throttling at any reading, an SM clock that moved by more than :data:`CLOCK_CHANGE`
    between readings, a temperature that reached :data:`HOT_C`."""
    flags: list[dict[str, str]] = []
    if not states:
        return flags
    n = len(states[0])
    names = [f"gpu{g}" for g in gpus] if gpus is not None else [f"gpu{i}" for i in range(n)]
    for i, name in enumerate(names[:n]):
        seen = [st[i] for st in states if len(st) > i]
        reasons = sorted({r for s in seen for r in s.get("throttle_reasons") or []})
        if reasons:
            flags.append({"check": "throttle", "reason": f"{name} throttled ({', '.join(reasons)})"})
        clocks = [s["sm_clock_mhz"] for s in seen if s.get("sm_clock_mhz")]
        if clocks and (max(clocks) - min(clocks)) / max(clocks) > CLOCK_CHANGE:
            flags.append({"check": "clock", "reason": f"{name}'s SM clock moved between {min(clocks)} and "
                                                      f"{max(clocks)} MHz"})
        temps = [s["temperature_c"] for s in seen if s.get("temperature_c") is not None]
        if temps and max(temps) >= HOT_C:
            flags.append({"check": "temperature", "reason": f"{name} reached {max(temps)} °C"})
    return flags
