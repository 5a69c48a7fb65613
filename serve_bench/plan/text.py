"""The plan as text: the full plan (``--dry-run`` and the start of every run) and its one-line form."""

from __future__ import annotations

import datetime as dt
import textwrap
from typing import Any

from serve_bench.plan.model import StudyPlan


def secs(s: float) -> str:
    if s < 10:
        return f"{s:.1f} s".replace(".0 s", " s")
    if s < 100:
        return f"{s:.0f} s"
    m, sec = divmod(round(s), 60)
    if m < 60:
        return f"{m} min {sec:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


def gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if n < 10e9 else f"{n / 1e9:.0f} GB"


def _range(values: list[float], fmt: Any) -> str:
    lo, hi = fmt(min(values)), fmt(max(values))
    if lo == hi:
        return lo
    if lo.endswith(" s") and hi.endswith(" s") and "min" not in lo + hi:
        return f"{lo[:-2]}–{hi}"
    return f"{lo}–{hi}"


def estimate_line(plan: StudyPlan) -> str:
    """The plan in one line: what runs, how many requests, how long."""
    cks = plan.checkpoints
    actions = {a: sum(c.action == a for c in cks) for a in ("prune", "reuse", "convert", "download")}
    what = ", ".join(f"{n} {word}" for word, n in (("to prune", actions["prune"]), ("reused", actions["reuse"]),
                                                    ("to download", actions["download"])) if n)
    total, warm, estimated = plan.requests()
    stages = plan.stage_count()
    return (f"plan: {len(cks)} checkpoint{'s' if len(cks) != 1 else ''}" + (f" ({what})" if what else "")
            + f", {len(plan.profiles)} profile{'s' if len(plan.profiles) != 1 else ''}, {stages} stages, "
            + f"{'≈' if estimated else ''}{total} requests (warm-up {warm}); "
            + f"estimated wall time {secs(plan.total_s)} ({plan.model.name})")


def render_plan(plan: StudyPlan, *, run_dir_hint: bool = True) -> str:
    """The plan as plain text, under 100 columns."""
    out: list[str] = []
    add = out.append
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    add(f"study {plan.name}")
    if run_dir_hint:
        where = plan.out_dir if plan.exact_dir else plan.out_dir / f"{stamp}-{plan.name}"
        add(f"  results would go to {where} (nothing is created by a dry run)")
    add("")
    add(f"checkpoints ({len(plan.checkpoints)}), served one after the other:")
    for i, c in enumerate(plan.checkpoints, 1):
        shape = ""
        if c.k is not None and c.intermediate_size:
            shape = f"{c.requested}: k={c.k} of {c.intermediate_size} ({c.kept:.0%} of the MLP)"
        elif c.origin != "remote":
            shape = "unpruned"
        size = f", {gb(c.weight_bytes)}" if c.weight_bytes else ""
        add(f"  {i}. {c.name}")
        add(f"     {c.origin}{', ' + shape if shape else ''}{size}")
        add(f"     {c.detail}")
    add("")
    s = plan.server
    if s.mode == "url" and s.endpoints:
        add(f"server: a fleet of {len(s.endpoints)} endpoints, already running (not launched), requests spread "
            f"{s.balance}: {', '.join(s.endpoints)}")
    elif s.mode == "url":
        add(f"server: already running at {s.url} (not launched)")
    else:
        build = {"cpu": "vLLM, CPU build", "cuda": "vLLM"}.get(s.build or "", "vLLM (not installed here)")
        port = f"port {s.port}" if s.port else "a free port"
        if s.replicas:
            ports = f"ports {s.port}–{s.port + len(s.replicas) - 1}" if s.port else "free ports"
            add(f"server: {build}, a fleet of {len(s.replicas)} replicas per checkpoint ({'; '.join(s.replicas)}), "
                f"on {s.host}, {ports}, requests spread {s.balance} (start-up timeout {s.startup_timeout_s:g} s)")
        else:
            add(f"server: {build}, one per checkpoint, on {s.host}, {port} (start-up timeout "
                f"{s.startup_timeout_s:g} s)")
        if s.engine_args:
            add(f"  engine args: {' '.join(s.engine_args)}")
        if s.env:
            add(f"  environment: {' '.join(f'{k}={v}' for k, v in sorted(s.env.items()))}")
    e = plan.energy
    if e.measurable:
        add(f"energy: measured, idle baseline {secs(e.idle_s)} per checkpoint")
    else:
        add(f"energy: not measured: {e.reason}")
    ev = plan.evaluation
    if ev is None:
        add("evaluation: off")
    else:
        add(f"evaluation (lm-eval on each checkpoint's server, after its load), data from {ev.data}:")
        add("  " + ", ".join(f"{task} {n}" for task, n in ev.tasks.items()) + " items")
    names = [c.name for c in plan.checkpoints]
    for p in plan.profiles:
        add("")
        add(f"profile {p.name}: {p.api}, {p.input_tokens} tokens in, {p.output_tokens} out, warm-up {p.warmup}")
        if p.description:
            add(f"  {p.description}")
        add(f"  {'#':>2}  {'stage':<16} {'kind':<11} {'target':<24} {'bound':<14} {'requests':>12} {'time':>11}")
        for st in p.stages:
            ests = [st.per_checkpoint[n] for n in names if n in st.per_checkpoint]
            if not ests:
                continue
            sent = [x.requests for x in ests if x.requests is not None]
            req = _range([float(v) for v in sent], lambda v: f"{v:.0f}") if sent else "?"
            hows = {x.requests_how for x in ests}
            mark = "≈" if "estimate" in hows else ""
            time_s = _range([x.seconds for x in ests], lambda v: secs(v))
            if all(x.how == "measured" for x in ests):
                time_s += "*"
            add(f"  {st.index + 1:>2}  {st.name:<16.16} {st.kind:<11} {st.target:<24.24} {st.bound:<14.14} "
                f"{mark + req:>12} {time_s:>11}")
            extra = [x.note for x in ests if x.note and x.how == "model"]
            if extra:
                add(f"      {extra[0]}")
        add("  requests: sends per checkpoint, warm-up included; ≈: estimated (time-bound, or the rate")
        add("  is estimated); a range: the checkpoints differ. *: measured in an earlier run.")
    total, warm, estimated = plan.requests()
    add("")
    add(f"requests: {'≈' if estimated else ''}{total} in all, {warm} of them warm-up "
        f"({len(plan.checkpoints)} checkpoint(s) × {sum(len(p.stages) for p in plan.profiles)} stage(s)"
        + (f" × {plan.trials} trials)" if plan.trials > 1 else ")"))
    add("")
    add(f"estimated wall time: {secs(plan.total_s)}")
    add(f"  model: {plan.model.name}; other machines differ")
    for part in plan.parts:
        label = part.label if len(part.label) <= 85 else part.label[:84] + "…"
        add(f"  {label:<85} {secs(part.seconds):>11}")
    measured = [st.per_checkpoint[n].note for p in plan.profiles for st in p.stages for n in names
                if n in st.per_checkpoint and st.per_checkpoint[n].how == "measured"]
    if measured:
        add(f"  stage times marked * were measured {measured[0]}")
    if plan.notes:
        add("")
        for n in plan.notes:
            add(f"note: {n}")
    return "\n".join(_wrap(line) for line in out)


def _wrap(line: str, width: int = 99) -> str:
    if len(line) <= width:
        return line
    indent = " " * (len(line) - len(line.lstrip()) + 2)
    return "\n".join(textwrap.wrap(line, width, subsequent_indent=indent, break_on_hyphens=False,
                                   break_long_words=False))  # paths stay whole, to copy

