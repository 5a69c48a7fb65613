"""Turn what a user typed (``default``, a directory, a hub id) into a local checkpoint."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from serve_bench import settings
from serve_bench.errors import ModelNotFoundError
from serve_bench.models import bundled

DEFAULT = "default"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_HUB_PATTERNS = ["*.json", "*.safetensors", "*.jinja", "*.txt", "*.model", "tokenizer*"]


@dataclass(frozen=True)
class ResolvedModel:
    name: str  # short name, used in output directory names and as the served model name
    path: Path
    source: str  # "bundled", "local" or "hub"


def resolve(spec: str | None) -> ResolvedModel:
    if spec is None or spec == DEFAULT:
        return ResolvedModel(bundled.NAME, bundled.ensure_converted(), "bundled")
    path = Path(spec).expanduser()
    if path.exists():
        return ResolvedModel(path.resolve().name, path.resolve(), "local")
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise ModelNotFoundError(f"model path {path} does not exist",
                                 hint="pass a checkpoint directory, 'default', or a hub id (owner/name)")
    if _HUB_ID.match(spec):
        return ResolvedModel(spec.split("/")[-1], _download(spec), "hub")
    raise ModelNotFoundError(
        f"model {spec!r}: no such directory, and not a hub id (owner/name)",
        hint="pass 'default' for the bundled model, a checkpoint directory, or a hub id",
    )


def _download(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    offline = settings.hub_offline()
    try:
        return Path(snapshot_download(repo_id, allow_patterns=_HUB_PATTERNS, local_files_only=offline))
    except RepositoryNotFoundError as err:
        raise ModelNotFoundError(f"hub id {repo_id!r} does not exist (or needs a token)") from err
    except LocalEntryNotFoundError as err:
        why = "HF_HUB_OFFLINE is set" if offline else "the hub cannot be reached from this machine"
        raise ModelNotFoundError(
            f"cannot fetch hub model {repo_id!r}: {why} and it is not in the local Hugging Face cache",
            hint="download it where the hub is reachable and pass the checkpoint directory instead",
        ) from err
    except (HfHubHTTPError, OSError) as err:
        raise ModelNotFoundError(
            f"cannot fetch hub model {repo_id!r}: the hub cannot be reached ({type(err).__name__})",
            hint="pass a local checkpoint directory, or 'default' for the bundled model",
        ) from err
