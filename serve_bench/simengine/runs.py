"""Run directories made in virtual time: a closed-loop ladder against the engine, written as ``serve-bench run``
writes one (manifest, checkpoint, records, stage files), so that everything that reads runs (the report,
``serve-bench compare``) can be checked against a known truth without a clock, and a seed per trial stands
for a second run of the same server."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from serve_bench.rundir import MANIFEST, RECORDS, SERIES, RunDir, StageFile, write_json
from serve_bench.simengine.params import EngineParams
from serve_bench.simengine.simulate import closed_loop, open_loop

PROFILE = "sim-ladder"
HARDWARE = {"cpu_model": "virtual time (serve_bench.simengine)", "logical_cpus": 0, "gpus": []}


def write_ladder_run(root: Path, engines: Mapping[str, EngineParams], *, users: Sequence[int] = (8, 16, 24, 32),
                     requests: int = 400, prompt_tokens: int = 64, output_tokens: int = 32,
                     slo: Mapping[str, Any] | None = None, bases: Mapping[str, str] | None = None,
                     trial: Mapping[str, Any] | None = None, rates: Sequence[float] = (),
                     prompts: Mapping[str, Any] | None = None, report: Mapping[str, Any] | None = None) -> Path:
    """A completed run at ``root``: per checkpoint name, its engine, loaded with ``users`` closed-loop users
    (``requests`` a stage), or with ``rates``: open-loop Poisson stages at those requests/s instead. ``slo``: the
    run's resolved SLO set as the manifest keeps it; ``bases``: checkpoint -> the one it was pruned from
    (default: itself); ``trial``: the manifest's trial entry; ``prompts``: the profile's prompt source as the
    manifest records it (what ``serve-bench validate`` replays); ``report``: the study's report settings."""
    root.mkdir(parents=True, exist_ok=True)
    stages = ([{"name": f"r{r:g}", "rate_rps": r} for r in rates] if rates else
              [{"name": f"c{n}", "users": n} for n in users])
    profile = {"name": PROFILE, "mode": "open" if rates else "closed", "stages": stages, "api": "chat",
               "prompt_tokens": prompt_tokens, "output_tokens": output_tokens, "requests": requests,
               "prompts": dict(prompts or {"kind": "synthetic"})}
    study = {"name": root.name, **({"report": dict(report)} if report else {})}
    write_json(root / MANIFEST, {"status": "completed", "study": study, "profiles": [profile],
                                 "command": ["simulated"], "hardware": HARDWARE, "slo": dict(slo) if slo else None,
                                 "checkpoints": [{"name": n} for n in engines],
                                 "trial": dict(trial) if trial else None})
    run = RunDir(root)
    for name, params in engines.items():
        base = (bases or {}).get(name, name)
        write_json(run.checkpoint_dir(name) / "checkpoint.json", {"name": name, "label": name, "base": base})
        lines = []
        for index, stage in enumerate(stages, 1):
            n, rate = stage.get("users"), stage.get("rate_rps")
            seeded = params.model_copy(update={"seed": params.seed * 1000 + index})
            shape = dict(requests=requests, prompt_tokens=prompt_tokens, output_tokens=output_tokens,
                         stage=stage["name"])
            recs = [r.model_copy(update={"profile": PROFILE}) for r in
                    (open_loop(seeded, rate_rps=rate, seed=params.seed * 1000 + index, **shape) if rate else
                     closed_loop(params.model_copy(update={"seed": params.seed * 1000 + n}), users=n, **shape))]
            lines += [r.model_dump_json() for r in recs]
            target = {"rate_rps": rate, "requests": requests} if rate else {"users": n, "requests": requests}
            result = StageFile(checkpoint=name, profile=PROFILE, index=index, stage=stage["name"],
                               kind="rate" if rate else "concurrency", target=target,
                               started_s=min(r.send_s for r in recs),
                               ended_s=max(r.end_s or r.send_s for r in recs), warmup_end_s=None,
                               records=len(recs), summary={},
                               energy={"measured": False, "reason": "virtual time"})
            write_json(run.stage_path(name, index, stage["name"]), result.model_dump(mode="json"))
        (run.checkpoint_dir(name) / RECORDS).write_text("\n".join(lines) + "\n")
    return root


def write_series(root: Path, trials: Sequence[Mapping[str, EngineParams]], **kw: Any) -> Path:
    """A repeated run at ``root`` (series.json and trial-1…N), one mapping of engines per trial."""
    names = [f"trial-{i}" for i in range(1, len(trials) + 1)]
    for i, (name, engines) in enumerate(zip(names, trials), 1):
        write_ladder_run(root / name, engines, trial={"index": i, "of": len(trials), "series": str(root)}, **kw)
    write_json(root / SERIES, {"trials": len(trials), "runs": names, "status": "completed"})
    return root
