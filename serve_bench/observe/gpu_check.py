"""Does serve-bench's energy path measure a GPU right? A check for a machine with an NVIDIA GPU, in the process
layout a run uses: the energy series (:class:`~serve_bench.observe.energy_track.EnergyTrack`, Zeus over NVML's
total-energy counter, read every 100 ms on a thread of this process) measures while the GPU work runs in a
child process, as the vLLM server does in a run. Against it, NVML's own power readings
(``nvmlDeviceGetPowerUsage``), sampled by another thread every 50 ms and integrated by the trapezoid rule
over the same window.

1. idle baseline A (the child has its CUDA context and operands, nothing running), after a settle;
2. a bf16 matmul loop in the child: a warm-up to steady power and clocks, then the measured window;
3. idle baseline B after a settle (a hot GPU may draw more at idle: that is what the comparison shows).

Targets: the series' energy over the load window within 5% of the integral; the two idle baselines within
5%. Also: the sampler's achieved period and its cost per reading. Needs PyTorch with CUDA, nvidia-ml-py and
zeus (no vLLM). On recent GPUs ``nvmlDeviceGetPowerUsage`` is an average over about a second, so the two
methods differ at transitions; the windows here are steady.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

from serve_bench.measure.clock import now_s

TARGET = 0.05

# the GPU work, in a child process as a server would be: matmuls while a file says "load", idle otherwise
_CHILD = r"""
import os, sys, time, torch
n, flag = int(sys.argv[1]), sys.argv[2]
a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
(a @ b).sum().item(); torch.cuda.synchronize()
print("ready", flush=True)
done = 0
while True:
    state = open(flag).read().strip() if os.path.exists(flag) else "idle"
    if state == "stop":
        break
    if state == "load":
        for _ in range(20):
            torch.matmul(a, b)
        torch.cuda.synchronize()
        done += 20
    else:
        time.sleep(0.05)
print("matmuls", done, flush=True)
"""


def no_gpu_reason() -> str | None:
    try:
        import pynvml
    except ImportError:
        return "no NVIDIA GPU: nvidia-ml-py (pynvml) is not installed"
    try:
        pynvml.nvmlInit()
        count = pynvml.nvmlDeviceGetCount()
    except pynvml.NVMLError as err:
        return f"no NVIDIA GPU (NVML: {err})"
    return None if count else "no NVIDIA GPU (NVML sees none)"


class PowerSampler(threading.Thread):
    """(now_s(), watts) from nvmlDeviceGetPowerUsage every period_s until stopped."""

    def __init__(self, handle: Any, period_s: float) -> None:
        super().__init__(daemon=True, name="nvml-power")
        self.handle, self.period_s = handle, period_s
        self.samples: list[tuple[float, float]] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        import pynvml

        next_s = now_s()
        while not self.stopped.is_set():
            self.samples.append((now_s(), pynvml.nvmlDeviceGetPowerUsage(self.handle) / 1000.0))
            next_s += self.period_s
            self.stopped.wait(max(0.0, next_s - now_s()))

    def integral(self, t0: float, t1: float) -> tuple[float | None, int]:
        deadline = now_s() + 1.0
        while (not self.samples or self.samples[-1][0] < t1) and now_s() < deadline:
            time.sleep(self.period_s / 2)  # a sample after the window's end
        return integrate_joules(list(self.samples), t0, t1)


def integrate_joules(samples: list[tuple[float, float]], t0: float, t1: float) -> tuple[float | None, int]:
    """Trapezoid integral of power over [t0, t1], the ends linearly interpolated; and the samples inside."""

    def at(t: float) -> float:
        for (ta, wa), (tb, wb) in zip(samples, samples[1:]):
            if ta <= t <= tb:
                return wa if tb == ta else wa + (wb - wa) * (t - ta) / (tb - ta)
        raise ValueError(f"no power samples around {t}")

    inside = [(t, w) for t, w in samples if t0 < t < t1]
    if len(samples) < 2 or samples[0][0] > t0 or samples[-1][0] < t1:
        return None, len(inside)
    points = [(t0, at(t0)), *inside, (t1, at(t1))]
    return sum((tb - ta) * (wa + wb) / 2 for (ta, wa), (tb, wb) in zip(points, points[1:])), len(inside)


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def check_energy(gpu: int = 0, *, idle_s: float = 20.0, warmup_s: float = 10.0, load_s: float = 30.0,
                 settle_s: float = 5.0, sample_ms: float = 50.0, n: int = 8192, work_dir: str = "/tmp") -> dict:
    """Run the check on machine GPU ``gpu``; a JSON-ready dict with ``passed``."""
    import pynvml

    from serve_bench.observe.energy import probe, stage_energy
    from serve_bench.observe.energy_track import EnergyTrack

    handle = pynvml.nvmlDeviceGetHandleByIndex(gpu)
    meter = probe([gpu], want_cpu=False)
    if not meter.available:
        return {"passed": False, "error": "zeus could not measure the GPU", "reason": meter.reason}
    flag = os.path.join(work_dir, f"serve-bench-gpu-check-{os.getpid()}")
    with open(flag, "w") as f:
        f.write("idle")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": str(gpu)}
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(n), flag], stdout=subprocess.PIPE, text=True,
                             env=env)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready", "the GPU child failed"
        track = EnergyTrack(meter)
        track.start()
        power = PowerSampler(handle, sample_ms / 1000.0)
        power.start()

        def state(s: str) -> None:
            with open(flag, "w") as f:
                f.write(s)

        def idle(name: str) -> dict:
            time.sleep(settle_s)
            t0 = now_s()
            time.sleep(idle_s)
            t1 = now_s()
            time.sleep(2 * track.tick_s)  # a tick past the window's end
            window = track.window(t0, t1)
            joules, samples = power.integral(t0, t1)
            return {"name": name, "duration_s": t1 - t0,
                    "series_watts": None if window is None or window.total_joules is None
                    else window.total_joules / (t1 - t0), "series_samples": None if window is None else window.samples,
                    "nvml_power_watts": None if joules is None else joules / (t1 - t0), "power_samples": samples}

        idle_a = idle("idle A")
        state("load")
        time.sleep(warmup_s)
        t0 = now_s()
        time.sleep(load_s)
        t1 = now_s()
        time.sleep(2 * track.tick_s)
        window = track.window(t0, t1)
        state("idle")
        nvml_joules, n_power = power.integral(t0, t1)
        idle_b = idle("idle B")
        state("stop")
        out, _ = child.communicate(timeout=60)
        matmuls = int(out.split()[-1]) if out.split() else 0
        power.stopped.set()
        power.join()
        track.stop()
        periods = [b - a for a, b in zip(track.times, track.times[1:])]
    finally:
        if child.poll() is None:
            child.kill()
        os.unlink(flag)
    series_joules = None if window is None else window.total_joules
    load_ratio = _ratio(series_joules, nvml_joules)
    idle_ratio = _ratio(idle_b["series_watts"], idle_a["series_watts"])
    report = {
        "gpu": pynvml.nvmlDeviceGetName(handle), "machine_gpu": gpu, "meter_devices": meter.devices,
        "matmul": {"n": n, "dtype": "bfloat16", "count_in_child": matmuls},
        "load": {"duration_s": t1 - t0, "series_joules": series_joules,
                 "series_samples": None if window is None else window.samples,
                 "series_reason": None if window is None else window.reason,
                 "nvml_power_integral_joules": nvml_joules, "power_samples": n_power,
                 "ratio_series_over_integral": load_ratio,
                 "within_5pct": load_ratio is not None and abs(load_ratio - 1) <= TARGET},
        "idle_a": idle_a, "idle_b": idle_b, "idle_ratio_b_over_a": idle_ratio,
        "idle_within_5pct": idle_ratio is not None and abs(idle_ratio - 1) <= TARGET,
        "sampler": {"target_period_s": track.tick_s, "median_period_s": statistics.median(periods),
                    "p99_period_s": sorted(periods)[int(0.99 * (len(periods) - 1))],
                    "median_cost_ms": 1000 * statistics.median(track.tick_cost_s),
                    "max_cost_ms": 1000 * max(track.tick_cost_s), "readings": len(periods)},
        "stage_energy": None if window is None else stage_energy(
            window, output_tokens=max(matmuls, 1), requests=max(matmuls, 1),
            idle_by_device={f"gpu{gpu}": idle_a["series_watts"]} if idle_a["series_watts"] else None,
            min_samples=10),
    }
    report["passed"] = report["load"]["within_5pct"] and report["idle_within_5pct"]
    return report


if __name__ == "__main__":  # python -m serve_bench.observe.gpu_check [GPU]
    why = no_gpu_reason()
    if why:
        print(why, file=sys.stderr)
        sys.exit(2)
    print(json.dumps(check_energy(int(sys.argv[1]) if len(sys.argv) > 1 else 0), indent=2))
