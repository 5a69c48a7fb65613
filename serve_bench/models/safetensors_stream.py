"""Read and write safetensors one tensor at a time, without mmap.

The safetensors library maps whole files and its writer needs every tensor of a
file in memory at once; pruning a model must hold about one layer. The format
is small: an 8-byte little-endian header length, a JSON header (dtype, shape,
byte offsets per tensor), then the raw little-endian bytes.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import torch

DTYPES: dict[str, torch.dtype] = {
    "BOOL": torch.bool,
    "U8": torch.uint8,
    "I8": torch.int8,
    "I16": torch.int16,
    "I32": torch.int32,
    "I64": torch.int64,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F32": torch.float32,
    "F64": torch.float64,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}
_MAX_HEADER = 100 * 1024 * 1024


class SafetensorsFormatError(ValueError):
    pass


def element_size(dtype: str) -> int:
    return torch.empty((), dtype=DTYPES[dtype]).element_size()


def nbytes(dtype: str, shape: tuple[int, ...]) -> int:
    n = element_size(dtype)
    for d in shape:
        n *= d
    return n


@dataclass(frozen=True)
class TensorInfo:
    name: str
    file: Path
    dtype: str
    shape: tuple[int, ...]
    start: int  # absolute byte offset in the file
    end: int

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


def read_header(path: Path) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """Tensor infos by name, and the file's ``__metadata__``."""
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise SafetensorsFormatError(f"{path} is too short to be a safetensors file")
        (n,) = struct.unpack("<Q", raw)
        if n > _MAX_HEADER:
            raise SafetensorsFormatError(f"{path} has an implausible header length {n}")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise SafetensorsFormatError(f"{path} has an unreadable header: {err}") from err
    metadata = header.pop("__metadata__", None) or {}
    base = 8 + n
    infos = {}
    for name, h in header.items():
        if h["dtype"] not in DTYPES:
            raise SafetensorsFormatError(f"{path}: tensor {name} has unsupported dtype {h['dtype']}")
        start, end = h["data_offsets"]
        infos[name] = TensorInfo(name, path, h["dtype"], tuple(h["shape"]), base + start, base + end)
    return infos, metadata


def read_tensor(info: TensorInfo, handle: BinaryIO | None = None) -> torch.Tensor:
    """Load one tensor into fresh memory (a plain read: no file pages stay mapped)."""
    size = info.end - info.start
    buf = bytearray(size)
    if handle is None:
        with open(info.file, "rb") as f:
            f.seek(info.start)
            got = f.readinto(buf)
    else:
        handle.seek(info.start)
        got = handle.readinto(buf)
    if got != size:
        raise SafetensorsFormatError(f"{info.file}: tensor {info.name} is truncated")
    if size == 0:
        return torch.empty(info.shape, dtype=DTYPES[info.dtype])
    return torch.frombuffer(buf, dtype=DTYPES[info.dtype]).reshape(info.shape)


def copy_raw(info: TensorInfo, src: BinaryIO, writers: list[StreamWriter], buf: bytearray) -> None:
    """Copy one tensor's bytes unchanged into every writer, ``len(buf)`` bytes at a time, so
    passing a tensor through costs one reused buffer, not the tensor's size."""
    size = info.end - info.start
    for w in writers:
        w.begin(info.name, size)
    view = memoryview(buf)
    src.seek(info.start)
    left = size
    while left:
        n = src.readinto(view[:min(len(view), left)])
        if not n:
            raise SafetensorsFormatError(f"{info.file}: tensor {info.name} is truncated")
        for w in writers:
            w.feed(view[:n])
        left -= n
    for w in writers:
        w.end()


class StreamWriter:
    """Write a safetensors file whose tensor list is known before any data.

    ``plan`` gives (name, dtype name, shape) in file order; ``write`` must then be
    called once per tensor, in that order.
    """

    def __init__(self, path: Path, plan: list[tuple[str, str, tuple[int, ...]]],
                 metadata: dict[str, str] | None = None) -> None:
        header: dict[str, object] = {}
        if metadata:
            header["__metadata__"] = metadata
        offset = 0
        self._expected: list[tuple[str, int]] = []
        for name, dtype, shape in plan:
            size = nbytes(dtype, shape)
            header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
            self._expected.append((name, size))
            offset += size
        blob = json.dumps(header, separators=(",", ":")).encode()
        blob += b" " * (-len(blob) % 8)  # the format asks for 8-byte aligned data
        self.nbytes = 8 + len(blob) + offset
        self._f = open(path, "wb")
        self._f.write(struct.pack("<Q", len(blob)))
        self._f.write(blob)
        self._next = 0
        self._left = 0

    def write(self, name: str, tensor: torch.Tensor) -> None:
        data = tensor.contiguous().reshape(-1).view(torch.uint8).numpy()
        self.begin(name, data.nbytes)
        self.feed(memoryview(data))
        self.end()

    def begin(self, name: str, size: int) -> None:
        """Start the next tensor, whose ``size`` bytes then come through ``feed``, in pieces if need be."""
        want_name, want_size = self._expected[self._next]
        if name != want_name:
            raise ValueError(f"expected tensor {want_name}, got {name}")
        if size != want_size:
            raise ValueError(f"{name}: {size} bytes, planned {want_size}")
        self._left = size

    def feed(self, data: memoryview) -> None:
        if data.nbytes > self._left:
            raise ValueError(f"{self._expected[self._next][0]}: more bytes than planned")
        self._f.write(data)
        self._left -= data.nbytes

    def end(self) -> None:
        if self._left:
            raise ValueError(f"{self._expected[self._next][0]}: {self._left} bytes short")
        self._next += 1

    def close(self) -> None:
        try:
            if self._next != len(self._expected) and not self._f.closed:
                raise ValueError(f"only {self._next} of {len(self._expected)} tensors written")
        finally:
            if not self._f.closed:
                self._f.flush()
                self._f.close()

    def __enter__(self) -> StreamWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is not None:
            self._f.close()
        else:
            self.close()
