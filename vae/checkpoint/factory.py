"""The one place a model is rebuilt from a checkpoint: from the file's own metadata, its weights
read in the same pass as its header and hash (``vae.checkpoint.file``), on any device."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from vae.checkpoint.file import CheckpointFile, read_checkpoint
from vae.errors import CheckpointError, first_line

if TYPE_CHECKING:
    import torch

    from vae.model import VAE


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
