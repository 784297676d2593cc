"""A checkpoint read once, through one open descriptor: its checked header, the model spec in
it, the sha256 of every byte, and (when asked for) the model's weights, all of the same bytes even
if the path is replaced meanwhile (``train --resume`` renames a new file over it). Reading the
weights needs torch; the rest does not."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from vae.checkpoint.header import CheckpointHeader, checked_header, opened
from vae.checkpoint.layout import tensor_spans
from vae.checkpoint.names import MODEL_PREFIX
from vae.checkpoint.tensors import (
    WEIGHT_DTYPES,
    check_finite,
    check_model_tensors,
    version_renames,
)
from vae.errors import CheckpointError

if TYPE_CHECKING:
    import torch

    from vae.model_spec import ModelSpec


@dataclass
class CheckpointFile:
    """A checkpoint read through one open descriptor: its checked header, the model spec in it,
    the sha256 of every byte of the file, and (when asked for) the model's weights. Hash,
    header and weights are all of the same bytes, even if the path is replaced meanwhile."""

    header: CheckpointHeader
    spec: ModelSpec
    sha256: str
    weights: dict[str, torch.Tensor] = field(default_factory=dict)


def read_checkpoint(path: str | Path, weights: bool = False) -> CheckpointFile:
    """Header, model spec (``check_model_tensors``) and sha256 of a checkpoint, with the model's
    weights too when ``weights`` is true, in one pass over one open file: a checkpoint replaced
    during a command (``train --resume`` renames a new file over it) cannot lend its hash to
    the weights that were used. Reading the weights needs torch; the rest does not."""
    path = Path(path)
    with opened(path) as handle:
        header, start = checked_header(path, handle)
        # Checked before any tensor is read: a hostile header allocates nothing.
        spec = check_model_tensors(path, header)
        digest = hashlib.sha256(start)
        kept = _read_data(path, handle, header, digest, MODEL_PREFIX if weights else None)
    return CheckpointFile(header, spec, digest.hexdigest(), _model_weights(path, header, kept))


_CHUNK_BYTES = 1 << 20


def _read_data(
    path: Path,
    handle: BinaryIO,
    header: CheckpointHeader,
    digest: Any,
    keep: str | None,
) -> dict[str, bytearray]:
    """Read the data area (its layout checked by ``read_header``: tensors tile it exactly) into
    ``digest``, keeping the bytes of the tensors whose names start with ``keep``."""
    spans = sorted(tensor_spans(path, header.tensors))
    kept: dict[str, bytearray] = {}
    for begin, end, name in spans:
        if keep is not None and name.startswith(keep):
            buffer = bytearray(end - begin)
            view = memoryview(buffer)
            position = 0
            while position < len(buffer):
                count = handle.readinto(view[position:])
                if not count:
                    raise _changed(path)
                position += count
            digest.update(buffer)
            kept[name] = buffer
            continue
        remaining = end - begin
        while remaining:
            chunk = handle.read(min(remaining, _CHUNK_BYTES))
            if not chunk:
                raise _changed(path)
            digest.update(chunk)
            remaining -= len(chunk)
    if handle.read(1):  # longer than when it was opened: written in place meanwhile
        raise _changed(path)
    return kept


def _changed(path: Path) -> CheckpointError:
    return CheckpointError(
        f"{path} changed size while it was read (something writes it in place); run the "
        "command again once it is written"
    )


def _model_weights(
    path: Path, header: CheckpointHeader, kept: dict[str, bytearray]
) -> dict[str, torch.Tensor]:
    """The model's tensors, named as today's format names them, from their bytes (no copy):
    refused when one holds NaN or infinity."""
    if not kept:
        return {}
    import torch

    renames = version_renames(path, header.format_version, header.metadata)
    weights = {}
    for stored, buffer in kept.items():
        entry = header.tensors[stored]
        dtype = getattr(torch, WEIGHT_DTYPES[entry["dtype"]])
        # safetensors stores little-endian values, the byte order of every machine torch runs on.
        tensor = (
            torch.frombuffer(buffer, dtype=dtype) if buffer else torch.empty(0, dtype=dtype)
        ).reshape(entry["shape"])
        check_finite(path, stored, tensor)
        name = stored[len(MODEL_PREFIX) :]
        weights[renames.get(name, name)] = tensor
    return weights
