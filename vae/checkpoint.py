"""safetensors checkpoints: self-describing metadata, atomic saves, one loading factory.

Reading a header needs no torch (``info`` relies on that); torch is imported only by the functions
that move tensors. There is no pickle and no ``torch.load`` anywhere: a checkpoint from a stranger
cannot run code.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from vae import __version__
from vae.errors import CheckpointError, ConfigError, first_line
from vae.fileio import atomic_write_bytes
from vae.json_values import is_count
from vae.likelihoods import PERCEPTUAL_LOSSES

if TYPE_CHECKING:
    import torch

    from vae.model import VAE
    from vae.spec import ModelSpec

FORMAT_NAME = "vae-checkpoint"
# 2: layers named by the layer plan (``decoder.deconv1``); 1 named them by their position in
# nn.Sequential containers (``decoder.deconv.0``), renamed on load (``vae.plan.version1_names``).
FORMAT_VERSION = 2
BEST_NAME = "checkpoint_best.safetensors"
LAST_NAME = "checkpoint_last.safetensors"
DEFAULT_CHECKPOINT = Path("pretrained") / BEST_NAME
MODEL_PREFIX = "model."
OPTIMIZER_PREFIX = "optimizer."
RNG_PREFIX = "rng."
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
    with _opened(path) as handle:
        header, _ = _checked_header(path, handle)
    return header


@contextlib.contextmanager
def _opened(path: Path) -> Iterator[BinaryIO]:
    """``path`` opened for reading, after the checks that name what the user probably meant; an
    error while reading is a CheckpointError naming the file."""
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}{_not_found_hint(path)}")
    if not path.is_file():  # before open(), which would wait for ever on a FIFO
        raise CheckpointError(f"checkpoint path is not a file: {path}")
    try:
        with open(path, "rb") as handle:
            yield handle
    except OSError as error:
        raise CheckpointError(f"cannot read checkpoint {path}: {error.strerror or error}") from None


def _checked_header(path: Path, handle: BinaryIO) -> tuple[CheckpointHeader, bytes]:
    """(the checked header, the file's bytes up to its data area) read from the start of
    ``handle``; the file's size is that of the open file, not of whatever the path names now."""
    file_size = os.fstat(handle.fileno()).st_size
    header_size, header_bytes = _read_header_bytes(path, handle, file_size)
    header = _parse_header(path, header_bytes)
    raw_metadata = header.pop("__metadata__", None) or {}
    spans = _tensor_spans(path, header)
    data_end = max((end for _, end, _ in spans), default=0)
    expected = 8 + header_size + data_end
    if file_size < expected:
        raise CheckpointError(
            f"{path} is truncated: {file_size} bytes where the header promises {expected}; "
            "the file was cut short (copy it again)"
        )
    _check_tiling(path, spans, file_size - 8 - header_size)
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


def _tensor_spans(path: Path, table: dict[str, Any]) -> list[tuple[int, int, str]]:
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


def _check_tiling(path: Path, spans: list[tuple[int, int, str]], data_size: int) -> None:
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


# torch.save's zip container, and the pickle protocols of its legacy format.
_PICKLE_SIGNATURES = (b"PK\x03\x04", b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")
_OTHER_PROJECTS_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".pkl")


def _not_found_hint(path: Path) -> str:
    """What the user probably meant: the .safetensors file of the same name, or the shipped
    model, looked for in the current folder and in the installed package's (vae.shipped)."""
    if path.suffix.lower() in _OTHER_PROJECTS_SUFFIXES:
        twin = path.with_suffix(".safetensors")
        if twin.is_file():
            return f" ({twin} exists: vae checkpoints are .safetensors files)"
        return " (vae reads .safetensors checkpoints, written by vae train)"
    if path == DEFAULT_CHECKPOINT:
        from vae.shipped import shipped_path

        if (shipped := shipped_path(path)) != path:  # given as --checkpoint, from elsewhere
            return f" (the shipped model is {shipped}: pass that path, or leave out --checkpoint)"
        return (
            " (the shipped model, in neither ./pretrained nor the installed package's project"
            " folder: run the command from the project folder, or pass --checkpoint)"
        )
    return ""


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The checkpoint's vae metadata (model spec, data, objective, metrics...)."""
    return read_header(path).metadata


def build_metadata(
    *,
    model: VAE,
    data_info: dict[str, Any],
    config: dict[str, Any],
    epoch: int,
    step: int,
    validation: dict[str, float] | None,
    kind: str,
    run_name: str | None,
) -> dict[str, Any]:
    """Everything needed to rebuild and describe a model, as stored in its checkpoint."""
    import torch

    objective = config.get("objective", {})
    return {
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        "kind": kind,
        "run_name": run_name,
        "model": model.spec.to_dict(),
        "data": data_info,
        "likelihood": {
            "name": model.spec.likelihood,
            "gaussian_sigma": objective.get("gaussian_sigma")
            if model.spec.likelihood == "mse"
            else None,
            # The values the model learned (per channel); gaussian_sigma is then their start.
            "note": "a perceptual loss, not a likelihood: no NLL or bits/dim is defined"
            if model.spec.likelihood in PERCEPTUAL_LOSSES
            else None,
            "learned_sigma": model.likelihood_sigma(0.0).detach().flatten().tolist()
            if model.spec.learned_sigma
            else None,
        },
        "beta_schedule": {
            key: objective.get(key)
            for key in (
                "beta_schedule",
                "beta",
                "beta_warmup",
                "beta_cycles",
                "beta_ramp_ratio",
                "free_bits",
            )
        },
        "epoch": epoch,
        "step": step,
        "validation": validation or {},
        "parameter_count": model.parameter_count(),
        "created_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "torch_version": torch.__version__,
        "config": config,
    }


def save_checkpoint(
    path: str | Path,
    model: VAE,
    metadata: dict[str, Any],
    extra_tensors: dict[str, torch.Tensor] | None = None,
    training_state: dict[str, Any] | None = None,
) -> None:
    """Write weights (+ optional training tensors and state) and metadata, atomically."""
    from safetensors.torch import save

    tensors = {
        MODEL_PREFIX + name: value.detach().to("cpu").contiguous()
        for name, value in model.state_dict().items()
    }
    for name, value in (extra_tensors or {}).items():
        tensors[name] = value.detach().to("cpu").contiguous()
    header_metadata = {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        "vae": json.dumps(metadata, sort_keys=True),
    }
    if training_state is not None:
        header_metadata["training_state"] = json.dumps(training_state, sort_keys=True)
    atomic_write_bytes(path, save(tensors, metadata=header_metadata))


def read_tensors(
    path: str | Path,
    prefix: str,
    device: str | torch.device = "cpu",
    framework: str = "pt",
    only: tuple[str, ...] = ("",),
) -> dict[str, Any]:
    """Tensors whose names start with ``prefix`` (prefix removed), loaded onto ``device``; NumPy
    arrays with ``framework="numpy"`` (which needs no torch). With ``only``, just the tensors
    whose names after the prefix start with one of those (the others are never read)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework=framework, device=str(device)) as handle:
            renames = {}
            if prefix == MODEL_PREFIX:
                renames = _stored_renames(path, handle.metadata() or {})
            tensors = {
                renames.get(name[len(prefix) :], name[len(prefix) :]): handle.get_tensor(name)
                for name in handle.keys()
                if name.startswith(prefix) and name[len(prefix) :].startswith(only)
            }
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"cannot read tensors from {path}: {first_line(error)}") from None
    for name, value in tensors.items():
        if not _all_finite(value):
            # NaN weights would give black pictures and NaN metrics with exit 0.
            raise CheckpointError(
                f"{path}: tensor {prefix}{name} holds NaN or infinite values (the file is damaged "
                "or its training diverged)"
            )
    return tensors


def _renames(path: str | Path, version: int, metadata: dict[str, Any]) -> dict[str, str]:
    """Model tensor names (without the prefix) as a checkpoint of format ``version`` stores
    them, mapped to today's; empty for today's format. ``metadata``: the vae metadata."""
    if version >= 2:
        return {}
    from vae.plan import version1_names
    from vae.spec import ModelSpec, check_spec

    try:
        spec = ModelSpec.from_dict(metadata["model"])
        check_spec(spec)
    except (KeyError, TypeError, ValueError, ConfigError) as error:
        raise CheckpointError(f"{path} describes a model this vae cannot build: {error}") from None
    return version1_names(spec)


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def _stored_renames(path: str | Path, raw_metadata: dict[str, str]) -> dict[str, str]:
    """``_renames`` from a safetensors file's raw metadata (already checked by ``read_header``
    in every command that gets this far; anything unreadable here renames nothing)."""
    version = raw_metadata.get("format_version", "")
    if not (version.isascii() and version.isdigit()) or int(version) >= 2:
        return {}
    try:
        metadata = json.loads(raw_metadata["vae"])
    except (KeyError, ValueError, RecursionError):
        return {}
    return _renames(path, int(version), metadata) if isinstance(metadata, dict) else {}


def _all_finite(value: Any) -> bool:
    """Whether a torch tensor or NumPy array holds no NaN or infinity (integers always pass)."""
    if hasattr(value, "is_floating_point"):
        import torch

        return not value.is_floating_point() or bool(torch.isfinite(value).all())
    import numpy as np

    return not np.issubdtype(value.dtype, np.inexact) or bool(np.isfinite(value).all())


def check_model_tensors(path: str | Path, header: CheckpointHeader) -> ModelSpec:
    """The model spec in the header, checked against the file's tensor table (no torch needed):
    a hostile header can then never make a loader allocate more than the file itself holds."""
    from vae.spec import ModelSpec, expected_tensors

    try:
        spec = ModelSpec.from_dict(header.metadata["model"])
        expected = expected_tensors(spec)
    except (KeyError, TypeError, ValueError, ConfigError) as error:
        raise CheckpointError(f"{path} describes a model this vae cannot build: {error}") from None
    _check_data_section(path, header.metadata, spec)
    check_tensor_table(path, header, expected)
    return spec


def _check_data_section(path: str | Path, metadata: dict[str, Any], spec: ModelSpec) -> None:
    """The metadata's description of the training images agrees with the model: commands feed
    the model images shaped as the model's spec says, found by the dataset named here."""
    data = metadata.get("data", {})
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} has corrupt vae metadata (its data section is not a table)")
    if not isinstance(data.get("dataset", ""), str):
        raise CheckpointError(f"{path} has corrupt vae metadata (its dataset name is not text)")
    for name in ("channels", "height", "width"):
        if name in data and data[name] != getattr(spec, name):
            raise CheckpointError(
                f"{path}: its data section says images have {name} {str(data[name])[:20]}, "
                f"the model in its metadata takes {getattr(spec, name)}"
            )


def data_for_model(metadata: dict[str, Any], spec: ModelSpec) -> dict[str, Any]:
    """The checkpoint's data section with the image sizes of its model (checked to agree by
    ``check_model_tensors``): what commands use to load images to show the model."""
    data = metadata.get("data")
    sizes = {"channels": spec.channels, "height": spec.height, "width": spec.width}
    return {**(data if isinstance(data, dict) else {}), **sizes}


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
    with _opened(path) as handle:
        header, start = _checked_header(path, handle)
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
    spans = sorted(_tensor_spans(path, header.tensors))
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


# safetensors' dtypes of the weights a model may hold (``check_tensor_table`` allows no other).
_TORCH_DTYPES = {"F32": "float32", "F64": "float64", "F16": "float16", "BF16": "bfloat16"}


def _model_weights(
    path: Path, header: CheckpointHeader, kept: dict[str, bytearray]
) -> dict[str, torch.Tensor]:
    """The model's tensors, named as today's format names them, from their bytes (no copy):
    refused when one holds NaN or infinity."""
    if not kept:
        return {}
    import torch

    renames = _renames(path, header.format_version, header.metadata)
    weights = {}
    for stored, buffer in kept.items():
        entry = header.tensors[stored]
        dtype = getattr(torch, _TORCH_DTYPES[entry["dtype"]])
        # safetensors stores little-endian values, the byte order of every machine torch runs on.
        tensor = (
            torch.frombuffer(buffer, dtype=dtype) if buffer else torch.empty(0, dtype=dtype)
        ).reshape(entry["shape"])
        name = stored[len(MODEL_PREFIX) :]
        if not _all_finite(tensor):
            # NaN weights would give black pictures and NaN metrics with exit 0.
            raise CheckpointError(
                f"{path}: tensor {MODEL_PREFIX}{name} holds NaN or infinite values (the file is "
                "damaged or its training diverged)"
            )
        weights[renames.get(name, name)] = tensor
    return weights


def load_checkpoint(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[VAE, CheckpointFile]:
    """The model rebuilt from a checkpoint's own metadata, on any device, with the file it came
    from (header, sha256): all of one read of the file (``read_checkpoint``)."""
    from vae.model import build_model

    content = read_checkpoint(path, weights=True)
    model = build_model(content.spec)
    try:
        model.load_state_dict(content.weights, strict=True)
    except RuntimeError as error:
        raise CheckpointError(
            f"{path}: weights do not match the model in its metadata ({first_line(error)})"
        ) from None
    content.weights = {}  # copied into the model: the file's bytes can go
    model.eval()
    return model.to(device), content


def load_model(path: str | Path, device: str | torch.device = "cpu") -> VAE:
    """The one factory that rebuilds any vae checkpoint from its own metadata, on any device."""
    return load_checkpoint(path, device)[0]


_SAFETENSORS_DTYPES = {"F32": "float32", "F64": "float64", "F16": "float16", "BF16": "bfloat16"}


def check_tensor_table(
    path: str | Path, header: CheckpointHeader, expected: dict[str, Any]
) -> None:
    """Every weight the model needs is in the file with the right shape and dtype, and no more
    (names of an earlier checkpoint format are read as today's)."""
    renames = _renames(path, header.format_version, header.metadata)
    stored = {
        renames.get(name[len(MODEL_PREFIX) :], name[len(MODEL_PREFIX) :]): entry
        for name, entry in header.tensors.items()
        if name.startswith(MODEL_PREFIX)
    }
    missing = sorted(set(expected) - set(stored))
    unexpected = sorted(set(stored) - set(expected))
    if missing or unexpected:
        problem = f"missing {', '.join(missing[:3])}" if missing else ""
        if unexpected:
            problem += ("; " if problem else "") + f"unexpected {', '.join(unexpected[:3])}"
        raise CheckpointError(f"{path}: weights do not match the model in its metadata ({problem})")
    for name, tensor in expected.items():
        entry = stored[name]
        shape = entry.get("shape") if isinstance(entry, dict) else None
        dtype = _SAFETENSORS_DTYPES.get(entry.get("dtype")) if isinstance(entry, dict) else None
        needed = str(tensor.dtype).removeprefix("torch.")
        if shape != list(tensor.shape) or dtype != needed:
            found = entry.get("dtype") if isinstance(entry, dict) else "?"
            raise CheckpointError(
                f"{path}: weight {name} is {found} {shape}, the model in its metadata needs "
                f"{needed} {list(tensor.shape)}"
            )
