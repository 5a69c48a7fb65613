#!/usr/bin/env python
"""Does serve-bench's energy meter (Zeus, NVML's total-energy counter) agree with NVML's power readings?

On one NVIDIA GPU, through ``serve_bench.observe.energy`` (``probe`` → Zeus's ``ZeusMonitor``):

1. idle baseline A: ``--idle-s`` (20 s) with the CUDA context and the operands allocated, nothing running,
   after ``--settle-s`` (5 s) of quiet;
2. a bf16 matmul loop (``--n`` 8192): ``--warmup-s`` (10 s) to reach steady power and clocks, then
   ``--load-s`` (30 s) measured twice: by the Zeus window (the total-energy counter) and by integrating
   ``nvmlDeviceGetPowerUsage`` sampled every ``--sample-ms`` (50 ms) by a thread, trapezoid rule, over
   the same wall-clock interval;
3. idle baseline B: ``--settle-s`` then ``--idle-s`` again (a hot GPU may draw more at idle: that is what
   the comparison shows).

Prints one JSON object: both energies and their ratio (target: within 5%), both idle baselines and
their ratio (target: within 5%), and serve-bench's stage figures for the load window (matmuls standing
in for output tokens). Exit 0 when both targets are met, 1 when not, 2 without an NVIDIA GPU.

Needs PyTorch with CUDA, nvidia-ml-py and zeus (with its import-time dependency scikit-learn). It runs
from a checkout without installing serve-bench:

    python scripts/bench_energy_gpu.py [--gpu 0] [--idle-s 20 --load-s 30 --warmup-s 10] [--out FILE]

On recent GPUs (Ampere and newer) ``nvmlDeviceGetPowerUsage`` is an average over about a second, so
the two methods can differ at transitions; in the steady window measured here they should not.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from serve_bench.observe.energy import idle_baseline, probe, stage_energy  # noqa: E402

TARGET = 0.05


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
    """(time.time(), watts) from nvmlDeviceGetPowerUsage every period_s until stopped."""

    def __init__(self, handle, period_s: float) -> None:
        super().__init__(daemon=True)
        self.handle, self.period_s = handle, period_s
        self.samples: list[tuple[float, float]] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        import pynvml

        next_s = time.time()
        while not self.stopped.is_set():
            t = time.time()
            self.samples.append((t, pynvml.nvmlDeviceGetPowerUsage(self.handle) / 1000.0))
            next_s += self.period_s
            self.stopped.wait(max(0.0, next_s - time.time()))

    def integral(self, t0: float, t1: float) -> tuple[float | None, int]:
        deadline = time.time() + 1.0
        while (not self.samples or self.samples[-1][0] < t1) and time.time() < deadline:
            time.sleep(self.period_s / 2)  # wait for a sample after the window's end
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
    joules = sum((tb - ta) * (wa + wb) / 2 for (ta, wa), (tb, wb) in zip(points, points[1:]))
    return joules, len(inside)


def machine_number(cuda_index: int) -> int:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return cuda_index
    return int(visible.split(",")[cuda_index])


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpu", type=int, default=0, help="CUDA device index in this process")
    ap.add_argument("--idle-s", type=float, default=20.0)
    ap.add_argument("--warmup-s", type=float, default=10.0)
    ap.add_argument("--load-s", type=float, default=30.0)
    ap.add_argument("--settle-s", type=float, default=5.0, help="quiet time before each idle baseline")
    ap.add_argument("--sample-ms", type=float, default=50.0)
    ap.add_argument("--n", type=int, default=8192, help="matmul size (n×n bf16)")
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    args = ap.parse_args()

    reason = no_gpu_reason()
    if reason:
        print(reason, file=sys.stderr)
        return 2
    import pynvml
    import torch

    if not torch.cuda.is_available():
        print("no NVIDIA GPU visible to PyTorch (torch.cuda.is_available() is False)", file=sys.stderr)
        return 2
    torch.cuda.set_device(args.gpu)
    props = torch.cuda.get_device_properties(args.gpu)
    uuid = getattr(props, "uuid", None)
    handle = (pynvml.nvmlDeviceGetHandleByUUID(f"GPU-{uuid}") if uuid is not None
              else pynvml.nvmlDeviceGetHandleByIndex(machine_number(args.gpu)))

    meter = probe([machine_number(args.gpu)], want_cpu=False)
    if not meter.available:
        print(json.dumps({"error": "zeus could not measure the GPU", "reason": meter.reason}))
        return 1
    a = torch.randn(args.n, args.n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(args.n, args.n, device="cuda", dtype=torch.bfloat16)
    (a @ b).sum().item()
    torch.cuda.synchronize()

    sampler = PowerSampler(handle, args.sample_ms / 1000.0)
    sampler.start()

    def idle(key: str) -> dict:
        time.sleep(args.settle_s)
        t0 = time.time()
        base = idle_baseline(meter, args.idle_s, key=key)
        t1 = time.time()
        joules, n = sampler.integral(t0, t1)
        return {**base.to_dict(), "nvml_power_integral_watts": None if joules is None else joules / (t1 - t0),
                "power_samples": n}

    idle_a = idle("idle-a")

    def matmuls_until(deadline_s: float) -> int:
        done = 0
        while time.time() < deadline_s:
            for _ in range(20):
                torch.matmul(a, b)
            torch.cuda.synchronize()  # keeps the queue short so the loop ends when the time is up
            done += 20
        return done

    matmuls_until(time.time() + args.warmup_s)
    t0 = time.time()
    meter.begin_window("load")
    matmuls = matmuls_until(t0 + args.load_s)
    torch.cuda.synchronize()
    window = meter.end_window("load")
    t1 = time.time()
    nvml_joules, n_load = sampler.integral(t0, t1)

    idle_b = idle("idle-b")
    sampler.stopped.set()
    sampler.join()

    zeus_joules = window.total_joules
    load_ratio = ratio(zeus_joules, nvml_joules)
    idle_ratio = ratio(idle_b["idle_power_watts"], idle_a["idle_power_watts"])
    report = {
        "gpu": pynvml.nvmlDeviceGetName(handle), "cuda_index": args.gpu, "meter_devices": meter.devices,
        "matmul": {"n": args.n, "dtype": "bfloat16", "count": matmuls,
                   "tflops": 2 * args.n**3 * matmuls / (t1 - t0) / 1e12},
        "load": {"duration_s": t1 - t0, "zeus_counter_joules": zeus_joules, "zeus_window_s": window.duration_s,
                 "zeus_reason": window.reason, "nvml_power_integral_joules": nvml_joules, "power_samples": n_load,
                 "ratio_counter_over_integral": load_ratio,
                 "within_5pct": load_ratio is not None and abs(load_ratio - 1) <= TARGET},
        "idle_a": idle_a, "idle_b": idle_b,
        "idle_ratio_b_over_a": idle_ratio,
        "idle_within_5pct": idle_ratio is not None and abs(idle_ratio - 1) <= TARGET,
        "stage_energy_matmuls_as_tokens": stage_energy(window, output_tokens=matmuls, requests=matmuls,
                                                       idle_watts=idle_a["idle_power_watts"]),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0 if report["load"]["within_5pct"] and report["idle_within_5pct"] else 1


if __name__ == "__main__":
    sys.exit(main())
