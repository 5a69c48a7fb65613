"""A Hugging Face checkpoint directory read lazily: config, tensor index, checksums."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from serve_bench.errors import ModelNotFoundError, NotACheckpointError
from serve_bench.models.safetensors_stream import (
    SafetensorsFormatError,
    TensorInfo,
    read_header,
    read_tensor,
)

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
# Files that hold weights: never copied to a pruned checkpoint as-is.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".ckpt", ".h5", ".msgpack")


@dataclass
class Checkpoint:
    path: Path
    config: dict[str, Any]
    files: list[Path]  # weight files, in index order
    tensors: dict[str, TensorInfo] = field(repr=False)
    metadata: dict[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, path: str | Path) -> Checkpoint:
        path = Path(path).expanduser()
        if not path.exists():
            raise ModelNotFoundError(f"model path {path} does not exist")
        if not path.is_dir():
            raise NotACheckpointError(
                f"{path} is a file, not a checkpoint directory",
                hint="pass the directory that holds config.json and the *.safetensors weights",
            )
        cfg_path = path / "config.json"
        if not cfg_path.is_file():
            raise NotACheckpointError(
                f"{path} is not a Hugging Face checkpoint: it has no config.json",
                hint="pass the directory that holds config.json and the *.safetensors weights",
            )
        try:
            config = json.loads(cfg_path.read_text())
        except json.JSONDecodeError as err:
            raise NotACheckpointError(f"{cfg_path} is not valid JSON: {err}") from err
        files = _weight_files(path)
        tensors: dict[str, TensorInfo] = {}
        metadata: dict[str, str] = {}
        for f in files:
            try:
                infos, meta = read_header(f)
            except (OSError, SafetensorsFormatError) as err:
                raise NotACheckpointError(f"cannot read weights {f}: {err}") from err
            tensors.update(infos)
            metadata.update(meta)
        return cls(path, config, files, tensors, metadata)

    def read(self, name: str) -> torch.Tensor:
        return read_tensor(self.tensors[name])

    def num_parameters(self) -> int:
        return sum(t.numel for t in self.tensors.values())

    def nbytes(self) -> int:
        return sum(t.end - t.start for t in self.tensors.values())

    def checksum(self) -> str:
        """sha256 over the weight files' own sha256s, in file-name order."""
        outer = hashlib.sha256()
        for f in sorted(self.files, key=lambda p: p.name):
            outer.update(f.name.encode())
            outer.update(file_sha256(f).encode())
        return outer.hexdigest()


def _weight_files(path: Path) -> list[Path]:
    index = path / INDEX_FILE
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError) as err:
            raise NotACheckpointError(f"{index} is not a valid safetensors index: {err}") from err
        names = list(dict.fromkeys(weight_map.values()))
        missing = [n for n in names if not (path / n).is_file()]
        if missing:
            raise NotACheckpointError(f"{path}: the index names missing shard(s) {', '.join(missing)}")
        return [path / n for n in names]
    if (path / SINGLE_FILE).is_file():
        return [path / SINGLE_FILE]
    shards = sorted(path.glob("*.safetensors"))
    if shards:
        return shards
    other = sorted(p.name for p in path.iterdir() if p.suffix in WEIGHT_SUFFIXES)
    if other:
        raise NotACheckpointError(
            f"{path} holds weights only as {', '.join(other)}; serve-bench reads safetensors",
            hint="convert with transformers: AutoModelForCausalLM.from_pretrained(dir).save_pretrained(out)",
        )
    raise NotACheckpointError(f"{path} has a config.json but no *.safetensors weights")


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
