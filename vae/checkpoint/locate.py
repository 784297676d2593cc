"""Where the checkpoint a user names is: a ``.safetensors`` file, a run folder (its
``checkpoint_best.safetensors``) or a ``hf://`` reference (fetched into the Hub cache first)."""

from __future__ import annotations

from pathlib import Path

from vae.checkpoint.hub import local_checkpoint
from vae.checkpoint.names import BEST_NAME


def locate_checkpoint(source: str | Path) -> Path:
    """The local file of checkpoint ``source``: a file as given, a run folder's best
    checkpoint, or a ``hf://OWNER/NAME[@REVISION][/FILE.safetensors]`` fetched from the Hub."""
    path = local_checkpoint(source)
    return path / BEST_NAME if path.is_dir() else path
