"""The only orchestrator: checkpoints → a vLLM server each → load profiles →
the run directory. Every finished stage is on disk before the next begins, so
a crash or Ctrl-C keeps all finished results; servers are always stopped."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import requests

from serve_bench import auth, environment
from serve_bench import checkpoints as ckpts
from serve_bench.errors import ConfigError, EvalError, ServeBenchError, ServerDiedError, ServerError, ServerStartError
from serve_bench.evaluate import evaluate_served
from serve_bench.evaluate.offline import check_source
from serve_bench.evaluate.table import TABLE_JSON, TABLE_MD, dichotomy_table
from serve_bench.evaluate.tasks import resolve as resolve_tasks
from serve_bench.load.process import RemoteMaster, run_profile
from serve_bench.measure.stage_result import load_label
from serve_bench.observe import vllm_names
from serve_bench.observe.energy import server_gpus
from serve_bench.observe.observer import Observer
from serve_bench.report import build_report
from serve_bench.rundir import EVAL_DIR, RESULTS, SERIES, RunDir, StageFile, write_json
from serve_bench.serve.fleet import Fleet, shares
from serve_bench.serve.server import ServerSpec, VllmServer, vllm_build
from serve_bench.serve.startup import describe as describe_startup
from serve_bench.serve.startup import read_startup
from serve_bench.study import StudySpec
from serve_bench.summary import collect, render_markdown, write_summary
from serve_bench.workload.profiles import LoadProfile, load_profile


class Events(Protocol):
    """What the pipeline reports while it runs; the CLI draws it, tests may record it."""

    def run_started(self, run_dir: Path) -> None: ...
    def observing(self, observer: Any) -> None: ...
    def phase(self, checkpoint: str, text: str) -> None: ...
    def progress(self, checkpoint: str, text: str, done: int, total: int) -> None: ...
    def stage_running(self, checkpoint: str, profile: str, stage: str, kind: str, load: str) -> None: ...
    def checkpoint_started(self, name: str, index: int, total: int) -> None: ...
    def server_ready(self, name: str, url: str, startup: str = "") -> None: ...
    def stage_started(self, checkpoint: str, stage: str) -> None: ...
    def request_done(self, ok: bool) -> None: ...
    def stage_done(self, checkpoint: str, result: StageFile) -> None: ...
    def metrics_started(self, url: str) -> None: ...
    def note(self, message: str) -> None: ...
    def problem(self, message: str) -> None: ...


class NoEvents:
    def __getattr__(self, name: str) -> Any:
        return lambda *a, **k: None


@dataclass
class RunOutcome:
    run_dir: Path
    status: str  # completed, failed, interrupted
    rows: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    eval_problems: int = 0  # how many of the problems are failed evaluations (exit 7 when they are all)
    report: Any = None  # serve_bench.report.ReportFiles, when the report was written
    trials: list[RunOutcome] = field(default_factory=list)  # a repeated run: each trial's own outcome


@dataclass(frozen=True)
class Trial:
    """One trial of a repeated run: its number (from 1), of how many, and the checkpoints in reverse order
    (every second trial: A B, B A, A B …, so that drift of the host hits every checkpoint alike)."""

    index: int
    of: int
    series: Path
    reverse: bool

    def arrange(self, checkpoints: list[Any]) -> list[Any]:
        return checkpoints[::-1] if self.reverse else list(checkpoints)

    def describe(self, order: list[str]) -> dict[str, Any]:
        return {"index": self.index, "of": self.of, "series": str(self.series), "order": order}


def run_study(study: StudySpec, events: Events | None = None, command: list[str] | None = None,
              energy_meter: Any = None) -> RunOutcome:
    """``energy_meter`` replaces the probe of this machine's energy counters (tests without a GPU). With
    ``study.repeats`` > 1: a series directory holding one run directory per trial (see :func:`run_trials`)."""
    ev: Events = events or NoEvents()  # type: ignore[assignment]
    profiles = [load_profile(p) for p in study.profiles]  # bad profiles fail before anything starts
    if study.eval.enabled:  # so does evaluation data that cannot be read (no hub, a file missing)
        check_source(resolve_tasks(study.eval), study.eval.data_dir)
    if study.repeats > 1:
        return run_trials(study, profiles, ev, command, energy_meter)
    return _run_once(study, profiles, _new_run_dir(study), ev, command, energy_meter)


def _new_run_dir(study: StudySpec) -> RunDir:
    return RunDir.at(study.run_dir) if study.run_dir else RunDir.create(study.runs_dir, study.name)


def run_trials(study: StudySpec, profiles: list[LoadProfile], ev: Events, command: list[str] | None,
               energy_meter: Any) -> RunOutcome:
    """``study.repeats`` trials, each a complete run directory ``trial-N`` inside one series directory (so
    that ``summarize``, ``report`` and ``compare`` read a trial as any run, and ``compare`` a series as its
    trials). Checkpoint blocks alternate their order; a launched server starts afresh for each block (an
    empty prefix cache); at ``--url`` the prefix cache is reset between trials where the server offers it.
    Accuracy is evaluated in the first trial only (greedy decoding gives the same answers again)."""
    series = _new_run_dir(study)
    info: dict[str, Any] = {"study": study.name, "trials": study.repeats, "cooldown_s": study.cooldown_s,
                            "started_utc": _now(), "status": "running", "runs": [], "notes": []}
    write_json(series.path / SERIES, info)
    ev.run_started(series.path)
    outcome = RunOutcome(series.path, "running")
    try:
        with _settled(outcome):
            for index in range(1, study.repeats + 1):
                if index > 1:
                    _between_trials(study, ev, info)
                trial = Trial(index, study.repeats, series.path, reverse=index % 2 == 0)
                spec = study if index == 1 else study.model_copy(
                    update={"eval": study.eval.model_copy(update={"enabled": False})})
                run = RunDir.create(series.path, f"trial-{index}", stamped=False)
                info["runs"].append(run.path.name)
                write_json(series.path / SERIES, info)
                done = _run_once(spec, profiles, run, ev, command, energy_meter, trial)
                outcome.trials.append(done)
                outcome.problems += [f"trial {index}: {p}" for p in done.problems]
                outcome.eval_problems += done.eval_problems
                server_failed = len(done.problems) > done.eval_problems
                if server_failed and study.on_server_death == "stop":
                    break
            outcome.status = "failed" if outcome.problems else "completed"
    finally:
        info.update(status=outcome.status, ended_utc=_now())
        write_json(series.path / SERIES, info)
    if outcome.trials:
        outcome.rows = outcome.trials[-1].rows
        if len(outcome.trials) > 1:  # run to run, across the trials (each trial has its own report too)
            outcome.report = _report(series, ev)
    return outcome


def _between_trials(study: StudySpec, ev: Events, info: dict[str, Any]) -> None:
    """A cool-down, and the prefix cache of a server serve-bench did not start emptied (a launched server
    starts afresh for each trial)."""
    if study.cooldown_s > 0:
        ev.phase("", f"cooling down {study.cooldown_s:g} s between trials")
        time.sleep(study.cooldown_s)
    for url in study.server.urls:
        said = reset_prefix_cache(url, api_key(study))
        if said and said not in info["notes"]:
            info["notes"].append(said)
            ev.note(said)


@contextlib.contextmanager
def _settled(outcome: RunOutcome) -> Iterator[None]:
    """A run (or series) that raises is 'interrupted' (Ctrl-C) or 'failed', and the error goes on."""
    try:
        yield
    except KeyboardInterrupt:
        outcome.status = "interrupted"
        raise
    except BaseException:
        outcome.status = "failed"
        raise


def reset_prefix_cache(url: str, key: str | None) -> str | None:
    """Empty the prefix cache of the server at ``url`` (vLLM's ``POST /reset_prefix_cache``); a sentence when
    that could not be done, None when it was."""
    try:
        resp = requests.post(f"{url.rstrip('/')}/reset_prefix_cache", headers=auth.headers(key), timeout=30)
    except requests.RequestException as err:
        return f"the prefix cache at {url} could not be reset between trials ({type(err).__name__})"
    if resp.status_code < 300:
        return None
    return (f"the server at {url} does not reset its prefix cache on request (HTTP {resp.status_code}; vLLM offers "
            "POST /reset_prefix_cache with VLLM_SERVER_DEV_MODE=1): cached prefixes carry over between trials")


def _run_once(study: StudySpec, profiles: list[LoadProfile], run: RunDir, ev: Events, command: list[str] | None,
              energy_meter: Any, trial: Trial | None = None) -> RunOutcome:
    key = api_key(study)
    slo = study.resolved_slo()
    secrets = [key, auth.key_from_env(study.server.api_key_env)]

    def save_manifest() -> None:
        write_json(run.path / "manifest.json", auth.redact(manifest, secrets))

    manifest: dict[str, Any] = {
        "study": study.model_dump(mode="json"),
        "profiles": [p.model_dump(mode="json") for p in profiles],
        "command": command if command is not None else sys.argv,
        "started_utc": _now(),
        "status": "running",
        "packages": environment.package_versions(),
        "hardware": environment.hardware(),
        "checkpoints": [],
        "slo": slo.model_dump(),  # the one SLO set goodput, the exporter, the live view and the report use
    }
    save_manifest()
    if trial is None:
        ev.run_started(run.path)
    outcome = RunOutcome(run.path, "running")
    observer = Observer(slos_ms=slo.slo_ms, metrics_host=study.metrics.host, metrics_port=study.metrics.port,
                        gpus=_server_gpus(study), idle_s=study.energy.idle_s, meter=energy_meter)
    try:
        with _settled(outcome):
            manifest["metrics_url"] = observer.start()
            save_manifest()
            ev.metrics_started(manifest["metrics_url"])
            ev.observing(observer)
            for note in observer.notes:
                ev.note(note)
            ev.phase("", "preparing the checkpoints (pruned once, then reused)")
            served = _targets(study, key, ev)
            manifest["checkpoints"] = [c.describe() for c in served]
            if trial is not None:
                served = trial.arrange(served)
                manifest["trial"] = trial.describe([c.name for c in served])
            save_manifest()
            for i, ck in enumerate(served):
                if trial is None:
                    ev.checkpoint_started(ck.label or ck.name, i, len(served))
                else:  # the live view counts every trial's stages
                    ev.checkpoint_started(f"{ck.label or ck.name} (trial {trial.index}/{trial.of})",
                                          (trial.index - 1) * len(served) + i, len(served) * trial.of)
                try:
                    _serve_and_load(study, profiles, run, ck, ev, outcome, key, observer,
                                    trial.index if trial else None)
                except ServerError as err:
                    outcome.problems.append(f"{ck.name}: {err.message}")
                    ev.problem(f"{ck.name}: {err.message}")
                    if study.on_server_death == "stop":
                        break
            outcome.status = "failed" if outcome.problems else "completed"
    finally:
        observer.close()
        manifest.update(status=outcome.status, ended_utc=_now(), problems=outcome.problems)
        save_manifest()
        outcome.rows = collect(run)
        write_summary(run.path, outcome.rows)
        (run.path / RESULTS).write_text(render_markdown(outcome.rows))
    if outcome.rows:  # from what is on disk now: summary.json is written
        if study.eval.enabled:
            _dichotomy(run, ev, manifest)
        outcome.report = _report(run, ev)
        if outcome.report is not None:
            manifest["report"] = [str(p.relative_to(run.path)) for p in outcome.report.paths]
        save_manifest()
    return outcome


def _report(run: RunDir, ev: Events) -> Any:
    """The capacity report from what is on disk (``serve-bench report`` makes the same one again). Its failure
    loses no measurement: it is said, and the run's results stand."""
    ev.phase("", "writing the capacity report")
    try:
        return build_report([run.path])
    except ServeBenchError as err:
        ev.problem(f"the capacity report could not be written: {err}; the measurements are kept, and "
                   f"`serve-bench report {run.path}` retries it")
        return None


def api_key(study: StudySpec) -> str | None:
    """The key sent to the server: the study's environment variable, else vLLM's --api-key in engine_args."""
    from_env = auth.key_from_env(study.server.api_key_env)
    if study.server.urls:
        return from_env
    return from_env or auth.split_api_key(study.server.launch_args)[1]


def _server_gpus(study: StudySpec) -> list[int] | None:
    """The GPUs the launched server (or replicas: all of theirs) uses; with --url, unknown (every GPU visible
    here is measured)."""
    if study.server.urls:
        return None
    env = {**os.environ, **study.server.launch_env}
    if study.server.replicas > 1:  # refuses more replicas than GPUs or cores, before anything starts
        split = shares(study.server.replicas, vllm_build(), study.server.launch_args, env)
        return sorted(g for share in split for g in share.gpus) if vllm_build() == "cuda" else None
    try:
        return server_gpus(study.server.launch_args, env)
    except ValueError as err:
        raise ConfigError(f"server.engine_args: {err}") from None


def _targets(study: StudySpec, key: str | None, ev: Events) -> list[ckpts.ServedCheckpoint]:
    if study.server.urls:
        name, root = served_fleet(study.server.urls, study.server.served_model, key)
        tokenizer = study.server.tokenizer or root
        if tokenizer is None:
            raise ConfigError(f"cannot tell which tokenizer {study.server.urls[0]} uses for {name!r}; synthetic "
                              "prompts of an exact length need it", hint="pass --tokenizer DIR")
        return [ckpts.ServedCheckpoint(name, Path(tokenizer), "remote", "", name)]
    return ckpts.prepare(study, say=lambda text: ev.phase("", text),
                         progress=lambda text, done, total: ev.progress("", text, done, total))


def _serve_and_load(study: StudySpec, profiles: list[LoadProfile], run: RunDir, ck: ckpts.ServedCheckpoint,
                    ev: Events, outcome: RunOutcome, key: str | None, observer: Any, trial: int | None) -> None:
    ck_dir = run.checkpoint_dir(ck.name)
    write_json(ck_dir / "checkpoint.json", ck.describe())
    if study.server.urls:
        # a fleet is evaluated at its first endpoint: every endpoint serves the same model (served_fleet)
        _load(study, profiles, run, ck, study.server.urls, ck.name, None, ev, outcome, key, observer, trial)
        _evaluate(study, ck, study.server.urls[0], ck.name, None, ck_dir, ev, outcome, key)
        return
    spec = ServerSpec(model_path=ck.path, served_name=ck.name, log_path=ck_dir / "server.log",
                      host=study.server.host, port=study.server.port, engine_args=study.server.launch_args,
                      env=study.server.launch_env, startup_timeout_s=study.server.startup_timeout_s)
    replicas = study.server.replicas
    server: VllmServer | Fleet = VllmServer(spec) if replicas == 1 else Fleet(spec, replicas)
    ev.phase(ck.label or ck.name, "starting the vLLM server" if replicas == 1 else
             f"starting {replicas} vLLM replicas ({', '.join(s.describe() for s in server.shares)})")
    began = time.monotonic()
    try:
        server.start()
        server.wait_ready()
    except ServerStartError:
        server.stop()
        raise
    try:
        urls = server.urls
        logs = [s.spec.log_path for s in server.servers] if isinstance(server, Fleet) else [spec.log_path]
        startup = read_startup(logs[0], time.monotonic() - began)  # before any stage: apart from them
        about = {**ck.describe(), "startup": startup}
        if isinstance(server, Fleet):
            about["replicas"] = server.describe()
        write_json(ck_dir / "checkpoint.json", about)
        ev.server_ready(ck.label or ck.name, ", ".join(urls), describe_startup(startup))
        _load(study, profiles, run, ck, urls, ck.name, server, ev, outcome, key, observer, trial)
        _evaluate(study, ck, urls[0], ck.name, server, ck_dir, ev, outcome, key)
    finally:
        server.stop()


def _evaluate(study: StudySpec, ck: ckpts.ServedCheckpoint, url: str, served_name: str, server: Any, ck_dir: Path,
              ev: Events, outcome: RunOutcome, key: str | None) -> None:
    """Accuracy on the same server, after its load profiles (so evaluation traffic never overlaps a
    measured stage). A failed evaluation is the checkpoint's problem, not the run's: its finished tasks are
    kept and the next checkpoint runs; a server that died is the server's (ServerDiedError)."""
    if not study.eval.enabled:
        return
    label = ck.label or ck.name
    ev.phase(label, "evaluating accuracy (lm-eval on this server)")
    try:
        evaluate_served(url, served_name, ck.path, study.eval, ck_dir / EVAL_DIR, api_key=key,
                        progress=lambda text: ev.phase(label, f"evaluating {text}"),
                        check_server=server.check_alive if server is not None else None)
    except EvalError as err:
        outcome.problems.append(f"{ck.name}: evaluation: {err}")
        outcome.eval_problems += 1
        ev.problem(f"{label}: evaluation: {err}")


def _dichotomy(run: RunDir, ev: Events, manifest: dict[str, Any]) -> None:
    """The pruning-dichotomy table across the evaluated checkpoints (dichotomy.md, dichotomy.json)."""
    try:
        dichotomy_table(run.path)
    except (ServeBenchError, OSError, ValueError, KeyError) as err:  # a result file torn or edited by hand
        ev.problem(f"the dichotomy table could not be written: {err}")
        return
    manifest["dichotomy"] = [TABLE_MD, TABLE_JSON]


def _load(study: StudySpec, profiles: list[LoadProfile], run: RunDir, ck: ckpts.ServedCheckpoint, urls: list[str],
          served_name: str, server: Any, ev: Events, outcome: RunOutcome, key: str | None,
          observer: Any, trial: int | None) -> None:
    """``urls``: the server, or a fleet's every endpoint (each one's /metrics scraped)."""
    remote = RemoteMaster(study.master_bind_host, study.master_port) if study.remote_workers else None
    label = ck.label or ck.name
    def on_begin(live: Any) -> None:
        observer.stage_begun()
        ev.stage_running(label, live.profile, live.stage, live.kind, load_label(live.target))

    observer.live.on_begin = on_begin
    if observer.meter.available and study.energy.idle_s > 0:
        ev.phase(label, f"measuring idle power with the model loaded ({study.energy.idle_s:g} s)")
    observer.checkpoint_started(ck.name, urls[0], key, lambda i, when: run.server_metrics_path(ck.name, i, when),
                                run.server_timeseries_path(ck.name), endpoints=urls,
                                replica_gpus=[sh.gpus for sh in server.shares] if isinstance(server, Fleet) else ())
    names = observer.dashboard_names()
    if names and (names["renamed"] or names["missing"]):  # vLLM other than the dashboards' release
        lacks = sorted({m.split(": ", 1)[1] for m in names["missing"]})
        said = [f"{len(names['renamed'])} query(ies) need this server's older names"] if names["renamed"] else []
        said += [f"it does not export {', '.join(lacks)} (those panels stay empty)"] if lacks else []
        ev.note(f"{label}: the Grafana dashboards are written for vLLM {vllm_names.WRITTEN_FOR}'s metric names; "
                f"{'; '.join(said)}: serve-bench dashboards --vllm-metrics {urls[0]} writes them for it")
    try:
        _run_profiles(study, profiles, run, ck, urls, served_name, server, ev, key, observer, remote, trial)
    finally:
        observer.checkpoint_done()


def _run_profiles(study: StudySpec, profiles: list[LoadProfile], run: RunDir, ck: ckpts.ServedCheckpoint,
                  urls: list[str], served_name: str, server: Any, ev: Events, key: str | None, observer: Any,
                  remote: Any, trial: int | None) -> None:
    index = 0

    def on_record(record: Any) -> None:
        observer.record(record)
        ev.request_done(record.ok)

    for profile in profiles:
        def on_stage(result: Any, profile: LoadProfile = profile) -> None:
            nonlocal index
            index += 1
            observed = observer.stage_done(index, profile.name, result, result.load_text)
            done = StageFile(checkpoint=ck.name, profile=profile.name, index=index, trial=trial,
                             **{**dict(result), **observed})
            write_json(run.stage_path(ck.name, index, result.stage), done.model_dump(mode="json"))
            ev.stage_done(ck.label or ck.name, done)

        ev.stage_started(ck.label or ck.name, profile.name)
        results = run_profile(profile, url=urls[0], model=served_name, model_path=str(ck.path),
                              records_path=run.records_path(ck.name), log_path=run.loadgen_log_path(ck.name),
                              on_record=on_record, slos_ms=study.resolved_slo().slo_ms, on_stage=on_stage,
                              workers=study.remote_workers or study.workers, remote=remote, api_key=key,
                              worker_log_dir=run.checkpoint_dir(ck.name), live=observer.live, trial=trial,
                              endpoints=urls if len(urls) > 1 else None,
                              balance=study.server.balance, stop_on_death=study.on_server_death == "stop",
                              percentiles=study.percentiles)
        died = any(r.server_died for r in results) or (server is not None and not server.alive())
        if died:
            tail = server.log_tail() if server is not None else ""
            who = "a replica" if isinstance(server, Fleet) else "the server"
            raise ServerDiedError(f"{who} died during profile {profile.name}; finished stages are kept"
                                  + (f"; last lines of its log:\n{tail}" if tail else ""))


def served_fleet(urls: list[str], wanted: str | None, key: str | None) -> tuple[str, str | None]:
    """The model every endpoint serves and, when vLLM reports it as a local directory, its checkpoint. A fleet
    whose endpoints serve different models or tokenizers is refused, naming the endpoint that differs."""
    card = _model_card(urls[0], wanted, key)
    name, root = card["id"], _local_root(card)
    if len(urls) == 1:
        return name, root
    probe = _tokenize(urls[0], name, key)
    for url in urls[1:]:
        other = _model_card(url, name, key)  # refuses an endpoint that does not serve the first one's model
        if card.get("root") and other.get("root") and other["root"] != card["root"]:
            raise ConfigError(f"{url} serves {name!r} from {other['root']}, but {urls[0]} from {card['root']}: a "
                              "fleet's endpoints must serve the same model",
                              hint="point every --url at a replica of the same checkpoint")
        tokens = _tokenize(url, name, key)
        if probe is not None and tokens is not None and tokens != probe:
            raise ConfigError(f"{url} tokenizes text differently from {urls[0]}: a fleet's endpoints must serve "
                              "the same tokenizer", hint="point every --url at a replica of the same checkpoint")
    return name, root


# A text whose tokens tell tokenizers apart: words, digits, punctuation, a non-ASCII letter.
_TOKENIZER_PROBE = "serve-bench checks 12 replicas: naïve, fast... or slow?"


def _tokenize(url: str, model: str, key: str | None) -> list[int] | None:
    """The probe's token ids from vLLM's ``POST /tokenize``; None where the server does not offer it."""
    try:
        resp = requests.post(f"{url.rstrip('/')}/tokenize", json={"model": model, "prompt": _TOKENIZER_PROBE},
                             headers=auth.headers(key), timeout=10)
        tokens = resp.json().get("tokens") if resp.status_code == 200 else None
    except (requests.RequestException, ValueError, AttributeError):
        return None
    return tokens if isinstance(tokens, list) else None


def _served_model(url: str, wanted: str | None, key: str | None) -> tuple[str, str | None]:
    """The model to load at ``url`` and, when vLLM reports it as a local directory, its checkpoint."""
    entry = _model_card(url, wanted, key)
    return entry["id"], _local_root(entry)


def _local_root(card: dict[str, Any]) -> str | None:
    """The checkpoint a ``/v1/models`` entry names, when it is a directory on this host (the tokenizer)."""
    root = card.get("root")
    return root if root and Path(root).is_dir() else None


def _model_card(url: str, wanted: str | None, key: str | None) -> dict[str, Any]:
    """``/v1/models``' entry for ``wanted`` (None: the first model) at ``url``; a ConfigError that says why
    when the server cannot be listed or does not serve it."""
    try:
        resp = requests.get(f"{url.rstrip('/')}/v1/models", headers=auth.headers(key), timeout=10)
    except requests.RequestException as err:
        raise ConfigError(f"cannot list the models served at {url} ({type(err).__name__})",
                          hint="check --url: it must be an OpenAI-compatible server") from err
    if resp.status_code == 401:
        raise ConfigError(f"{url} answers 401 Unauthorized" + (": the API key was refused" if key else ""),
                          hint="put the server's key in OPENAI_API_KEY (or the variable named by "
                               "server.api_key_env)")
    try:
        models = resp.json()["data"]
    except (ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"cannot list the models served at {url} ({type(err).__name__})",
                          hint="check --url: it must be an OpenAI-compatible server") from err
    ids = [m.get("id") for m in models]
    if not ids or (wanted and wanted not in ids):
        raise ConfigError(f"{url} does not serve {wanted!r}" if wanted else f"{url} serves no model",
                          hint=f"models served there: {', '.join(map(str, ids)) or 'none'}")
    return models[ids.index(wanted)] if wanted else models[0]


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
