"""A checkpoint's tensors: the model's tensor table checked against the model its metadata
describes (no torch needed: a hostile header then never makes a loader allocate more than the
file holds), the data section checked against that model, tensors read by name prefix, every one
finite, and a format-1 file's tensor names read as today's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vae.checkpoint.header import CheckpointHeader
from vae.checkpoint.names import MODEL_PREFIX
from vae.errors import CheckpointError, ConfigError, first_line

if TYPE_CHECKING:
    import torch

    from vae.model_spec import ModelSpec

# safetensors' dtypes of the weights a model may hold (``check_tensor_table`` allows no other),
# by torch's names for them.
WEIGHT_DTYPES = {"F32": "float32", "F64": "float64", "F16": "float16", "BF16": "bfloat16"}


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
        check_finite(path, prefix + name, value)
    return tensors


def version_renames(path: str | Path, version: int, metadata: dict[str, Any]) -> dict[str, str]:
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


def _stored_renames(path: str | Path, raw_metadata: dict[str, str]) -> dict[str, str]:
    """``version_renames`` from a safetensors file's raw metadata (already checked by
    ``read_header`` in every command that gets this far; anything unreadable here renames
    nothing)."""
    version = raw_metadata.get("format_version", "")
    if not (version.isascii() and version.isdigit()) or int(version) >= 2:
        return {}
    try:
        metadata = json.loads(raw_metadata["vae"])
    except (KeyError, ValueError, RecursionError):
        return {}
    return version_renames(path, int(version), metadata) if isinstance(metadata, dict) else {}


def check_finite(path: str | Path, name: str, value: Any) -> None:
    """Refuse the tensor ``name`` (as stored) of ``path`` when it holds NaN or infinity."""
    if not _all_finite(value):
        # NaN weights would give black pictures and NaN metrics with exit 0.
        raise CheckpointError(
            f"{path}: tensor {name} holds NaN or infinite values (the file is damaged or its "
            "training diverged)"
        )


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


def check_tensor_table(
    path: str | Path, header: CheckpointHeader, expected: dict[str, Any]
) -> None:
    """Every weight the model needs is in the file with the right shape and dtype, and no more
    (names of an earlier checkpoint format are read as today's)."""
    renames = version_renames(path, header.format_version, header.metadata)
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
        dtype = WEIGHT_DTYPES.get(entry.get("dtype")) if isinstance(entry, dict) else None
        needed = str(tensor.dtype).removeprefix("torch.")
        if shape != list(tensor.shape) or dtype != needed:
            found = entry.get("dtype") if isinstance(entry, dict) else "?"
            raise CheckpointError(
                f"{path}: weight {name} is {found} {shape}, the model in its metadata needs "
                f"{needed} {list(tensor.shape)}"
            )
