"""Is the load generator, or the server, still able to do its part? Checks the stage monitors share."""

from __future__ import annotations

import socket
import time
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


class CpuShare:
    """This process's CPU time (all threads) over wall time since creation: 1.0 is one core fully busy."""

    def __init__(self) -> None:
        self._cpu0 = time.process_time()
        self._wall0 = time.perf_counter()

    def ratio(self) -> float | None:
        wall = time.perf_counter() - self._wall0
        return (time.process_time() - self._cpu0) / wall if wall > 0 else None
