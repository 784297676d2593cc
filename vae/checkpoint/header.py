"""A checkpoint's header, read and checked without torch (``info`` relies on that): a
safetensors file vae wrote, complete, of a format this vae reads, its vae metadata valid JSON;
and, for a path that is not there, what the user probably meant.

There is no pickle and no ``torch.load`` anywhere: a checkpoint from a stranger cannot run code.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from vae import __version__
from vae.checkpoint.hub import HUB_SCHEME
from vae.checkpoint.layout import check_tiling, tensor_spans
from vae.checkpoint.names import BEST_NAME, DEFAULT_CHECKPOINT, FORMAT_NAME, FORMAT_VERSION
from vae.errors import CheckpointError
from vae.limits import MAX_CHECKPOINT_BYTES

_MAX_HEADER_BYTES = 100 * 1024 * 1024  # the safetensors reference implementation's own limit
_MAX_METADATA_DEPTH = 32


@dataclass
class CheckpointHeader:
    """What a safetensors header says: tensor table, our metadata, and sizes."""

    path: Path
    tensors: dict[str, dict[str, Any]]
    metadata: dict[str, Any]
    training_state: dict[str, Any] | None
    file_size: int
    format_version: int = FORMAT_VERSION


def read_header(path: str | Path) -> CheckpointHeader:
    """Parse and check a checkpoint's header without reading its tensors.

    Raises CheckpointError with a distinct message for: a missing file, a file that is not
    safetensors, a truncated file, a safetensors file that vae did not write, and a newer format.
    """
    path = Path(path)
    with opened(path) as handle:
        header, _ = checked_header(path, handle)
    return header


@contextlib.contextmanager
def opened(path: Path) -> Iterator[BinaryIO]:
    """``path`` opened for reading, after the checks that name what the user probably meant; an
    error while reading is a CheckpointError naming the file."""
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}{_not_found_hint(path)}")
    if not path.is_file():  # before open(), which would wait for ever on a FIFO
        best = path / BEST_NAME
        hint = f" (a run folder? its checkpoint is {best})" if best.is_file() else ""
        raise CheckpointError(f"checkpoint path is not a file: {path}{hint}")
    try:
        with open(path, "rb") as handle:
            yield handle
    except OSError as error:
        raise CheckpointError(f"cannot read checkpoint {path}: {error.strerror or error}") from None


def checked_header(path: Path, handle: BinaryIO) -> tuple[CheckpointHeader, bytes]:
    """(the checked header, the file's bytes up to its data area) read from the start of
    ``handle``; the file's size is that of the open file, not of whatever the path names now."""
    file_size = os.fstat(handle.fileno()).st_size
    if file_size > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(
            f"{path} is {file_size:,} bytes, more than the checkpoint size limit of "
            f"{MAX_CHECKPOINT_BYTES:,} bytes"
        )
    header_size, header_bytes = _read_header_bytes(path, handle, file_size)
    header = _parse_header(path, header_bytes)
    raw_metadata = header.pop("__metadata__", None) or {}
    spans = tensor_spans(path, header)
    data_end = max((end for _, end, _ in spans), default=0)
    expected = 8 + header_size + data_end
    if file_size < expected:
        raise CheckpointError(
            f"{path} is truncated: {file_size} bytes where the header promises {expected}; "
            "the file was cut short (copy it again)"
        )
    check_tiling(path, spans, file_size - 8 - header_size)
    version = _format_version(path, raw_metadata)
    metadata, training_state = _vae_metadata(path, raw_metadata)
    checked = CheckpointHeader(path, header, metadata, training_state, file_size, version)
    return checked, struct.pack("<Q", header_size) + header_bytes


def _read_header_bytes(path: Path, handle: BinaryIO, file_size: int) -> tuple[int, bytes]:
    """(header size, header bytes) of a safetensors file, refusing pickles, files too short for
    a header, and headers larger than _MAX_HEADER_BYTES."""
    prefix = handle.read(8)
    if prefix.startswith(_PICKLE_SIGNATURES):
        raise CheckpointError(
            f"{path} is a PyTorch pickle (torch.save), which vae does not load: loading "
            "a pickle runs any code it holds; convert weights you trust to safetensors "
            "(docs/checkpoints.md: Converting PyTorch weights)"
        )
    if len(prefix) < 8:
        raise CheckpointError(f"{path} is not a safetensors file (only {file_size} bytes)")
    (header_size,) = struct.unpack("<Q", prefix)
    if header_size > _MAX_HEADER_BYTES:
        raise CheckpointError(f"{path} is not a safetensors file (no valid header)")
    header_bytes = handle.read(header_size)
    if len(header_bytes) < header_size:
        if header_bytes[:1] == b"{":
            raise CheckpointError(
                f"{path} is truncated: its header needs {header_size} bytes but the file has "
                f"{file_size}; the file was cut short (copy it again)"
            )
        raise CheckpointError(f"{path} is not a safetensors file (no valid header)")
    return header_size, header_bytes


def _parse_header(path: Path, header_bytes: bytes) -> dict[str, Any]:
    """The header's JSON object (tensor table and ``__metadata__``)."""
    try:
        # Decoded here: json.loads on bytes would also accept UTF-16 and UTF-32, which the
        # safetensors readers behind every loader refuse (the header is UTF-8).
        header = json.loads(header_bytes.decode("utf-8"))
        if not isinstance(header, dict):
            raise ValueError("header is not a JSON object")
    except (ValueError, RecursionError):
        # RecursionError: JSON nested thousands deep, which no writer of safetensors produces.
        raise CheckpointError(f"{path} is not a safetensors file (header is not valid)") from None
    return header


def _format_version(path: Path, raw_metadata: Any) -> int:
    """The checkpoint format version of a file vae wrote (refusing other safetensors files and
    versions newer than this vae reads)."""
    # safetensors stores metadata as a map of strings to strings; anything else is hand-made.
    if (
        not isinstance(raw_metadata, dict)
        or raw_metadata.get("format") != FORMAT_NAME
        or not all(isinstance(value, str) for value in raw_metadata.values())
    ):
        if isinstance(raw_metadata, dict) and raw_metadata.get("format") == FORMAT_NAME:
            raise CheckpointError(
                f"{path} has corrupt vae metadata (a metadata value is not a string)"
            )
        raise CheckpointError(
            f"{path} is a safetensors file but not a vae checkpoint (it has no '{FORMAT_NAME}' "
            "metadata); vae loads only checkpoints written by vae train"
        )
    version_text = raw_metadata.get("format_version", "")
    if not (version_text.isascii() and version_text.isdigit() and len(version_text) <= 9):
        raise CheckpointError(f"{path} has an unreadable checkpoint format version")
    version = int(version_text)
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} uses checkpoint format version {version}, newer than this vae "
            f"{__version__} can read (up to {FORMAT_VERSION}): upgrade vae"
        )
    return version


def _vae_metadata(
    path: Path, raw_metadata: dict[str, str]
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(metadata, training state or None) parsed from the header's ``vae`` and
    ``training_state`` strings."""
    try:
        # NaN and Infinity are not JSON: vae never writes them, and they would reach the
        # figures `info` prints and the JSON it writes.
        metadata = json.loads(raw_metadata["vae"], parse_constant=_not_json)
        state_text = raw_metadata.get("training_state")
        training_state = json.loads(state_text, parse_constant=_not_json) if state_text else None
    except (KeyError, ValueError, RecursionError):
        raise CheckpointError(f"{path} has corrupt vae metadata (not valid JSON)") from None
    if not isinstance(metadata, dict) or not isinstance(training_state, dict | None):
        raise CheckpointError(f"{path} has corrupt vae metadata (not a JSON object)")
    # JSON a few hundred levels deep still parses, then overflows the stack of whatever walks it
    # (info's table, json.dumps); vae's own metadata is a handful of levels deep.
    if max(_nesting_depth(metadata), _nesting_depth(training_state)) > _MAX_METADATA_DEPTH:
        raise CheckpointError(f"{path} has corrupt vae metadata (nested too deep)")
    return metadata, training_state


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def _nesting_depth(value: Any) -> int:
    """How deeply JSON lists and objects nest in ``value``, found without recursion."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            pending.extend(
                (inner, depth + 1) for inner in (item.values() if isinstance(item, dict) else item)
            )
    return deepest


# torch.save's zip container, and the pickle protocols of its legacy format.
_PICKLE_SIGNATURES = (b"PK\x03\x04", b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")
_OTHER_PROJECTS_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".pkl")


def _not_found_hint(path: Path) -> str:
    """What the user probably meant: the .safetensors file of the same name, or the shipped
    model, looked for in the current folder and in the installed package's (vae.shipped)."""
    if str(path).strip().lower().startswith(HUB_SCHEME[:3]):  # hf:/o/n from Path("hf://o/n"), HF://
        return (
            f" (a checkpoint on the Hub is {HUB_SCHEME}OWNER/NAME, lower case, two slashes; in "
            "Python a str, not a Path)"
        )
    if path.suffix.lower() in _OTHER_PROJECTS_SUFFIXES:
        twin = path.with_suffix(".safetensors")
        if twin.is_file():
            return f" ({twin} exists: vae checkpoints are .safetensors files)"
        return " (vae reads .safetensors checkpoints, written by vae train)"
    from vae.shipped import shipped_path

    if path.parts[:1] == DEFAULT_CHECKPOINT.parts[:1] and (shipped := shipped_path(path)) != path:
        # A shipped file named from another folder: it is in the project folder.
        if path == DEFAULT_CHECKPOINT:
            return f" (the shipped model is {shipped}: pass that path, or leave out --checkpoint)"
        return f" (the shipped file is {shipped}: pass that path, or run from the project folder)"
    if path == DEFAULT_CHECKPOINT:
        return (
            " (the shipped model, in neither ./pretrained nor the installed package's project"
            " folder: run the command from the project folder, or pass --checkpoint)"
        )
    return ""


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The checkpoint's vae metadata (model spec, data, objective, metrics...)."""
    return read_header(path).metadata
