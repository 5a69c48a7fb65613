"""Constructed request records and run directories with known answers, for the report's tests."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from serve_bench.measure.records import RequestRecord
from serve_bench.report.inputs import StageData, stage_data
from serve_bench.rundir import StageFile


def records(stage: str, users: int, ttfts_s: Sequence[float], tpot_s: float | Sequence[float] = 0.05,
            output_tokens: int = 8, prompt_tokens: int = 64, t0: float = 1000.0, failed: int = 0,
            profile: str = "p") -> list[RequestRecord]:
    """One closed-loop stage: ``users`` workers, request i on worker i % users, back to back; each request's
    TTFT from ``ttfts_s`` and its decode spread evenly at ``tpot_s`` per token (one chunk per token)."""
    out: list[RequestRecord] = []
    clock = [t0] * users
    tpots = [tpot_s] * len(ttfts_s) if isinstance(tpot_s, (int, float)) else list(tpot_s)
    for i, (ttft, tpot) in enumerate(zip(ttfts_s, tpots)):
        u = i % users
        send = clock[u]
        first = send + ttft
        chunks = [first + k * tpot for k in range(output_tokens)]
        out.append(RequestRecord(request_id=f"{stage}-{i}", stage=stage, profile=profile, worker_id=f"w0/u{u}",
                                 send_s=send, first_token_s=first, chunk_times_s=chunks, last_token_s=chunks[-1],
                                 end_s=chunks[-1] + 0.001, prompt_tokens=prompt_tokens, output_tokens=output_tokens,
                                 max_tokens=output_tokens, status=200, ok=True))
        clock[u] = chunks[-1] + 0.002
    for j in range(failed):
        u = j % users
        out.append(RequestRecord(request_id=f"{stage}-f{j}", stage=stage, profile=profile, worker_id=f"w0/u{u}",
                                 send_s=clock[u], end_s=clock[u] + 0.01, max_tokens=output_tokens, status=500,
                                 error="HTTP 500", ok=False))
    return out


def result(stage: str, users: int, recs: list[RequestRecord], index: int = 1, profile: str = "p",
           energy: dict[str, Any] | None = None, **flags: bool) -> dict[str, Any]:
    """A stage result file as the pipeline writes it (the fields the report reads)."""
    return {"checkpoint": "ck", "profile": profile, "index": index, "stage": stage, "kind": "concurrency",
            "target": {"users": users, "requests": len(recs)}, "started_s": min(r.send_s for r in recs),
            "ended_s": max(r.end_s or r.send_s for r in recs), "warmup_end_s": None, "records": len(recs),
            "summary": {}, **{k: bool(v) for k, v in flags.items()},
            "energy": energy or {"measured": False, "reason": "no energy counter here"}}


def stage_file(**fields: Any) -> StageFile:
    """A stage result file with the fields a test gives, and the rest as a stage that ran and found nothing."""
    empty = {"checkpoint": "ck", "profile": "p", "stage": "s", "kind": "concurrency", "target": {},
             "started_s": 0.0, "ended_s": 1.0, "warmup_end_s": None, "records": 0, "summary": {}}
    return StageFile.model_validate({**empty, **fields})


def stage(name: str, users: int, ttfts_s: Sequence[float], **kw: Any) -> StageData:
    flags = {k: kw.pop(k) for k in ("generator_saturated", "server_died", "stopped_early") if k in kw}
    energy = kw.pop("energy", None)
    recs = records(name, users, ttfts_s, **kw)
    return stage_data(StageFile.model_validate(result(name, users, recs, energy=energy, **flags)), recs)


def measured_energy(j_per_token: float, net: float | None = None, idle_w: float | None = None) -> dict[str, Any]:
    return {"measured": True, "reason": None, "net_reason": None,
            "energy_per_output_token_joules": {"gross": j_per_token, "net": net}, "idle_power_watts": idle_w}


def write_run(root: Path, checkpoints: dict[str, dict[str, Any]], status: str = "completed",
              study: dict[str, Any] | None = None) -> Path:
    """A run directory. ``checkpoints``: name -> {"label", "base", "prune", "stages": [(stage, users, ttfts,
    flags-dict)], "accuracy": {task: (value, stderr)}}."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "manifest.json").write_text(json.dumps({"status": status, "study": study or {}, "started_utc":
                                                    "2026-11-29T10:00:00+00:00", "command": ["serve-bench", "run"]}))
    t0 = 1000.0
    for name, spec in checkpoints.items():
        d = root / name
        (d / "stages").mkdir(parents=True)
        info = {"name": name, "label": spec.get("label", name), "base": spec.get("base", name),
                "pruning": {"realised_prune": spec["prune"]} if spec.get("prune") else None}
        (d / "checkpoint.json").write_text(json.dumps(info))
        lines = []
        for i, (stage_name, users, ttfts, flags) in enumerate(spec["stages"], 1):
            recs = records(stage_name, users, ttfts, t0=t0, **flags.pop("records", {}))
            t0 = max(r.end_s for r in recs) + 1.0
            lines += [r.model_dump_json() for r in recs]
            res = result(stage_name, users, recs, index=i, **flags)
            (d / "stages" / f"{i:02d}-{stage_name}.json").write_text(json.dumps(res))
        (d / "records.jsonl").write_text("\n".join(lines) + "\n")
        if spec.get("accuracy"):
            (d / "eval").mkdir()
            results = {t: {"acc,none": v, "acc_stderr,none": e} for t, (v, e) in spec["accuracy"].items()}
            (d / "eval" / "results.json").write_text(json.dumps({"results": results}))
    return root

