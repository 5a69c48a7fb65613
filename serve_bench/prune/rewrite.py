"""Write pruned checkpoints tensor by tensor.

One pass over the source: each MLP projection is read once, sliced for every
target and streamed into that target's shard of the same name; every other
tensor (the embedding, attention, norms) is copied through in fixed-size
chunks. Peak memory is about one layer's gate and up projections (read to
score the neurons) plus the chunk buffer, whatever the model's size or
vocabulary. Every target is written into a hidden directory beside its
destination and renamed into place only when complete.
"""

from __future__ import annotations

import errno
import json
import shutil
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from serve_bench.errors import DiskFullError, OutputExistsError, PruneError
from serve_bench.models.checkpoint import INDEX_FILE, WEIGHT_SUFFIXES, Checkpoint
from serve_bench.models.safetensors_stream import StreamWriter, TensorInfo, copy_raw, nbytes, read_tensor
from serve_bench.prune import MANIFEST
from serve_bench.prune.families import MlpLayout
from serve_bench.prune.plan import Plan

_NOT_COPIED = {"config.json", INDEX_FILE, MANIFEST}
_SLICED = ("gate", "up", "down", "gate_bias", "up_bias")  # the roles slice_tensor changes
# Tensors that pass through unchanged are copied in pieces of this size, so the
# embedding of a large vocabulary never sits in memory whole.
COPY_CHUNK = 16 << 20


@dataclass
class Output:
    plan: Plan
    dest: Path
    keep: dict[int, torch.Tensor]  # layer -> kept neuron indices (ascending)

    @property
    def tmp(self) -> Path:
        return self.dest.with_name(f".{self.dest.name}.partial")


def check_destinations(outputs: list[Output], overwrite: bool) -> None:
    for o in outputs:
        if o.dest.exists() and not overwrite:
            raise OutputExistsError(f"output {o.dest} already exists", hint="pass --overwrite to replace it")
        if o.dest.exists() and not o.dest.is_dir():
            raise OutputExistsError(f"output {o.dest} exists and is not a directory")


def new_shape(info: TensorInfo, role: str | None, k: int) -> tuple[int, ...]:
    if role in ("gate", "up"):
        return (k, *info.shape[1:])
    if role in ("gate_bias", "up_bias"):
        return (k,)
    if role == "down":
        return (info.shape[0], k)
    return info.shape


def slice_tensor(t: torch.Tensor, role: str | None, keep: torch.Tensor) -> torch.Tensor:
    if role in ("gate", "up", "gate_bias", "up_bias"):
        return t.index_select(0, keep)
    if role == "down":
        return t.index_select(1, keep)
    return t


def output_nbytes(ckpt: Checkpoint, roles: dict[str, tuple[int, str]], k: int) -> int:
    return sum(nbytes(i.dtype, new_shape(i, roles.get(n, (None, None))[1], k)) for n, i in ckpt.tensors.items())


def write_all(ckpt: Checkpoint, layout: MlpLayout, outputs: list[Output], manifest_for: Callable[[Output], dict],
              overwrite: bool, progress: Callable[[int], None] | None = None) -> None:
    """``progress(n)``: another n bytes of the source have been read and written out."""
    roles = {name: (layer, role) for layer, names in layout.layers.items() for role, name in names.items()}
    _check_space(ckpt, roles, outputs)
    buf = bytearray(COPY_CHUNK)
    try:
        for o in outputs:
            shutil.rmtree(o.tmp, ignore_errors=True)
            o.tmp.mkdir(parents=True)
        for f in ckpt.files:
            infos = sorted((i for i in ckpt.tensors.values() if i.file == f), key=lambda i: i.start)
            with ExitStack() as stack, open(f, "rb") as src:
                writers = [
                    stack.enter_context(StreamWriter(
                        o.tmp / f.name,
                        [(i.name, i.dtype, new_shape(i, roles.get(i.name, (None, None))[1], o.plan.k)) for i in infos],
                        ckpt.metadata or {"format": "pt"}))
                    for o in outputs
                ]
                for info in infos:
                    layer, role = roles.get(info.name, (None, None))
                    if role not in _SLICED:
                        copy_raw(info, src, writers, buf)
                    else:
                        tensor = read_tensor(info, src)
                        for o, w in zip(outputs, writers):
                            w.write(info.name, slice_tensor(tensor, role, o.keep[layer]))
                        del tensor
                    if progress is not None:
                        progress(info.end - info.start)
        for o in outputs:
            _finish(ckpt, layout, o, roles, manifest_for(o))
            _move_into_place(o, overwrite)
    except OSError as err:
        for o in outputs:
            shutil.rmtree(o.tmp, ignore_errors=True)
        if err.errno == errno.ENOSPC:
            raise DiskFullError(f"the disk filled while writing pruned checkpoints under {outputs[0].dest.parent}; "
                                "nothing was left behind", hint="free space or choose another --out") from err
        raise PruneError(f"writing pruned checkpoints failed: {err}") from err
    except BaseException:
        for o in outputs:
            shutil.rmtree(o.tmp, ignore_errors=True)
        raise


def _check_space(ckpt: Checkpoint, roles: dict[str, tuple[int, str]], outputs: list[Output]) -> None:
    need = sum(output_nbytes(ckpt, roles, o.plan.k) for o in outputs)
    parent = outputs[0].dest.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise PruneError(f"cannot create the output directory {parent}: {err.strerror}",
                         hint="choose a writable --out") from err
    free = shutil.disk_usage(parent).free
    if need > free:
        raise DiskFullError(
            f"writing {len(outputs)} pruned checkpoint(s) needs about {need / 1e9:.2f} GB "
            f"but {parent} has {free / 1e9:.2f} GB free", hint="free space or choose another --out")


def _finish(ckpt: Checkpoint, layout: MlpLayout, o: Output, roles: dict[str, tuple[int, str]], manifest: dict) -> None:
    config = json.loads(json.dumps(ckpt.config))
    layout.text_config(config)["intermediate_size"] = o.plan.k
    (o.tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    if (ckpt.path / INDEX_FILE).is_file():
        index = json.loads((ckpt.path / INDEX_FILE).read_text())
        index.setdefault("metadata", {})["total_size"] = output_nbytes(ckpt, roles, o.plan.k)
        (o.tmp / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")
    for p in sorted(ckpt.path.iterdir()):
        if p.is_file() and not p.name.startswith(".") and p.name not in _NOT_COPIED \
                and p.suffix not in WEIGHT_SUFFIXES and not p.name.startswith("serve-bench-"):
            shutil.copy2(p, o.tmp / p.name)
    (o.tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def _move_into_place(o: Output, overwrite: bool) -> None:
    if o.dest.exists():
        if not overwrite:
            raise OutputExistsError(f"output {o.dest} appeared while pruning", hint="pass --overwrite")
        old = o.dest.with_name(f".{o.dest.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        o.dest.rename(old)
        o.tmp.rename(o.dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        o.tmp.rename(o.dest)
