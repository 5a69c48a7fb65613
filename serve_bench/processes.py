"""Child processes that must not outlive serve-bench."""

from __future__ import annotations

import ctypes
import signal

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """For ``Popen(preexec_fn=...)``: on Linux the child gets SIGTERM when serve-bench dies,
    even by SIGKILL, so no server or load worker is left behind."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


# Observer threads (the /metrics scraper, the energy track) yield the CPU to the load process: Linux schedules
# threads on their own, and a thread's nice value is its own (setpriority on its thread id), so where the
# orchestrator and the load process share a core the load loop's timestamps come first. The energy counter's
# reads are timestamped by the track itself, so a reading taken a little late is still placed right.
OBSERVER_NICE = 10


def lower_thread_priority(nice: int = OBSERVER_NICE) -> None:
    """Lower the calling thread's scheduling priority (Linux; elsewhere, or when refused, nothing)."""
    import os
    import threading

    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except (AttributeError, OSError):
        pass
