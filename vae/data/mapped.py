"""Images read straight from memory-mapped files: the decoded shards under the cache folder and
the IDX files of the MNIST family, in place.

A :class:`MappedImages` stands where an in-memory uint8 ``[N, C, H, W]`` tensor would, for the few
operations the data and training code use (``shape``, ``device``, ``len``, indexing by a slice or
an index tensor); indexing reads only the rows asked for and returns an ordinary tensor. The files
are mapped copy-on-write and never written, so their pages belong to the operating system's page
cache: every process that maps the same file (torchrun's ranks) shares one copy, and none of it
counts as the process's own (anonymous) memory.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

# A shard's safetensors header is bounded: a damaged length field must not allocate gigabytes.
_MAX_HEADER = 1 << 20


class MappedImages:
    """uint8 images ``[N, C, H, W]`` held in one or more mapped arrays (shards), seen through an
    optional row index (a validation carve, ``--limit``) without copying anything.

    ``device``: where indexing delivers its tensors (the files themselves are always read by the
    CPU); :meth:`to` changes only that, so a CUDA run moves one batch at a time.

    ``check``: called with a part's number before :meth:`checked_chunks` reads its first row (the
    cache checks a shard's content hash there, once); it may replace that entry of ``parts``, a
    list every view of these images shares.
    """

    def __init__(
        self,
        parts: list[np.ndarray],
        rows: np.ndarray | None = None,
        device: torch.device | str = "cpu",
        check: Callable[[int], None] | None = None,
    ) -> None:
        if not parts:
            raise ValueError("MappedImages needs at least one array")
        self.parts = parts
        self.check = check
        sizes = [len(part) for part in parts]
        # starts[i]: the first row of parts[i]; the last entry is the total.
        self.starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.rows = rows
        self.device = torch.device(device)
        self.dtype = torch.uint8

    @property
    def shape(self) -> torch.Size:
        count = int(self.starts[-1]) if self.rows is None else len(self.rows)
        return torch.Size((count, *self.parts[0].shape[1:]))

    @property
    def ndim(self) -> int:
        return self.parts[0].ndim

    def __len__(self) -> int:
        return int(self.shape[0])

    def to(self, device: torch.device | str) -> MappedImages:
        """The same mapped rows, delivered on ``device`` when indexed."""
        return MappedImages(self.parts, self.rows, device, self.check)

    def select(self, index: torch.Tensor | slice) -> MappedImages:
        """A view of the rows at ``index`` (a slice or an index tensor), still mapped."""
        own = self._own_rows(index)
        return MappedImages(self.parts, own, self.device, self.check)

    def __getitem__(self, index: torch.Tensor | slice) -> torch.Tensor:
        """The rows at ``index``, read from the files into a new tensor on ``self.device``."""
        batch = self.gather(self._own_rows(index))
        return batch.to(self.device) if self.device.type != "cpu" else batch

    def chunks(self, size: int) -> Iterator[torch.Tensor]:
        """Every row in order, ``size`` rows at a time (CPU tensors): for hashing and copying
        without holding the whole set at once."""
        for begin in range(0, len(self), size):
            yield self.gather(self._own_rows(slice(begin, begin + size)))

    def checked_chunks(self, size: int) -> Iterator[torch.Tensor]:
        """:meth:`chunks`, each part passed to ``check`` before its first row is read: for a
        pass that reads every row anyway (the data fingerprint), so that checking the parts
        needs no pass of its own. A part is checked whole, also where this view uses only some of
        its rows."""
        for begin in range(0, len(self), size):
            rows = self._own_rows(slice(begin, begin + size))
            if self.check is not None and len(rows):
                for part in np.unique(np.searchsorted(self.starts, rows, side="right") - 1):
                    self.check(int(part))
            yield self.gather(rows)

    def in_memory(self) -> torch.Tensor:
        """Every row, copied into one in-memory tensor on ``self.device``."""
        out = torch.empty(self.shape, dtype=torch.uint8)
        begin = 0
        for chunk in self.chunks(4096):
            out[begin : begin + len(chunk)] = chunk
            begin += len(chunk)
        return out.to(self.device)

    def _own_rows(self, index: torch.Tensor | slice) -> np.ndarray:
        """Rows of the underlying parts (global numbering) for ``index`` into this view."""
        if isinstance(index, slice):
            chosen = np.arange(len(self), dtype=np.int64)[index]
        else:
            chosen = index.detach().cpu().numpy().astype(np.int64, copy=False)
            if chosen.ndim != 1:
                raise IndexError("MappedImages takes a slice or a 1-D index tensor")
            chosen = np.where(chosen < 0, chosen + len(self), chosen)
            if chosen.size and (chosen.min() < 0 or chosen.max() >= len(self)):
                raise IndexError(f"index out of range for {len(self)} images")
        return chosen if self.rows is None else self.rows[chosen]

    def gather(self, rows: np.ndarray) -> torch.Tensor:
        """The rows (global numbering) as a new CPU tensor, in the order given."""
        out = np.empty((len(rows), *self.parts[0].shape[1:]), dtype=np.uint8)
        if len(rows) == 0:
            return torch.from_numpy(out)
        part_of = np.searchsorted(self.starts, rows, side="right") - 1
        for part in np.unique(part_of):
            where = np.nonzero(part_of == part)[0]
            local = rows[where] - self.starts[part]
            if len(local) > 1 and np.all(np.diff(local) == 1):
                out[where] = self.parts[part][local[0] : local[-1] + 1]  # one contiguous read
            else:
                out[where] = self.parts[part][local]
        return torch.from_numpy(out)


def map_array(path: Path, offset: int, shape: tuple[int, ...]) -> np.ndarray:
    """``shape`` uint8 values of ``path`` from byte ``offset``, mapped, not read.

    Copy-on-write ("c"): the array is writable as torch expects, yet nothing is ever written
    back, and until a page is written (never, here) it is the page cache's shared page.
    """
    return np.memmap(path, dtype=np.uint8, mode="c", offset=offset, shape=shape)


def safetensors_layout(path: Path) -> tuple[int, dict[str, Any]]:
    """(offset of the data section, header) of a safetensors file, checked against its length:
    a truncated, foreign or garbled file raises ValueError (never anything else), whatever its
    header holds."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise ValueError(f"{path.name}: too short for a safetensors file")
        (length,) = struct.unpack("<Q", prefix)
        if length > min(_MAX_HEADER, size - 8):
            raise ValueError(f"{path.name}: header length {length} does not fit the file")
        text = handle.read(length)
    try:
        header = json.loads(text)
    except RecursionError:  # JSON nested thousands deep, which no safetensors writer produces
        raise ValueError(f"{path.name}: header is not valid JSON") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path.name}: header is not a JSON object")
    for name, entry in header.items():
        if name == "__metadata__":
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                raise ValueError(f"{path.name}: its metadata is not a table of strings")
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (
            isinstance(offsets, list)
            and len(offsets) == 2
            and all(type(offset) is int for offset in offsets)
            and 0 <= offsets[0] <= offsets[1] <= size - 8 - length
        ):
            raise ValueError(f"{path.name}: tensor {name} lies outside the file")
    return 8 + length, header


def map_safetensors_uint8(path: Path, name: str) -> tuple[np.ndarray, dict[str, str]]:
    """The uint8 tensor ``name`` of a safetensors file, memory-mapped (no copy), and the file's
    metadata (empty when it has none)."""
    offset, header = safetensors_layout(path)
    entry = header.get(name)
    if not isinstance(entry, dict) or entry.get("dtype") != "U8":
        raise ValueError(f"{path.name}: no uint8 tensor '{name}'")
    shape = entry.get("shape")
    if not isinstance(shape, list) or not all(type(n) is int and n >= 0 for n in shape):
        raise ValueError(f"{path.name}: tensor '{name}' has no valid shape")
    begin, end = entry["data_offsets"]
    if end - begin != math.prod(shape):
        raise ValueError(f"{path.name}: tensor '{name}' has the wrong length for {shape}")
    return map_array(path, offset + begin, tuple(shape)), header.get("__metadata__", {})


def safetensors_uint8_bytes(
    array: np.ndarray, name: str, metadata: dict[str, str] | None = None
) -> list[bytes | memoryview]:
    """A safetensors file holding one uint8 array, as pieces to write one after another (the
    array is not copied into one big bytes object)."""
    header: dict[str, Any] = {
        name: {"dtype": "U8", "shape": list(array.shape), "data_offsets": [0, array.nbytes]}
    }
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode()
    # Padded with spaces to a multiple of 8 bytes, as the safetensors writers do.
    text += b" " * (-(len(text)) % 8)
    data = np.ascontiguousarray(array)
    return [struct.pack("<Q", len(text)), text, memoryview(data).cast("B")]
