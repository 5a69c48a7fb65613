"""Resolving a study into its plan without side effects: the checkpoints as the run would find them
(served, reused, to prune, to convert), the server, energy and ports, with the run's own errors."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from serve_bench import auth, settings
from serve_bench.errors import ConfigError
from serve_bench.evaluate.offline import check_source
from serve_bench.evaluate.tasks import resolve as resolve_tasks
from serve_bench.observe.energy import probe
from serve_bench.plan.cost import BUNDLED_SHAPE, CPU_HOST, CostModel
from serve_bench.plan.estimate import make_plan
from serve_bench.plan.history import read_history
from serve_bench.plan.model import CheckpointPlan, EnergyPlan, EvalPlan, ServerPlan, StudyPlan
from serve_bench.prune import MANIFEST, Target
from serve_bench.prune.criteria import get as get_criterion
from serve_bench.prune.plan import plan as k_plan
from serve_bench.rundir import occupied
from serve_bench.serve.fleet import shares
from serve_bench.serve.server import CPU_DEFAULT_ENV, engine_args_for, port_in_use, vllm_build
from serve_bench.study import is_loopback
from serve_bench.workload.profiles import load_profile

if TYPE_CHECKING:
    from serve_bench.study import StudySpec


def plan_study(study: StudySpec, *, model: CostModel = CPU_HOST, verify: bool = True,
               use_history: bool = True) -> StudyPlan:
    """The study's plan. Validates what a real run validates before it starts a server, with the same
    errors; converts, prunes, downloads, starts and creates nothing. ``verify``: hash the weights of local
    checkpoints to tell exactly whether pruned copies are reusable, as the run does (False: trust the
    pruned copy's manifest when it is newer than the source's weights)."""
    from serve_bench import pipeline  # pulls in torch: serve_bench.plan must not

    profiles = [load_profile(p) for p in study.profiles]
    key = pipeline.api_key(study)
    notes: list[str] = []
    gpus = pipeline._server_gpus(study)
    server = _server(study, notes)
    urls = study.server.urls
    if urls:
        name, root = pipeline.served_fleet(urls, study.server.served_model, key)
        if not (study.server.tokenizer or root):
            raise ConfigError(f"cannot tell which tokenizer {urls[0]} uses for {name!r}; synthetic "
                              "prompts of an exact length need it", hint="pass --tokenizer DIR")
        where = urls[0] if len(urls) == 1 else f"{len(urls)} endpoints"
        checkpoints = [CheckpointPlan(name, "remote", "remote", f"served at {where}", name)]
        notes.append("the server at --url is not the model's: its stage times are a guess")
    else:
        checkpoints = _checkpoints(study, verify, notes)
    energy = _energy(study, gpus)
    _check_ports(study)
    if not is_loopback(study.metrics.host):
        notes.append(f"the metrics exporter would listen on {study.metrics.host}: anyone who can reach it can "
                     "read the run's live metrics")
    if study.remote_workers and not is_loopback(study.master_bind_host):
        notes.append(f"the Locust master would listen on {study.master_bind_host}:{study.master_port}; its "
                     "protocol is unauthenticated: anyone who reaches that port can join the run")
    if study.remote_workers:
        notes.append(f"waits for {study.remote_workers} remote worker(s) before the first stage (not in the "
                     "estimate)")
    if study.run_dir and occupied(study.run_dir):
        notes.append(f"--out {study.run_dir} already exists and is not empty: a real run would refuse it")
    history = read_history(study.history_dir) if use_history else None
    if server.mode == "launch" and server.build == "cuda":
        notes.append("the estimate uses the cost model of vLLM's CPU build, uncalibrated on this GPU until a "
                     "first run here: expect far shorter stages and a longer server start (compilation, CUDA "
                     "graphs); a finished run in runs_dir replaces the model's stage times with its own")
    if server.mode == "launch" and server.build is None:
        notes.append("vLLM is not installed here: a real run would stop at the first server start")
    if not urls and any(m.model not in (None, "default") for m in study.models):
        notes.append("the cost model is the bundled 135M model's: a larger model's stages take longer")
    if study.repeats > 1:
        notes.append(f"{study.repeats} trials: every stage runs {study.repeats} times, the checkpoints' order "
                     "alternating (A B, B A …)" + ("; accuracy is evaluated in the first trial only"
                                                   if study.eval.enabled else ""))
    return make_plan(study.name, study.run_dir or study.runs_dir, checkpoints, profiles, server, energy, model,
                     history, notes, _evaluation(study, model), trials=study.repeats, cooldown_s=study.cooldown_s,
                     exact_dir=study.run_dir is not None)


def _evaluation(study: StudySpec, model: CostModel) -> EvalPlan | None:
    """What the evaluation scores per checkpoint, with the run's own checks on its data (missing files fail
    here as they would there)."""
    if not study.eval.enabled:
        return None
    tasks = resolve_tasks(study.eval)
    check_source(tasks, study.eval.data_dir)
    items = {t.name: t.task.items(t.limit) for t in tasks}
    quick = [t.name for t in tasks if t.quick]
    data = str(study.eval.data_dir) if study.eval.data_dir else "the Hugging Face hub"
    return EvalPlan(items, data, model.eval_s(items, quick), model.eval_s(items, quick, pruned=True))


def _server(study: StudySpec, notes: list[str]) -> ServerPlan:
    s = study.server
    if s.urls:
        return ServerPlan("url", url=s.urls[0], endpoints=s.urls if len(s.urls) > 1 else [], balance=s.balance,
                          host=s.host)
    build = vllm_build()
    args, key = auth.split_api_key(s.launch_args)
    args = engine_args_for(build, args)
    defaults = CPU_DEFAULT_ENV if build == "cpu" else {}
    env = {**defaults, **os.environ, **s.launch_env}  # as VllmServer.start: the environment beats the CPU defaults
    shown_env = {k: v for k, v in env.items() if k in s.launch_env or k in defaults}
    if key:
        shown_env[auth.VLLM_KEY_ENV] = auth.MASK  # vLLM's --api-key travels in the environment
    replicas = [] if s.replicas == 1 else [share.describe() for share in shares(s.replicas, build, args, env)]
    return ServerPlan("launch", build=build, engine_args=args, env=auth.redact(shown_env, []), host=s.host,
                      port=s.port, startup_timeout_s=s.startup_timeout_s, replicas=replicas,
                      balance=s.balance if replicas else None)


def _check_ports(study: StudySpec) -> None:
    """The ports a run would refuse: an explicit server or metrics port that is taken."""
    if study.metrics.port and port_in_use(study.metrics.host, study.metrics.port):
        raise ConfigError(f"metrics port {study.metrics.port} on {study.metrics.host} is already in use",
                          hint="choose another --metrics-port, or 0 for any free port")
    if not study.server.urls and study.server.port and port_in_use(study.server.host, study.server.port):
        raise ConfigError(f"port {study.server.port} on {study.server.host} is already in use",
                          hint="choose another --port, or omit it to pick a free one")


def _energy(study: StudySpec, gpus: list[int] | None) -> EnergyPlan:
    if not study.energy.idle_s:
        return EnergyPlan(False, "idle baseline off (energy.idle_s is 0)", 0.0)
    meter = probe(gpus)
    return EnergyPlan(bool(meter.available), None if meter.available else meter.reason, study.energy.idle_s)


@dataclass
class _Source:
    name: str
    origin: str
    path: Path | None
    action: str          # serve (ready), convert, download
    detail: str
    checksum: str | None
    weight_bytes: int | None
    hash_bytes: int
    hidden: int | None = None
    intermediate: int | None = None
    mlp_bytes: int | None = None
    newest_weights: float | None = None  # mtime, for the cheap reuse check


def _checkpoints(study: StudySpec, verify: bool, notes: list[str]) -> list[CheckpointPlan]:
    """As checkpoints.prepare names and finds them, without converting, pruning or downloading."""
    s = study.prune
    targets = [Target(prune=p) for p in s.prune] + [Target(expansion_ratio=r) for r in s.expansion_ratio]
    pruned_root = study.checkpoints_dir or settings.home() / "checkpoints"
    out: list[CheckpointPlan] = []
    for entry in study.models:
        src = _source(entry.model, verify)
        if entry.name:
            src = replace(src, name=entry.name)
        hashed_here = src.hash_bytes
        if s.include_base or not targets:
            out.append(CheckpointPlan(src.name, src.origin, src.action, src.detail, src.name, src.path,
                                      weight_bytes=src.weight_bytes, hash_bytes=hashed_here,
                                      convert=src.action == "convert"))
            hashed_here = 0
        if not targets:
            continue
        criterion = get_criterion(s.criterion)[0]
        if src.intermediate is None or src.hidden is None:
            notes.append(f"{src.name}: its MLP width is unknown until it is downloaded; pruned sizes not planned")
        for t in targets:
            dest = pruned_root / f"{src.name}-{criterion}-{t.label}"
            kp = k_plan(t, src.intermediate, src.hidden, s.divisor) if src.intermediate and src.hidden else None
            manifest = _read_manifest(dest / MANIFEST)
            same_settings = manifest is not None and manifest.get("criterion") == criterion \
                and manifest.get("divisor") == s.divisor \
                and manifest.get("requested") == {"prune": t.prune, "expansion_ratio": t.expansion_ratio}
            reuse, why = _reusable(dest, manifest, same_settings, src, verify)
            kept = kp.k / kp.intermediate_size if kp else 1.0
            out_bytes = None
            if src.weight_bytes is not None and src.mlp_bytes is not None:
                out_bytes = int(src.weight_bytes - src.mlp_bytes * (1 - kept))
            if reuse:
                size = _weights_size(dest) or out_bytes
                ck = CheckpointPlan(dest.name, "pruned", "reuse", why, src.name, dest, t.label,
                                    kp.k if kp else None, src.intermediate, kept, size,
                                    hash_bytes=hashed_here + (size or 0), convert=src.action == "convert")
            else:
                work = (src.weight_bytes or 0) + (out_bytes or 0)
                ck = CheckpointPlan(dest.name, "pruned", "prune", why, src.name, dest, t.label,
                                    kp.k if kp else None, src.intermediate, kept, out_bytes,
                                    hash_bytes=hashed_here + (out_bytes or 0), prune_bytes=work,
                                    convert=src.action == "convert")
            hashed_here = 0
            out.append(ck)
    names = [c.name for c in out]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise ConfigError(f"two checkpoints would share the name {sorted(dupes)[0]!r}",
                          hint="give the models distinct `name:` fields in the study")
    # one prune pass per source writes all its targets: count the source's bytes once per source
    seen: set[str] = set()
    for ck in out:
        if ck.action == "prune":
            if ck.base in seen and ck.weight_bytes is not None:
                ck.prune_bytes = ck.weight_bytes
            seen.add(ck.base)
    return out


def _reusable(dest: Path, manifest: dict[str, Any] | None, same_settings: bool, src: _Source,
              verify: bool) -> tuple[bool, str]:
    if manifest is None:
        return False, "not in the cache: will be pruned"
    if not same_settings:
        return False, "cached copy has other settings: will be pruned again"
    recorded = (manifest.get("source") or {}).get("weights_sha256")
    if src.checksum is not None:
        if recorded == src.checksum:
            return True, "in the cache, same source and settings: reused"
        return False, "cached copy comes from other weights: will be pruned again"
    if src.action in ("convert", "download"):
        return True, "in the cache: reused if the source's checksum matches once it is ready"
    # cheap check (verify=False): the copy is newer than the source's weights and names the same source path
    same_path = (manifest.get("source") or {}).get("path") == str(src.path)
    newer = src.newest_weights is not None and (dest / "pruning_manifest.json").stat().st_mtime >= src.newest_weights
    if same_path and newer:
        return True, "in the cache: reused (checksum checked when the run starts)"
    return False, "cached copy may be stale: checked by checksum when the run starts"


def _source(spec: str, verify: bool) -> _Source:
    """The model a study entry names, as resolve() would find it, minus conversion and download."""
    from serve_bench.models import bundled  # pulls in torch: serve_bench.plan must not
    from serve_bench.models.resolve import _HUB_ID, DEFAULT, resolve  # pulls in torch: serve_bench.plan must not

    if spec in (None, DEFAULT):
        path = bundled.checkpoint_dir()
        marker = _read_manifest(path / bundled.MARKER)
        converted = (marker is not None and marker.get("format") == bundled._FORMAT
                     and marker.get("source_sha256") == bundled.GGUF_SHA256 and bool(marker.get("files"))
                     and all((path / n).is_file() for n in marker["files"]))
        if converted and verify:
            converted = bundled._verified(path)
        if not converted:
            bundled.gguf_path()  # the package must be there: the same error as a run
            size = BUNDLED_SHAPE["weight_bytes"]
            shape = BUNDLED_SHAPE
            mlp = 3 * shape["hidden_size"] * shape["intermediate_size"] * shape["num_layers"] * 2  # bf16 gate/up/down
            return _Source(bundled.NAME, "bundled", path, "convert",
                           f"not converted yet: will be converted into {path}", None, size, 2 * size,
                           BUNDLED_SHAPE["hidden_size"], BUNDLED_SHAPE["intermediate_size"], mlp)
        files = marker["files"]  # type: ignore[index]
        outer = hashlib.sha256()  # Checkpoint.checksum() from the digests the conversion recorded
        for name in sorted(files):
            outer.update(name.encode())
            outer.update(files[name].encode())
        src = _local(bundled.NAME, "bundled", path, "converted, in the cache", outer.hexdigest())
        return replace(src, hash_bytes=2 * (src.weight_bytes or 0))  # verified, then summed
    path = Path(spec).expanduser()
    if not path.exists() and _HUB_ID.match(spec) and not spec.startswith((".", "/", "~")) \
            and not settings.hub_offline():
        cached = _hub_cache(spec)
        if cached is None:
            return _Source(spec.split("/")[-1], "hub", None, "download",
                           "not in the local Hugging Face cache: will be downloaded (not in the estimate)",
                           None, None, 0)
        return _local(spec.split("/")[-1], "hub", cached, "in the local Hugging Face cache",
                      _checksum(cached) if verify else None)
    resolved = resolve(spec)  # a directory, or the run's own error (missing path, offline hub…)
    checksum = _checksum(resolved.path) if verify else None
    return _local(resolved.name, resolved.source, resolved.path,
                  "hub model, in the local cache" if resolved.source == "hub" else "local checkpoint", checksum)


def _local(name: str, origin: str, path: Path, detail: str, checksum: str | None) -> _Source:
    from serve_bench.models.checkpoint import Checkpoint  # pulls in torch: serve_bench.plan must not
    from serve_bench.prune.families import detect  # pulls in torch: serve_bench.plan must not

    ckpt = Checkpoint.open(path)
    size = sum(f.stat().st_size for f in ckpt.files)
    newest = max((f.stat().st_mtime for f in ckpt.files), default=None)
    hidden = intermediate = mlp = None
    try:
        layout = detect(ckpt)
        hidden, intermediate = layout.hidden_size, layout.intermediate_size
        mlp = sum(ckpt.tensors[n].end - ckpt.tensors[n].start for names in layout.layers.values()
                  for n in names.values())
    except Exception:  # not prunable: only a problem when pruning is asked for, and then the same error
        pass
    return _Source(name, origin, path, "serve", detail, checksum, size, size, hidden, intermediate, mlp, newest)


def _checksum(path: Path) -> str:
    from serve_bench.models.checkpoint import Checkpoint  # pulls in torch: serve_bench.plan must not

    return Checkpoint.open(path).checksum()


def _hub_cache(repo_id: str) -> Path | None:
    try:
        from huggingface_hub import snapshot_download

        from serve_bench.models.resolve import _HUB_PATTERNS  # pulls in torch: serve_bench.plan must not

        return Path(snapshot_download(repo_id, allow_patterns=_HUB_PATTERNS, local_files_only=True))
    except Exception:
        return None


def _weights_size(path: Path) -> int | None:
    files = list(path.glob("*.safetensors"))
    return sum(f.stat().st_size for f in files) if files else None


def _read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
