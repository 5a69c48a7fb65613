"""N replicas of one checkpoint launched side by side (``replicas: N``, ``--replicas N``), each on its own share
of the machine, loaded as one fleet.

Shares:
- CUDA build: ``CUDA_VISIBLE_DEVICES`` cut into consecutive groups of tensor × pipeline-parallel GPUs, one per
  replica, from the GPUs this process sees;
- CPU build: the physical cores this process may run on (hyper-thread siblings kept together), cut into N
  consecutive groups of equal size. A replica's whole process tree is pinned to its group (its API server too,
  not only the engine's OpenMP threads) and vLLM's ``VLLM_CPU_OMP_THREADS_BIND`` names the group's first
  thread of each core, as vLLM's own auto-binding picks one logical CPU per physical core.

A plan that needs more GPUs or cores than there are is refused before anything starts, saying how many there
are. Replica i listens on the study's port + i when a port is given, else on a free one.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from serve_bench.errors import ConfigError, ServerDiedError
from serve_bench.observe.energy import parallel_world, visible_gpus
from serve_bench.serve.server import ServerSpec, VllmServer, vllm_build

OMP_BIND_ENV = "VLLM_CPU_OMP_THREADS_BIND"


@dataclass(frozen=True)
class Share:
    """What one replica may use: logical CPUs (CPU build) or GPU numbers (CUDA build), and its environment."""

    index: int
    cpus: tuple[int, ...] = ()
    gpus: tuple[int, ...] = ()

    def env(self) -> dict[str, str]:
        if self.gpus:
            return {"CUDA_VISIBLE_DEVICES": ",".join(map(str, self.gpus))}
        if self.cpus:
            return {OMP_BIND_ENV: ",".join(map(str, self.cpus))}
        return {}

    def describe(self) -> str:
        if self.gpus:
            return f"GPU {','.join(map(str, self.gpus))}"
        return f"CPU {_ranges(self.cpus)}" if self.cpus else "the whole machine"


def physical_cores() -> list[list[int]]:
    """The logical CPUs this process may run on, grouped by physical core (siblings together), in order."""
    allowed = sorted(os.sched_getaffinity(0))
    cores: dict[tuple[str, str], list[int]] = {}
    for cpu in allowed:
        topo = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            key = ((topo / "physical_package_id").read_text().strip(), (topo / "core_id").read_text().strip())
        except OSError:  # no topology (some containers): every logical CPU its own core
            key = ("", str(cpu))
        cores.setdefault(key, []).append(cpu)
    return sorted(cores.values())


def shares(replicas: int, build: str | None, engine_args: Sequence[str], env: Mapping[str, str],
           cores: list[list[int]] | None = None) -> list[Share]:
    """One share per replica; a ConfigError when the machine has too few GPUs or cores for ``replicas``."""
    if replicas < 1:
        raise ConfigError(f"replicas must be at least 1, not {replicas}")
    if build == "cuda":
        per = parallel_world(engine_args)
        try:
            gpus = visible_gpus(env)
        except ValueError as err:
            raise ConfigError(f"cannot split the GPUs between replicas: {err}",
                              hint="name GPUs by number in CUDA_VISIBLE_DEVICES") from None
        if gpus is None:
            gpus = list(range(_gpu_count()))
        if replicas * per > len(gpus):
            raise ConfigError(f"{replicas} replicas of {per} GPU(s) each need {replicas * per} GPUs; "
                              f"{len(gpus)} are visible here ({','.join(map(str, gpus)) or 'none'})",
                              hint="lower --replicas, or the tensor-parallel size")
        return [Share(i, gpus=tuple(gpus[i * per:(i + 1) * per])) for i in range(replicas)]
    cores = physical_cores() if cores is None else cores
    if replicas > len(cores):
        raise ConfigError(f"{replicas} replicas need a core each at least; serve-bench may use {len(cores)} "
                          f"physical core(s) here", hint="lower --replicas")
    per = len(cores) // replicas
    return [Share(i, cpus=tuple(sorted(c[0] for c in cores[i * per:(i + 1) * per]))) for i in range(replicas)]


def _gpu_count() -> int:
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return int(pynvml.nvmlDeviceGetCount())
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - no NVML: no GPU to split
        return 0


def _ranges(cpus: Sequence[int]) -> str:
    """'0-3,8' for [0, 1, 2, 3, 8]."""
    out: list[str] = []
    for c in sorted(cpus):
        if out and c == int(out[-1].split("-")[-1]) + 1:
            out[-1] = f"{out[-1].split('-')[0]}-{c}"
        else:
            out.append(str(c))
    return ",".join(out)


class Fleet:
    """The launched replicas of one checkpoint: started together, ready together, stopped together; what the
    pipeline asks of one server (:class:`~serve_bench.serve.server.VllmServer`), of them all."""

    def __init__(self, spec: ServerSpec, replicas: int) -> None:
        build = vllm_build()
        self.shares = shares(replicas, build, spec.engine_args, {**os.environ, **spec.env})
        self.servers: list[VllmServer] = []
        for share in self.shares:
            log = spec.log_path if replicas == 1 else spec.log_path.with_name(
                f"{spec.log_path.stem}-{share.index + 1}{spec.log_path.suffix}")
            port = None if spec.port is None else spec.port + share.index
            self.servers.append(VllmServer(ServerSpec(
                model_path=spec.model_path, served_name=spec.served_name, log_path=log, host=spec.host, port=port,
                engine_args=list(spec.engine_args), env={**spec.env, **share.env()},
                startup_timeout_s=spec.startup_timeout_s, stop_timeout_s=spec.stop_timeout_s, api_key=spec.api_key,
                cpus=share.cpus or None)))

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.servers]

    def describe(self) -> list[dict[str, object]]:
        return [{"url": s.url, "share": sh.describe(), "cpus": list(sh.cpus), "gpus": list(sh.gpus),
                 "log": str(s.spec.log_path)} for s, sh in zip(self.servers, self.shares)]

    def start(self) -> None:
        """Every replica starting at once, so that their loading overlaps."""
        self._each(VllmServer.start)

    def wait_ready(self) -> None:
        """Each replica waited for."""
        self._each(VllmServer.wait_ready)

    def _each(self, step: Callable[[VllmServer], None]) -> None:
        """``step`` on every replica; one that fails stops them all."""
        try:
            for s in self.servers:
                step(s)
        except BaseException:
            self.stop()
            raise

    def alive(self) -> bool:
        """Every replica is: a fleet that lost one is no longer the fleet that was asked for."""
        return all(s.alive() for s in self.servers)

    def check_alive(self) -> None:
        for i, s in enumerate(self.servers, 1):
            try:
                s.check_alive()
            except ServerDiedError as err:
                raise ServerDiedError(f"replica {i} of {len(self.servers)} ({s.url}): {err.message}") from None

    def log_tail(self, lines: int = 25) -> str:
        dead = [s for s in self.servers if not s.alive()] or self.servers[:1]
        return "\n".join(f"  replica at {s.url}:\n{s.log_tail(lines)}" for s in dead)

    def stop(self) -> None:
        for s in self.servers:
            s.stop()

