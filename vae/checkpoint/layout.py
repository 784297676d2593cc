"""The data area's layout, checked from the tensor table alone: each tensor's byte span as long
as its dtype and shape need, and the spans tiling the data area exactly (no gaps, no overlaps,
nothing after). Then no tensor can claim bytes the file does not hold."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from vae.errors import CheckpointError
from vae.json_values import is_count

# Bytes per element of every whole-byte dtype safetensors defines (its sub-byte float formats are
# left out: vae never writes them, and a file using them is refused as not a vae checkpoint).
DTYPE_SIZES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E5M2": 1,
    "F8_E4M3": 1,
    "F8_E8M0": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "F64": 8,
    "I64": 8,
    "U64": 8,
    "C64": 8,
}


def tensor_spans(path: Path, table: dict[str, Any]) -> list[tuple[int, int, str]]:
    """(begin, end, name) of every tensor, each entry checked: a known dtype, a shape of
    non-negative integers, and a byte span exactly as long as that shape of that dtype needs."""
    spans = []
    for name, entry in table.items():
        if not isinstance(entry, dict):
            raise CheckpointError(f"{path} is not a safetensors file (header is not valid)")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if (
            dtype not in DTYPE_SIZES
            or not isinstance(shape, list)
            or not all(is_count(size) for size in shape)
            or not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(is_count(offset) for offset in offsets)
            or offsets[1] < offsets[0]
        ):
            raise CheckpointError(
                f"{path} is not a valid safetensors file (tensor {name!r} has a malformed entry)"
            )
        needed = math.prod(shape) * DTYPE_SIZES[dtype]
        if offsets[1] - offsets[0] != needed:
            raise CheckpointError(
                f"{path} is damaged: tensor {name!r} is {dtype} {shape} ({needed:,} bytes) but "
                f"its data span holds {offsets[1] - offsets[0]:,} bytes"
            )
        spans.append((offsets[0], offsets[1], name))
    return spans


def check_tiling(path: Path, spans: list[tuple[int, int, str]], data_size: int) -> None:
    """The tensors' spans cover the data area exactly: no gaps, no overlaps, nothing after it.
    Then no tensor can claim bytes the file does not hold, whatever its shape says."""
    position = 0
    for begin, end, name in sorted(spans):
        if begin != position:
            problem = "overlaps another tensor" if begin < position else "leaves a gap before it"
            raise CheckpointError(f"{path} is damaged: the data of tensor {name!r} {problem}")
        position = end
    if position != data_size:
        raise CheckpointError(
            f"{path} is damaged: {data_size - position:,} bytes follow the last tensor's data"
        )
