"""Energy as a cumulative time series, so any window can be measured after the fact.

A stage's steady window (every user busy) is only known from its records once
the stage has ended, but an energy counter window has to be opened and closed
as it happens. So the meter's windows are rolled every 100 ms for the whole
run (closing one, opening the next), on a thread of the orchestrating process
(never the load generator's, which runs in a process of its own), the joules
are added up per device, and
the energy between any two moments is read off that series by linear
interpolation between ticks, that is, taking the power as constant within a
tick: where it changed inside the tick at a window's end, up to a tick's
worth of that change lands on the wrong side. The next window is opened just
before the previous one is closed, so no energy falls between them (a few
microseconds overlap; the overlap is taken out of the later window, at its
average power). Each tick also updates the live exporter
(energy so far, power over the last tick).

The counter's own resolution: a tick shorter than the counter's update period
(NVML's GPU counter moves every few tens of milliseconds, RAPL's every
millisecond) sees it unchanged; that tick adds nothing and its energy lands in
the next one, so such ticks are kept, not treated as gaps. A window counts the
ticks in which each device's counter moved (its ``samples``, the least over
the devices): the stage's figure is refused below :data:`MIN_SAMPLES`.
"""

from __future__ import annotations

import bisect
import itertools
import threading
from collections import deque
from typing import Any

from serve_bench.measure.clock import now_s
from serve_bench.observe.energy import STALE, EnergyMeter, EnergyWindow
from serve_bench.processes import lower_thread_priority

TICK_S = 0.1
# ML.ENERGY-style: a window with fewer counter readings than this is flagged, not averaged
MIN_SAMPLES = 10


STATE_EVERY = 10  # ticks between readings of the GPUs' state (temperature, clocks, throttling): once a second


class EnergyTrack:
    def __init__(self, meter: EnergyMeter, exporter: Any = None, tick_s: float = TICK_S) -> None:
        self.meter, self.exporter, self.tick_s = meter, exporter, tick_s
        # the GPUs' state beside their energy (host_noise.nvml_state), for the window's validity checks
        self.state: Any = None
        self.states: list[tuple[float, Any]] = []
        self.times: list[float] = []
        self.totals: list[dict[str, float]] = []  # cumulative joules per device at each time
        self.gaps: list[tuple[float, float, str]] = []  # ticks whose window was unusable: (start, end, why)
        self.moved: list[frozenset[str]] = []  # per tick (ending at times[i + 1]): the devices whose counter moved
        # the sampler's own time per tick (reading the counters, adding up), over the last ~17 minutes
        self.tick_cost_s: deque[float] = deque(maxlen=10_000)
        self._keys = (f"serve-bench-tick-{i}" for i in itertools.count())
        self._key: str | None = None
        self._opened_s = 0.0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()  # the ticking thread appends while the run's thread reads windows

    def start(self) -> None:
        if not self.meter.available:
            return
        self.times.append(self._open())
        self.totals.append({d: 0.0 for d in self.meter.devices})
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="energy-track", daemon=True)
        self._thread.start()

    def _open(self) -> float:
        self._key = next(self._keys)
        self._opened_s = now_s()
        self.meter.begin_window(self._key)
        return self._opened_s

    def _run(self) -> None:
        lower_thread_priority()
        while not self._stop.wait(self.tick_s):
            self.tick()

    def tick(self) -> None:
        """Close the open window, open the next, add the closed one's joules to the series."""
        assert self._key is not None
        began = now_s()
        closing, opened_s = self._key, self._opened_s
        self._open()
        window = self.meter.end_window(closing)
        t = opened_s + window.duration_s if window is not None and window.duration_s > 0 else now_s()
        if window is not None:
            stale = {d for d, why in window.invalid.items() if why == STALE}
            invalid = {d: why for d, why in window.invalid.items() if d not in stale}
            window = EnergyWindow(window.duration_s, {**window.joules, **dict.fromkeys(stale, 0.0)}, invalid)
        with self._lock:
            last = self.totals[-1]
            if window is None or window.total_joules is None:
                # the energy of this tick is unknown: the series carries on, windows across it are refused
                self.gaps.append((self.times[-1], t, (window.reason if window else None) or "not measured"))
                self.times.append(t)
                self.totals.append(dict(last))
                self.moved.append(frozenset())
                return
            # this window began just before the previous one ended: count only its part after that end
            share = (t - self.times[-1]) / (t - opened_s) if opened_s < self.times[-1] < t else 1.0
            self.times.append(t)
            self.totals.append({d: last.get(d, 0.0) + share * window.joules.get(d, 0.0)
                                for d in set(last) | set(window.joules)})
            self.moved.append(frozenset(d for d, j in window.joules.items() if j > 0))
        if self.state is not None and len(self.times) % STATE_EVERY == 1:
            try:
                self.states.append((t, self.state()))
            except Exception:  # noqa: BLE001 - a state that cannot be read leaves the checks without it
                pass
        self.tick_cost_s.append(now_s() - began)
        if self.exporter is not None:
            for device, joules in self.totals[-1].items():
                power = window.joules.get(device, 0.0) / window.duration_s if window.duration_s > 0 else None
                self.exporter.set_energy(device, joules, power)

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            self.tick()
            if self._key is not None:
                self.meter.end_window(self._key)
                self._key = None

    def states_between(self, start_s: float, end_s: float) -> list[Any]:
        """The GPUs' states read inside a window (each a list, one entry per GPU)."""
        with self._lock:
            return [st for t, st in self.states if start_s <= t <= end_s]

    def window(self, start_s: float, end_s: float) -> EnergyWindow | None:
        """Energy per device between two moments of the run; None when the series does not cover them
        (the meter measures nothing, or the window reaches past the last tick), with unusable ticks inside
        reported as invalid."""
        with self._lock:
            return self._window(start_s, end_s)

    def _window(self, start_s: float, end_s: float) -> EnergyWindow | None:
        if len(self.times) < 2 or start_s < self.times[0] or end_s > self.times[-1] or end_s <= start_s:
            return None
        a, b = self._at(start_s), self._at(end_s)
        joules = {d: b.get(d, 0.0) - a.get(d, 0.0) for d in b}
        invalid = {"all": why for s, e, why in self.gaps if s < end_s and e > start_s}
        # ticks that end inside the window (the one ending past it counts too: the window reads into it)
        first = bisect.bisect_right(self.times, start_s)
        last = min(bisect.bisect_left(self.times, end_s), len(self.times) - 1)
        inside = self.moved[first - 1:last]
        samples = min((sum(d in m for m in inside) for d in joules), default=0)
        return EnergyWindow(duration_s=end_s - start_s, joules=joules, invalid=invalid, samples=samples)

    def _at(self, t: float) -> dict[str, float]:
        i = bisect.bisect_right(self.times, t)
        if i >= len(self.times):
            return self.totals[-1]
        t0, t1 = self.times[i - 1], self.times[i]
        f = (t - t0) / (t1 - t0) if t1 > t0 else 0.0
        lo, hi = self.totals[i - 1], self.totals[i]
        return {d: lo.get(d, 0.0) + f * (hi.get(d, 0.0) - lo.get(d, 0.0)) for d in hi}
