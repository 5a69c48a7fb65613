"""No garbage-collector pauses inside a measured stage.

A load-generator process holds a large heap (the tokenizer pulls in
transformers and torch), and CPython's full collection walks all of it: a
stall of 200 to 300 ms measured here (scripts/bench_fidelity.py), during which
no stream is read, so every request in flight gets a late timestamp and an
open-loop schedule falls behind. So before a stage everything alive is
collected and frozen out of the collector's reach (``gc.freeze``), the
collector is off while the stage runs, and it runs once after. The price is
that cyclic garbage made during a stage waits for its end; a request makes
little (its record is kept anyway).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


def pause_collector() -> bool:
    """Collect, freeze what is alive, switch the collector off; returns whether it was on."""
    was_enabled = gc.isenabled()
    gc.collect()
    gc.freeze()
    gc.disable()
    return was_enabled


def resume_collector(was_enabled: bool) -> None:
    gc.unfreeze()
    if was_enabled:
        gc.enable()
    gc.collect()


@contextmanager
def gc_quiet() -> Iterator[None]:
    was_enabled = pause_collector()
    try:
        yield
    finally:
        resume_collector(was_enabled)
