"""``serve-bench selfcheck``: the whole measurement chain against an engine whose answer is known, before any
real server. For each setting it starts the known-capacity engine (:mod:`serve_bench.simengine`) in its own
process, runs a closed-loop ladder against it with ``serve-bench run`` (Locust, the records, the exporter,
the report, nothing mocked), and sets three things side by side:

    load generator's error   per stage, client TTFT / TPOT p50 minus the engine's own (its writes), and the
                             engine's lateness (its writes against its schedule), which is not the client's
    streams per core         content chunks the load generator took per CPU-second at its busiest stage, and
                             the streams one core drives at a given inter-token gap
    capacity error           the report's highest load within the SLOs, request rate per replica and
                             replicas, against the engine's truth (:func:`simengine.truth.capacity_truth`:
                             the same scheduler run in virtual time, no client at all)

Settings (one place, :data:`SETTINGS`): decode-bound, prefill-heavy, and queueing with fewer slots than
users. A real server can tell none of this: its timing is unknown and noisy."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from serve_bench.errors import ConfigError
from serve_bench.evaluate.settings import EvalSettings
from serve_bench.measure.metrics import completed, measured_records, percentile
from serve_bench.measure.records import read_records
from serve_bench.report.capacity import replicas_for
from serve_bench.rundir import RunDir, StageFile, read_json, write_json
from serve_bench.simengine.params import EngineParams
from serve_bench.simengine.server import read_log, running
from serve_bench.simengine.truth import capacity_truth
from serve_bench.study import CapacitySettings, EnergySettings, ReportSettings, ServerSettings, StudySpec

RESULT_JSON, RESULT_MD = "selfcheck.json", "selfcheck.md"
PERCENTILE, ATTAINMENT = 99.0, 0.95  # the report's defaults: the check is of what a user gets
RPS, HEADROOM = 100.0, 0.2  # the traffic the replica count is checked for
GAPS_MS = (10.0, 20.0, 50.0)  # inter-token gaps the streams-per-core figure is given at (GPU-like to CPU-like)


@dataclass(frozen=True)
class Setting:
    """One engine and the ladder and SLOs that cross its capacity."""

    engine: EngineParams
    prompt_words: int  # the engine counts a prompt's words as its tokens
    output_tokens: int
    users: tuple[int, ...]
    slo_ms: dict[str, float]
    about: str


SETTINGS: dict[str, Setting] = {
    "decode": Setting(EngineParams(step_ms=10.0, per_seq_ms=1.0), 64, 32, (8, 16, 24, 32, 40, 48),
                      {"tpot_ms": 40.0}, "decode-bound: every step 10 ms + 1 ms per running sequence"),
    "prefill": Setting(EngineParams(step_ms=10.0, per_seq_ms=1.0, per_prefill_token_ms=0.02), 1024, 32,
                       (4, 8, 12, 16, 20, 24), {"ttft_ms": 250.0, "tpot_ms": 40.0},
                       "prefill-heavy: 1,024-token prompts at 0.02 ms per token slow every step they join"),
    "queue": Setting(EngineParams(step_ms=10.0, per_seq_ms=1.0, max_num_seqs=16), 64, 32, (8, 16, 24, 32, 40, 48),
                     {"ttft_ms": 1000.0}, "queueing: 16 running slots, the rest of the users wait in line"),
}


@dataclass
class StageCheck:
    stage: str
    users: int
    requests: int
    client_ttft_p50_ms: float | None
    engine_ttft_p50_ms: float | None
    client_tpot_p50_ms: float | None
    engine_tpot_p50_ms: float | None
    engine_late_p50_ms: float | None
    engine_late_p99_ms: float | None
    chunks_per_cpu_s: float | None


@dataclass
class SettingCheck:
    name: str
    about: str
    engine: str
    slo_ms: dict[str, float]
    run_dir: str
    stages: list[StageCheck]
    truth: dict[str, Any]
    report: dict[str, Any]
    errors: dict[str, float | None] = field(default_factory=dict)

    @property
    def max_chunks_per_cpu_s(self) -> float | None:
        values = [s.chunks_per_cpu_s for s in self.stages if s.chunks_per_cpu_s]
        return max(values) if values else None


def check_names(names: Sequence[str]) -> list[str]:
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        raise ConfigError(f"unknown selfcheck setting(s) {', '.join(unknown)}", hint=f"valid: {', '.join(SETTINGS)}")
    return list(dict.fromkeys(names)) or list(SETTINGS)


def run_selfcheck(names: Sequence[str], out_dir: Path, *, duration_s: float = 10.0, events: Any = None,
                  say: Callable[[str], None] = lambda text: None) -> list[SettingCheck]:
    """Every setting in turn; results in ``out_dir`` (a run directory per setting, selfcheck.json/md)."""
    names = check_names(names)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot create {out_dir}: {err.strerror}", hint="choose a writable --out") from None
    checks = []
    for name in names:
        setting = SETTINGS[name]
        say(f"{name}: {setting.about}; {len(setting.users)} stages of {duration_s:g} s")
        work = out_dir / name
        profile = _write_profile(work, name, setting, duration_s)
        log_path = work / "engine.jsonl"
        with running(setting.engine, log_path=log_path) as (url, _proc):
            outcome = _run(name, setting, profile, url, work, events)
        checks.append(_check(name, setting, RunDir(outcome.run_dir), log_path))
        say(render_setting(checks[-1]))
    write_json(out_dir / RESULT_JSON, {"settings": [asdict(c) for c in checks]})
    (out_dir / RESULT_MD).write_text(render(checks), encoding="utf-8")
    return checks


def _write_profile(work: Path, name: str, setting: Setting, duration_s: float) -> Path:
    work.mkdir(parents=True, exist_ok=True)
    prompts = work / "prompts.jsonl"
    words = " ".join(["tok"] * setting.prompt_words)
    prompts.write_text("".join(json.dumps({"prompt": words}) + "\n" for _ in range(16)), encoding="utf-8")
    profile = {
        "name": f"selfcheck-{name}", "description": setting.about, "api": "chat",
        "input_tokens": setting.prompt_words, "output_tokens": setting.output_tokens, "ignore_eos": True,
        "seed": 0, "timeout_s": 120,
        "prompts": {"kind": "jsonl", "path": str(prompts)}, "warmup": {"duration_s": 1.0},
        "stages": [{"kind": "ladder", "of": "concurrency", "values": list(setting.users), "duration_s": duration_s}],
    }
    path = work / "profile.yaml"
    path.write_text(yaml.safe_dump(profile, sort_keys=False), encoding="utf-8")
    return path


def _run(name: str, setting: Setting, profile: Path, url: str, work: Path, events: Any) -> Any:
    from serve_bench.pipeline import run_study  # pulls in torch: not for `serve-bench --help`

    study = StudySpec(name=f"selfcheck-{name}", profiles=[str(profile)], out_dir=work,
                      server=ServerSettings(url=url, tokenizer="none: prompts from a file"),
                      eval=EvalSettings(enabled=False), energy=EnergySettings(idle_s=0), slo=dict(setting.slo_ms),
                      report=ReportSettings(slo_percentile=PERCENTILE, min_attainment=ATTAINMENT,
                                            capacity=CapacitySettings(rps=RPS, headroom=HEADROOM)))
    outcome = run_study(study, events, command=["serve-bench", "selfcheck", name])
    if outcome.status != "completed" or outcome.report is None:
        raise ConfigError(f"selfcheck {name}: the run did not complete ({'; '.join(outcome.problems) or 'no report'})",
                          hint=f"see {outcome.run_dir}")
    return outcome


def _check(name: str, setting: Setting, run: RunDir, log_path: Path) -> SettingCheck:
    [ck] = run.checkpoints()
    engine = read_log(log_path)
    records = list(read_records(run.records_path(ck)))
    stages = [_stage_check(res, records, engine) for res in run.stage_results(ck)]
    truth = capacity_truth(setting.engine, slos_ms=setting.slo_ms, percentile=PERCENTILE, min_attainment=ATTAINMENT,
                           prompt_tokens=setting.prompt_words, output_tokens=setting.output_tokens,
                           max_users=max(setting.users) + 8)
    truth_rate = truth.get("rate_rps")
    truth["replicas"] = replicas_for(RPS, truth_rate, HEADROOM) if truth_rate else None
    report = read_json(run.path / "report" / "report.json")
    ckr = report["checkpoints"][0]
    slo, plan = ckr.get("slo") or {}, ckr.get("plan") or {}
    got = {"load": slo.get("load"), "load_ci": slo.get("ci_load"), "rate_rps": slo.get("rate_rps"),
           "rate_ci": slo.get("ci_rate_rps"), "binding": slo.get("binding"), "status": slo.get("status"),
           "replicas": plan.get("replicas"), "replicas_ci": plan.get("replicas_ci"), "notes": slo.get("notes")}
    errors = {"load": _rel(got["load"], truth.get("load")), "rate_rps": _rel(got["rate_rps"], truth_rate),
              "replicas": (None if got["replicas"] is None or truth["replicas"] is None
                           else float(got["replicas"] - truth["replicas"]))}
    return SettingCheck(name=name, about=setting.about, engine=setting.engine.describe(), slo_ms=setting.slo_ms,
                        run_dir=str(run.path), stages=stages, truth=truth, report=got, errors=errors)


def _stage_check(result: StageFile, records: list[Any], engine: list[dict[str, Any]]) -> StageCheck:
    stage = result.stage
    recs = [r for r in measured_records([r for r in records if r.stage == stage], result.warmup_end_s)
            if completed(r)]
    lo = min((r.send_s for r in recs), default=0.0)
    hi = max((r.last_token_s or r.send_s for r in recs), default=0.0)
    mine = [e for e in engine if lo - 0.05 <= e["recv_s"] <= hi and e.get("last_write_s") is not None]
    tpot_client = [(r.last_token_s - r.first_token_s) / (r.output_tokens - 1) for r in recs
                   if r.output_tokens and r.output_tokens > 1]
    tpot_engine = [(e["last_write_s"] - e["first_write_s"]) / (e["output_tokens"] - 1) for e in mine
                   if e["output_tokens"] > 1]
    cpu = result.loadgen_cpu.get("master")
    duration = result.summary.get("duration")
    chunks = sum(len(r.chunk_times_s) for r in recs)
    return StageCheck(
        stage=stage, users=int(result.target.get("users") or 0), requests=len(recs),
        client_ttft_p50_ms=_ms(percentile([r.first_token_s - r.send_s for r in recs], 50)),
        engine_ttft_p50_ms=_ms(percentile([e["first_write_s"] - e["recv_s"] for e in mine], 50)),
        client_tpot_p50_ms=_ms(percentile(tpot_client, 50)), engine_tpot_p50_ms=_ms(percentile(tpot_engine, 50)),
        engine_late_p50_ms=_ms(percentile([e["first_write_s"] - e["first_token_s"] for e in mine], 50)),
        engine_late_p99_ms=_ms(percentile([e["first_write_s"] - e["first_token_s"] for e in mine], 99)),
        chunks_per_cpu_s=chunks / duration / cpu if cpu and duration else None)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0


def _rel(got: float | None, truth: float | None) -> float | None:
    return None if got is None or not truth else (got - truth) / truth


# -- text ------------------------------------------------------------------------------------------------------------

def _f(value: Any, fmt: str = "{:.3g}") -> str:
    return "–" if value is None else fmt.format(value)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:+.1%}".replace("-", "−")


def render_setting(c: SettingCheck) -> str:
    t, r = c.truth, c.report
    lo, hi = r["load_ci"] or (None, None)
    lines = [f"  {c.name}: SLOs {', '.join(f'p{PERCENTILE:g} {k} ≤ {v:g}' for k, v in c.slo_ms.items())}, "
             f"attainment ≥ {ATTAINMENT:.0%}",
             f"    highest load within the SLOs: report {_f(r['load'])} users ({_f(lo)}–{_f(hi)}), truth "
             f"{_f(t.get('load'))} ({_pct(c.errors['load'])}); binding: report {r['binding']}, "
             f"truth {t.get('binding')}",
             f"    req/s per replica: report {_f(r['rate_rps'])}, truth {_f(t.get('rate_rps'))} "
             f"({_pct(c.errors['rate_rps'])}); replicas for {RPS:g} req/s at {HEADROOM:.0%} headroom: report "
             f"{_f(r['replicas'], '{}')}, truth {_f(t.get('replicas'), '{}')}"]
    worst = max((abs((s.client_ttft_p50_ms or 0) - (s.engine_ttft_p50_ms or 0)) for s in c.stages), default=None)
    lines.append(f"    load generator's own TTFT error (p50, worst stage): {_f(worst, '{:.2f}')} ms; "
                 f"chunks per CPU-second: {_f(c.max_chunks_per_cpu_s, '{:,.0f}')}")
    return "\n".join(lines)


def render(checks: list[SettingCheck]) -> str:
    out = ["# serve-bench selfcheck", "",
           "Each setting: the known-capacity engine in its own process, a closed-loop ladder through "
           "`serve-bench run`, the report against the engine's truth (the same scheduler in virtual time).", "",
           "| setting | engine | SLOs | highest load: report (CI) / truth | error | req/s per replica: report / "
           "truth | error | binding: report / truth | replicas: report / truth |",
           "|---|---|---|---|---|---|---|---|---|"]
    for c in checks:
        t, r = c.truth, c.report
        lo, hi = r["load_ci"] or (None, None)
        out.append(f"| {c.name} | {c.engine} | {', '.join(f'{k} ≤ {v:g}' for k, v in c.slo_ms.items())} | "
                   f"{_f(r['load'])} ({_f(lo)}–{_f(hi)}) / {_f(t.get('load'))} | {_pct(c.errors['load'])} | "
                   f"{_f(r['rate_rps'])} / {_f(t.get('rate_rps'))} | {_pct(c.errors['rate_rps'])} | "
                   f"{r['binding']} / {t.get('binding')} | {_f(r['replicas'], '{}')} / {_f(t.get('replicas'), '{}')} |")
    out += ["", "The load generator against the engine's own timestamps (p50 per stage, ms; lateness: the engine's "
            "writes against its schedule, which is the engine's delay, not the client's):", "",
            "| setting | stage | requests | TTFT client / engine | TPOT client / engine | engine late p50 / p99 | "
            "chunks per CPU-s |", "|---|---|---|---|---|---|---|"]
    for c in checks:
        for s in c.stages:
            out.append(f"| {c.name} | {s.stage} | {s.requests} | {_f(s.client_ttft_p50_ms, '{:.2f}')} / "
                       f"{_f(s.engine_ttft_p50_ms, '{:.2f}')} | {_f(s.client_tpot_p50_ms, '{:.2f}')} / "
                       f"{_f(s.engine_tpot_p50_ms, '{:.2f}')} | {_f(s.engine_late_p50_ms, '{:.2f}')} / "
                       f"{_f(s.engine_late_p99_ms, '{:.2f}')} | {_f(s.chunks_per_cpu_s, '{:,.0f}')} |")
    best = max((c.max_chunks_per_cpu_s or 0 for c in checks), default=0)
    if best:
        streams = ", ".join(f"{best * g / 1000:,.0f} streams at {g:g} ms between tokens" for g in GAPS_MS)
        out += ["", f"One core of this machine's load generator took {best:,.0f} content chunks per CPU-second at "
                f"its busiest stage: about {streams}, per core. Plan more load than that and the client, not the "
                f"server, sets the latency: add workers (`workers: N`)."]
    return "\n".join(out) + "\n"
