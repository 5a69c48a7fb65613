"""One vLLM CPU server on the bundled model, shared by every integration test
that only needs a server to talk to."""

from __future__ import annotations

from collections.abc import Iterator

import psutil
import pytest

from serve_bench.models.resolve import resolve
from serve_bench.serve.server import ServerSpec, VllmServer

SERVED_NAME = "default"


@pytest.fixture(scope="session")
def base_model_path():
    return resolve("default").path


@pytest.fixture(scope="session")
def base_server(base_model_path, tmp_path_factory) -> Iterator[VllmServer]:
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    spec = ServerSpec(model_path=base_model_path, served_name=SERVED_NAME, log_path=log,
                      engine_args=["--max-model-len", "2048"], env={"VLLM_CPU_KVCACHE_SPACE": "2"})
    with VllmServer(spec) as srv:
        yield srv


def vllm_processes(marker: str) -> list[psutil.Process]:
    """vLLM processes whose command line mentions ``marker`` (a run-specific path or name)."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "vllm.entrypoints" in cmd and marker in cmd:
            found.append(p)
    return found
