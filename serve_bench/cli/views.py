"""What `serve-bench run` shows while it runs: the pipeline's events, drawn three ways.

    LiveView    a terminal: a rich live display redrawn 4 times a second (outside the load
                generator's hot path: it reads counters the run keeps anyway), with the study's
                progress and time left, the running stage's figures so far, and a table of
                finished stages that grows
    PlainView   not a terminal (CI, a pipe) or --quiet: one plain line per event, no control characters
    JsonEvents  --json-events FILE: the same events as JSON lines, for other tools

All of them take the same calls (``pipeline.Events``); :class:`Tee` sends each to several.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import IO, Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.text import Text

from serve_bench.measure.clock import now_s
from serve_bench.rundir import StageFile
from serve_bench.workload.profiles import SweepStage, load_profile


def count_stages(profiles: list[str]) -> int:
    """Stages per checkpoint: a sweep runs its synchronous and max-throughput stages, then its rates."""
    total = 0
    for name in profiles:
        for stage in load_profile(name).expanded_stages():
            total += 2 + stage.rates if isinstance(stage, SweepStage) else 1
    return total


def _fmt(value: float | None, fmt: str, scale: float = 1.0) -> str:
    return "–" if value is None else fmt.format(value * scale)


FINISHED_HEADER = (f"{'checkpoint':<12} {'stage':<14} {'ok/failed':>9} {'tok/s':>8} {'steady':>8} "
                   f"{'TTFT p50 ms':>12} {'TPOT p50 ms':>12} {'J/token':>8}  flags")


def _joules_per_token(result: StageFile) -> str | None:
    """Gross J per output token, or None when not measured."""
    energy = result.energy or {}
    per_token = (energy.get("energy_per_output_token_joules") or {}).get("gross")
    return f"{per_token:.3g}" if energy.get("measured") and per_token is not None else None


def finished_row(checkpoint: str, result: StageFile) -> str:
    """One finished stage as a row under :data:`FINISHED_HEADER` († : open loop, from the schedule)."""
    s = result.summary
    intended = s.get("latency_from") == "intended send"
    ttft = _fmt(s.get("median_ttft_from_intended_ms" if intended else "median_ttft_ms"), "{:.1f}")
    joules = _joules_per_token(result) or "n/m"
    return (f"{checkpoint[:12]:<12} {result.stage[:14]:<14} "
            f"{str(s.get('completed', 0)) + '/' + str(s.get('failed', 0)):>9} "
            f"{_fmt(s.get('output_throughput'), '{:.1f}'):>8} {_fmt(s.get('steady_output_throughput'), '{:.1f}'):>8} "
            f"{ttft + ('†' if intended else ''):>12} {_fmt(s.get('median_tpot_ms'), '{:.2f}'):>12} {joules:>8}  "
            f"{', '.join(result.flags.values())}")


def stage_line(checkpoint: str, result: StageFile) -> str:
    """A finished stage in one line: counts, throughput, headline latency, energy, flags."""
    s = result.summary

    def f(key: str, fmt: str) -> str:
        return _fmt(s.get(key), fmt)

    if s.get("latency_from") == "intended send":  # open loop: from the schedule first, as sent beside it
        ttft = (f"TTFT p50 {f('median_ttft_from_intended_ms', '{:.1f}')} ms from schedule "
                f"({f('median_ttft_ms', '{:.1f}')} from send), send lag p99 {f('p99_send_lag_ms', '{:.1f}')} ms")
    else:
        ttft = f"TTFT p50 {f('median_ttft_ms', '{:.1f}')} ms"
    per_token = _joules_per_token(result)
    joules = f"{per_token} J/token" if per_token else "energy n/m"
    flags = list(result.flags.values())
    return (f"{checkpoint} {result.stage}: {s.get('completed', 0)} ok, {s.get('failed', 0)} failed, "
            f"{f('output_throughput', '{:.1f}')} tok/s (steady {f('steady_output_throughput', '{:.1f}')}), "
            f"{ttft}, TPOT p50 {f('median_tpot_ms', '{:.2f}')} ms, {joules}"
            + (f"  [{', '.join(flags)}]" if flags else ""))


def _step(done: int, total: int, steps: int) -> int:
    """Which of ``steps`` equal parts of the work is finished (0…steps): plain and JSON progress events say
    each part once, not every tensor."""
    return steps if total <= 0 or done >= total else int(steps * done / total)


class _Quiet:
    """Events a view does not draw."""

    def observing(self, observer: Any) -> None:
        pass

    def request_done(self, ok: bool) -> None:
        pass


class PlainView(_Quiet):
    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.run_dir: Path | None = None
        self.finished = 0
        self._steps: dict[str, int] = {}

    def _say(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()

    def run_started(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self._say(f"run directory: {run_dir}")

    def metrics_started(self, url: str) -> None:
        self._say(f"live metrics: {url}")

    def phase(self, checkpoint: str, text: str) -> None:
        self._say(f"{checkpoint}: {text}" if checkpoint else text)

    def progress(self, checkpoint: str, text: str, done: int, total: int) -> None:
        step = _step(done, total, 4)
        if step > self._steps.get(text, 0):
            self._steps[text] = step
            self._say(f"{checkpoint + ': ' if checkpoint else ''}{text}: {step * 25}%")

    def checkpoint_started(self, name: str, index: int, total: int) -> None:
        self._say(f"checkpoint {index + 1}/{total}: {name}")

    def server_ready(self, name: str, url: str, startup: str = "") -> None:
        self._say(f"{name}: served at {url}" + (f", {startup}" if startup else ""))

    def stage_started(self, checkpoint: str, profile: str) -> None:
        self._say(f"{checkpoint}: profile {profile}")

    def stage_running(self, checkpoint: str, profile: str, stage: str, kind: str, load: str) -> None:
        self._say(f"{checkpoint} {stage}: running ({load})")

    def stage_done(self, checkpoint: str, result: StageFile) -> None:
        self.finished += 1
        self._say(stage_line(checkpoint, result))

    def note(self, message: str) -> None:
        self._say(f"note: {message}")

    def problem(self, message: str) -> None:
        self._say(f"problem: {message}")


class JsonEvents(_Quiet):
    """One JSON object per event: ``{"t": wall-clock s, "event": name, ...its fields}``."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self._steps: dict[str, int] = {}

    def _emit(self, event: str, **fields: Any) -> None:
        self.out.write(json.dumps({"t": now_s(), "event": event, **fields}, default=str) + "\n")
        self.out.flush()

    def run_started(self, run_dir: Path) -> None:
        self._emit("run_started", run_dir=str(run_dir))

    def metrics_started(self, url: str) -> None:
        self._emit("metrics_started", url=url)

    def phase(self, checkpoint: str, text: str) -> None:
        self._emit("phase", checkpoint=checkpoint or None, text=text)

    def progress(self, checkpoint: str, text: str, done: int, total: int) -> None:
        step = _step(done, total, 10)
        if step > self._steps.get(text, 0):
            self._steps[text] = step
            self._emit("progress", checkpoint=checkpoint or None, text=text, done=done, total=total)

    def checkpoint_started(self, name: str, index: int, total: int) -> None:
        self._emit("checkpoint_started", checkpoint=name, index=index, total=total)

    def server_ready(self, name: str, url: str, startup: str = "") -> None:
        self._emit("server_ready", checkpoint=name, url=url, startup=startup)

    def stage_started(self, checkpoint: str, profile: str) -> None:
        self._emit("profile_started", checkpoint=checkpoint, profile=profile)

    def stage_running(self, checkpoint: str, profile: str, stage: str, kind: str, load: str) -> None:
        self._emit("stage_running", checkpoint=checkpoint, profile=profile, stage=stage, kind=kind, load=load)

    def stage_done(self, checkpoint: str, result: StageFile) -> None:
        s = result.summary
        keys = ("completed", "failed", "output_throughput", "steady_output_throughput", "median_ttft_ms",
                "median_tpot_ms", "latency_from", "median_ttft_from_intended_ms", "p99_send_lag_ms")
        self._emit("stage_done", checkpoint=checkpoint, profile=result.profile, stage=result.stage,
                   summary={k: s.get(k) for k in keys},
                   flags=list(result.flags),
                   energy_per_output_token_joules=(result.energy or {}).get("energy_per_output_token_joules"))

    def note(self, message: str) -> None:
        self._emit("note", message=message)

    def problem(self, message: str) -> None:
        self._emit("problem", message=message)


def _warming(live: Any, warm_done: int, ran_s: float) -> str | None:
    """While the stage's warm-up runs: what is left of it (its requests are not in the figures)."""
    if live.warmup_requests and warm_done < live.warmup_requests:
        return f"warm-up {warm_done}/{live.warmup_requests} requests (not measured)"
    if live.warmup_s and ran_s < live.warmup_s:
        return f"warm-up {ran_s:.0f}/{live.warmup_s:g} s (not measured)"
    return None


class Tee:
    def __init__(self, *views: Any) -> None:
        self.views = views

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> None:
            for view in self.views:
                getattr(view, name)(*args, **kwargs)
        return call


class LiveView:
    """The terminal display. Redrawn by rich's refresh thread from what the run keeps anyway (the
    exporter's counters and histograms, the running stage's live counters): nothing on the hot path."""

    def __init__(self, console: Console, stages_per_checkpoint: int, planned_s: float | None = None) -> None:
        self.console = console
        self.per_checkpoint = stages_per_checkpoint
        self.planned_s = planned_s  # the plan's estimate of the whole run (serve_bench.plan)
        self.run_dir: Path | None = None
        self.observer: Any = None
        self.checkpoints = 1
        self.index = 0
        self.label = ""
        self.status = "starting"
        self.status_since = time.monotonic()
        self.status_done: tuple[int, int] | None = None  # how far the current phase is, where it says
        self.done = 0
        self.ok = self.failed = 0
        self.started = time.monotonic()
        self.live = Live(console=console, refresh_per_second=4, transient=True, get_renderable=self.render)

    def __enter__(self) -> LiveView:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.live.__exit__(*exc)

    # -- events -----------------------------------------------------------------------------------------------

    def run_started(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.console.print(f"run directory: {run_dir}")

    def observing(self, observer: Any) -> None:
        self.observer = observer

    def metrics_started(self, url: str) -> None:
        self.console.print(f"live metrics: {url}")

    def phase(self, checkpoint: str, text: str) -> None:
        self.status, self.status_since, self.status_done = text, time.monotonic(), None

    def progress(self, checkpoint: str, text: str, done: int, total: int) -> None:
        if text != self.status:
            self.phase(checkpoint, text)
        self.status_done = (done, total)

    def checkpoint_started(self, name: str, index: int, total: int) -> None:
        self.label, self.index, self.checkpoints = name, index, total

    def server_ready(self, name: str, url: str, startup: str = "") -> None:
        self.console.print(f"[green]●[/] {name} served at {url}" + (f" [dim]{startup}[/]" if startup else ""))

    def stage_started(self, checkpoint: str, profile: str) -> None:
        pass

    def stage_running(self, checkpoint: str, profile: str, stage: str, kind: str, load: str) -> None:
        self.status, self.status_since, self.status_done = f"stage {stage} ({load})", time.monotonic(), None

    def request_done(self, ok: bool) -> None:
        if ok:
            self.ok += 1
        else:
            self.failed += 1

    def stage_done(self, checkpoint: str, result: StageFile) -> None:
        # The finished stages grow as a table printed above the live region, a row at a time: redrawing a
        # rich Table of every finished stage 4 times a second would cost the load generator's process
        # tens of milliseconds a redraw (scripts/bench_live_view.py).
        if not self.done:
            self.console.print(Text(FINISHED_HEADER, style="bold"))
        self.done += 1
        self.console.print(Text(finished_row(checkpoint, result)))

    def note(self, message: str) -> None:
        self.console.print(f"[yellow]note:[/] {message}")

    def problem(self, message: str) -> None:
        self.console.print(f"[red]problem:[/] {message}")

    # -- drawing ----------------------------------------------------------------------------------------------

    def _eta(self) -> str:
        """Time left: the plan's estimate until a stage has finished, then the pace of the stages done
        (each stage's share of the run taken as equal: servers start once per checkpoint)."""
        total = self.per_checkpoint * self.checkpoints
        elapsed = time.monotonic() - self.started
        if self.done:
            left = elapsed / self.done * max(0, total - self.done)
        elif self.planned_s is not None:
            left = max(0.0, self.planned_s - elapsed)
        else:
            return "time left: after the first stage"
        return f"about {left / 60:.0f} min left" if left >= 90 else f"about {left:.0f} s left"

    def render(self) -> Group:
        try:
            return self._render()
        except Exception as err:  # noqa: BLE001 - a drawing bug must not stop the display, let alone the run
            return Group(Text(f"(display error: {type(err).__name__}: {err})", style="dim"))

    def _render(self) -> Group:
        total = max(1, self.per_checkpoint * self.checkpoints)
        elapsed = time.monotonic() - self.started
        head = Text.from_markup(
            f"[bold]checkpoint {self.index + 1}/{self.checkpoints}[/] {self.label}   "
            f"stages {self.done}/{total}   {elapsed / 60:.1f} min   {self._eta()}")
        parts: list[Any] = [head, ProgressBar(total=total, completed=self.done, width=60)]
        parts += self._running()
        return Group(*parts)

    def _running(self) -> list[Any]:
        live = self.observer.live if self.observer is not None else None
        since = time.monotonic() - self.status_since
        if live is None or not live.running:
            between: list[Any] = [Text(f"{self.status} ({since:.0f} s)", style="dim")]
            if self.status_done is not None:
                done, total = self.status_done
                between.append(ProgressBar(total=max(total, 1), completed=done, width=60))
            return between
        key = (live.checkpoint, live.profile, live.stage)
        st = self.observer.exporter.stage_stats(key)
        t = live.target
        ran = now_s() - (live.started_s or now_s())
        done = st["ok"] + st["failed"]
        if t.get("requests"):
            bar, of = ProgressBar(total=t["requests"], completed=done, width=60), f"{done}/{t['requests']} requests"
        elif t.get("duration_s"):
            bar, of = ProgressBar(total=t["duration_s"], completed=min(ran, t["duration_s"]), width=60), \
                f"{ran:.0f}/{t['duration_s']:g} s"
        else:
            bar, of = None, f"{done} requests"
        cpu = live.loadgen_cpu() if ran >= 1.0 else None  # a share over a fraction of a second says little
        figures = (f"in flight {live.in_flight()}   ok {st['ok']} failed {st['failed']}   "
                   f"{st['output_tokens'] / ran if ran > 0 else 0:.1f} tok/s   "
                   f"TTFT p50/p99 {_fmt(st['ttft_p50_s'], '{:.0f}', 1000)}/{_fmt(st['ttft_p99_s'], '{:.0f}', 1000)} ms"
                   f"   TPOT p50/p99 {_fmt(st['tpot_p50_s'], '{:.1f}', 1000)}/"
                   f"{_fmt(st['tpot_p99_s'], '{:.1f}', 1000)} ms   load generator CPU {_fmt(cpu, '{:.0%}')}")
        if live.kind == "rate":
            figures += f"   send lag p99 {_fmt(st['send_lag_p99_s'], '{:.1f}', 1000)} ms"
        if self.observer.meter.available:
            jpt = self.observer.joules_per_token_so_far(live.started_s, st["output_tokens"])
            figures += f"   {_fmt(jpt, '{:.3g}')} J/token (gross, so far)"
        else:
            figures += "   energy n/m"
        warming = _warming(live, st["warmup_done"], ran)
        if warming:
            of += f"   [yellow]{warming}[/]"
        out: list[Any] = [Text.from_markup(f"[bold]{live.stage}[/] ({live.kind}) {of}")]
        if bar is not None:
            out.append(bar)
        out.append(Text(figures))
        return out
