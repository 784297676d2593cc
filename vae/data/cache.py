"""The decoded-tensor cache: image files decoded once are kept as a safetensors file under
``<data root>/vae-cache/``, keyed by everything that decides their pixels."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

CACHE_FOLDER = "vae-cache"
CACHE_VERSION = 1  # bump when decoding changes, so that old caches are not reused


def cached_tensors(
    root: Path, name: str, key: list[Any], build: Callable[[], dict[str, torch.Tensor]]
) -> dict[str, torch.Tensor]:
    """``build()``'s tensors, kept in ``<root>/vae-cache/<name>-<hash of key>.safetensors`` so that
    the next run skips decoding. A damaged cache file is rebuilt; a data folder that cannot be
    written to only means no cache."""
    import hashlib
    import json

    from safetensors import SafetensorError
    from safetensors.torch import load_file, save

    from vae.fileio import atomic_write_bytes

    digest = hashlib.sha256(json.dumps([CACHE_VERSION, *key]).encode()).hexdigest()[:20]
    path = root / CACHE_FOLDER / f"{name}-{digest}.safetensors"
    if path.is_file():
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError):
            pass  # rebuilt and rewritten below
    tensors = build()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, save({k: v.contiguous() for k, v in tensors.items()}))
    except OSError:
        pass  # a read-only data folder: the next run decodes again
    return tensors


def file_listing(files: list[Path], base: Path) -> list[tuple[str, int, int]]:
    """(path under ``base``, size, mtime) of each file: any added, removed or rewritten file
    changes a cache key built from it."""
    listing = []
    for path in files:
        status = path.stat()
        listing.append((path.relative_to(base).as_posix(), status.st_size, status.st_mtime_ns))
    return listing
