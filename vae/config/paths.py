"""Where the data lives: the data folder a run reads and downloads into, and the environment
variables that choose it and the decoded-image cache (vae.data.storage applies the latter)."""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "VAE_DATA_DIR"
CACHE_DIR_ENV = "VAE_CACHE_DIR"


def resolve_data_dir(data_dir: str | None) -> Path:
    """--data-dir, else $VAE_DATA_DIR, else ./data."""
    chosen = data_dir or os.environ.get(DATA_DIR_ENV) or "data"
    return Path(chosen).expanduser()
