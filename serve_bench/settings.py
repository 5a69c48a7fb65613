"""Paths and defaults, each overridable from the environment (SERVE_BENCH_*)."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """Where serve-bench keeps its caches (the converted bundled model…)."""
    env = os.environ.get("SERVE_BENCH_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "serve-bench"


def models_dir() -> Path:
    return home() / "models"


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}
