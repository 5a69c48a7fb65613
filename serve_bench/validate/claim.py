"""What a capacity plan claims, read back from the report that made it: for one checkpoint, the traffic
(requests/s and its input/output mix), the replicas asked for, one replica's capacity within the SLOs, the SLOs
themselves, and what is needed to launch the checkpoint again (its directory, engine arguments)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serve_bench.errors import ConfigError
from serve_bench.rundir import read_json

REPORT_JSON = "report.json"


@dataclass
class Claim:
    report: Path                  # the report.json
    run: Path | None              # the run directory the checkpoint was measured in
    checkpoint: str
    label: str
    model_path: str | None        # the checkpoint's directory (to launch replicas; the tokenizer)
    api: str                      # chat or completions, as measured
    prompts: dict[str, Any]       # the measured profile's prompt source (synthetic, a file's rows)
    rps: float
    headroom: float
    replicas: int
    capacity_rps: float           # one replica at the traffic's mix, within the SLOs
    capacity_rps_ci: tuple[float | None, float | None]
    lower_bound: bool             # the capacity is "at least" (no stage missed the SLOs)
    input_tokens: int
    output_tokens: int
    slo_ms: dict[str, float]
    percentile: float
    min_attainment: float | None
    scaling_efficiency: float
    server: dict[str, Any] = field(default_factory=dict)  # the run's study.server (engine_args, env)

    def predicted_fleet_rps(self, replicas: int) -> float:
        return replicas * self.capacity_rps * self.scaling_efficiency


def find_report(path: Path) -> Path:
    """A report.json from a report directory, a run directory (its report/) or the file itself."""
    path = Path(path)
    for candidate in (path, path / REPORT_JSON, path / "report" / REPORT_JSON):
        if candidate.is_file():
            return candidate
    raise ConfigError(f"no capacity report at {path}: expected report.json, a report directory or a run directory "
                      "with report/", hint="make one with `serve-bench report RUN_DIR`")


def read_claim(path: Path, checkpoint: str | None) -> Claim:
    """The plan for ``checkpoint`` (a name or label; None: the only checkpoint with a plan, else the base)."""
    file = find_report(path)
    try:
        report = read_json(file)
        settings, checkpoints = report["settings"], report["checkpoints"]
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"{file} is not a serve-bench capacity report") from None
    answered = [c for c in checkpoints if (c.get("plan") or {}).get("answered")]
    if checkpoint is not None:
        chosen = [c for c in checkpoints if checkpoint in (c.get("name"), c.get("label"))]
        if not chosen:
            raise ConfigError(f"{file} has no checkpoint {checkpoint!r}",
                              hint="checkpoints there: " + ", ".join(str(c.get("label")) for c in checkpoints))
        ck = chosen[0]
    elif len(answered) == 1:
        ck = answered[0]
    else:
        bases = [c for c in answered if c.get("is_base")]
        if len(bases) != 1:
            raise ConfigError(f"{file} plans for {len(answered)} checkpoints: say which one to validate",
                              hint="pass --checkpoint NAME (" + ", ".join(str(c.get("label")) for c in answered) + ")")
        ck = bases[0]
    plan = ck.get("plan") or {}
    if not plan.get("answered"):
        raise ConfigError(f"{ck.get('label')} has no capacity plan to validate: {plan.get('reason') or 'no answer'}")
    if plan.get("input_tokens") is None or plan.get("output_tokens") is None:
        raise ConfigError(f"{file} was written by an older serve-bench: it does not keep the traffic's mix",
                          hint="write the report again with `serve-bench report RUN_DIR`")
    run = _run_path(report, ck.get("run"))
    manifest = _manifest(run)
    profile = next((p for p in manifest.get("profiles") or [] if p.get("name") == ck.get("profile")), {})
    cap = settings.get("capacity") or {}
    return Claim(report=file, run=run, checkpoint=str(ck["name"]), label=str(ck.get("label") or ck["name"]),
                 model_path=_checkpoint_path(manifest, ck["name"]), api=str(profile.get("api") or "chat"),
                 prompts=_prompts(profile),
                 rps=float(cap["rps"]), headroom=float(cap.get("headroom", 0.0)), replicas=int(plan["replicas"]),
                 capacity_rps=float(plan["capacity_rps"]), capacity_rps_ci=tuple(plan.get("capacity_rps_ci") or
                                                                                  (None, None)),  # type: ignore
                 lower_bound=bool(plan.get("lower_bound")), input_tokens=max(1, round(plan["input_tokens"])),
                 output_tokens=max(1, round(plan["output_tokens"])), slo_ms=dict(report.get("slos_ms") or {}),
                 percentile=float(settings.get("slo_percentile", 99.0)), min_attainment=settings.get("min_attainment"),
                 scaling_efficiency=float(plan.get("scaling_efficiency") or 1.0),
                 server=dict((manifest.get("study") or {}).get("server") or {}))


def _run_path(report: dict[str, Any], name: Any) -> Path | None:
    for run in report.get("runs") or []:
        if run.get("name") == name and run.get("path"):
            return Path(run["path"])
    return None


def _manifest(run: Path | None) -> dict[str, Any]:
    if run is None or not (run / "manifest.json").is_file():
        return {}
    try:
        data = read_json(run / "manifest.json")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _checkpoint_path(manifest: dict[str, Any], name: str) -> str | None:
    for ck in manifest.get("checkpoints") or []:
        if ck.get("name") == name and ck.get("origin") != "remote" and ck.get("path"):
            return str(ck["path"])
    return None


def _prompts(profile: dict[str, Any]) -> dict[str, Any]:
    """The measured profile's prompts; a trace's become synthetic (the replay sets its own rate and mix)."""
    prompts = dict(profile.get("prompts") or {"kind": "synthetic"})
    return prompts if prompts.get("kind") in ("synthetic", "jsonl", "csv") else {"kind": "synthetic"}
