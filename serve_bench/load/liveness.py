"""Is the load generator, or the server, still able to do its part? Checks the stage monitors share."""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from urllib.parse import urlparse

# Locust warns at 90% of a core; a gevent process near that delays its own timestamps.
LOADGEN_CPU_LIMIT = 0.9


def refused(url: str) -> bool:
    """Does the server's port refuse connections (nothing is listening)?"""
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", port), timeout=2.0):
            return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False


def max_model_len(url: str, headers: dict[str, str] | None = None, timeout_s: float = 5.0) -> int | None:
    """The served model's context length from vLLM's ``/v1/models`` (``max_model_len``); None if not said."""
    req = urllib.request.Request(url.rstrip("/") + "/v1/models", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            data = json.loads(resp.read())
        value = (data.get("data") or [{}])[0].get("max_model_len")
    except (OSError, ValueError, AttributeError, IndexError):
        return None
    return int(value) if isinstance(value, int) and value > 0 else None


class CpuShare:
    """This process's CPU time (all threads) over wall time since creation: 1.0 is one core fully busy."""

    def __init__(self) -> None:
        self._cpu0 = time.process_time()
        self._wall0 = time.perf_counter()

    def ratio(self) -> float | None:
        wall = time.perf_counter() - self._wall0
        return (time.process_time() - self._cpu0) / wall if wall > 0 else None
