"""The decoded-image cache: image files (or a Hugging Face dataset's encoded images) decoded once
into uint8 shard files under the cache folder (see :mod:`vae.data.storage`), read back mapped or
into memory.

Layout: ``<cache>/<name>-<hash of the decoding settings>/<split>-<NNNNN>-<hash of its images>
.safetensors``, each shard a few hundred MB holding one uint8 tensor ``images`` [n, C, H, W] of a
fixed range of the split's images. A shard is written to a temporary file and renamed when
complete, so a shard that exists is whole; an interrupted decode finds the shards it finished and
decodes only the rest. A shard's name hashes the listing of its own images (path, size, mtime),
so a rewritten file rebuilds its shard only; an added or removed file shifts the ranges after it
and rebuilds those. Processes that load the same split at once (torchrun's ranks) take turns on a
lock, so one of them decodes and the others map its shards.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vae.data import decoding
from vae.data.decoding import Encoded
from vae.data.mapped import MappedImages, map_safetensors_uint8, safetensors_uint8_bytes
from vae.data.storage import CACHE_FOLDER, Storage

CACHE_VERSION = 2  # bump when decoding changes, so that old caches are not reused (2: JPEG draft)
SHARD_BYTES = 256 << 20  # decoded bytes per shard
_TENSOR = "images"

__all__ = ["CACHE_FOLDER", "CACHE_VERSION", "EncodedSplit", "decoded_split", "file_listing"]


@dataclass(frozen=True)
class EncodedSplit:
    """The encoded images of one split, in order: ``count`` of them, ``fetch(begin, end)`` gives
    images begin..end (paths or bytes), and ``identity(begin, end)`` a JSON value that changes
    whenever one of them does (a shard's name hashes it)."""

    count: int
    fetch: Callable[[int, int], list[Encoded]]
    identity: Callable[[int, int], Any]

    @classmethod
    def of_files(cls, files: list[Path], base: Path) -> EncodedSplit:
        """Image files; a file's identity is its path under ``base``, size and mtime."""
        listing = file_listing(files, base)
        return cls(len(files), lambda b, e: list(files[b:e]), lambda b, e: listing[b:e])


def decoded_split(
    storage: Storage,
    name: str,
    key: list[Any],
    split: str,
    sources: EncodedSplit,
    size: int,
    channels: int | None,
    crop: int | None = None,
) -> torch.Tensor | MappedImages:
    """The images of ``sources`` decoded to uint8 [N, C, size, size] (``channels`` None: the
    first image's), from the cache when it holds them, else decoded on ``storage.workers``
    processes and cached. Mapped or in memory as ``storage.maps`` decides; a cache folder that
    cannot be written means in memory, with a one-line note."""
    if sources.count == 0:
        return torch.empty((0, channels or 1, size, size), dtype=torch.uint8)
    if channels is None:
        channels = decoding.image_channels(sources.fetch(0, 1)[0])
    image_bytes = channels * size * size
    maps = storage.maps(sources.count * image_bytes)
    per_shard = max(1, SHARD_BYTES // image_bytes)
    ranges = [(b, min(b + per_shard, sources.count)) for b in range(0, sources.count, per_shard)]
    folder = storage.cache_root / f"{name}-{_digest([CACHE_VERSION, *key, size, channels, crop])}"
    names = [
        f"{split}-{number:05d}-{_digest(sources.identity(b, e))}.safetensors"
        for number, (b, e) in enumerate(ranges)
    ]
    shape = (channels, size, size)
    # Complete shards are used as they are, even where the folder cannot be written now.
    parts = [
        _mapped_shard(folder / n, (e - b, *shape)) for n, (b, e) in zip(names, ranges, strict=True)
    ]
    if any(part is None for part in parts):
        try:
            lock = _locked(folder)
            lock.__enter__()
        except OSError as error:
            storage.note_once(
                f"cannot write the cache folder {storage.cache_root} "
                f"({error.strerror or error}): decoded images are kept in memory only and "
                "decoded again next time; set --cache-dir or VAE_CACHE_DIR to a writable folder"
            )
            missing = sum(e - b for part, (b, e) in zip(parts, ranges, strict=True) if part is None)
            storage.reporter.task_started(f"decoding {name} {split}", missing)
            try:
                decoded = [
                    part if part is not None else _decode(storage, sources, b, e, shape, crop)
                    for part, (b, e) in zip(parts, ranges, strict=True)
                ]
            finally:
                storage.reporter.task_ended()
            return _in_memory(decoded)
        try:
            _decode_missing(
                storage, sources, folder, names, ranges, parts, shape, crop, name, split
            )
            _remove_stale(folder, split, set(names))
        finally:
            lock.__exit__(None, None, None)
    arrays = [part for part in parts if part is not None]
    return MappedImages(arrays) if maps else _in_memory(arrays)


def _decode_missing(
    storage: Storage,
    sources: EncodedSplit,
    folder: Path,
    names: list[str],
    ranges: list[tuple[int, int]],
    parts: list[np.ndarray | None],
    shape: tuple[int, ...],
    crop: int | None,
    name: str,
    split: str,
) -> None:
    """Decode and write the shards still missing once the lock is held (another process may
    have written some meanwhile), filling ``parts`` in place, with a progress bar."""
    for number, (b, e) in enumerate(ranges):
        if parts[number] is None:
            parts[number] = _mapped_shard(folder / names[number], (e - b, *shape))
    missing = [number for number, part in enumerate(parts) if part is None]
    if not missing:
        return
    total = sum(ranges[n][1] - ranges[n][0] for n in missing)
    storage.reporter.task_started(f"decoding {name} {split}", total)
    try:
        for number in missing:
            b, e = ranges[number]
            decoded = _decode(storage, sources, b, e, shape, crop)
            parts[number] = _kept(storage, folder / names[number], decoded)
    finally:
        storage.reporter.task_ended()


def _decode(
    storage: Storage,
    sources: EncodedSplit,
    begin: int,
    end: int,
    shape: tuple[int, ...],
    crop: int | None,
) -> np.ndarray:
    """Images begin..end of ``sources``, decoded (looked up on the module: tests count calls)."""
    out = np.empty((end - begin, *shape), dtype=np.uint8)
    decoding.decode_into(
        out, sources.fetch(begin, end), crop, storage.workers, storage.reporter.task_advanced
    )
    return out


def _kept(storage: Storage, path: Path, images: np.ndarray) -> np.ndarray:
    """Write one decoded shard atomically and map it back (its pages then belong to the page
    cache, not to this process); if it cannot be written, keep it in memory with a note."""
    from vae.fileio import atomic_write_bytes

    try:
        atomic_write_bytes(path, safetensors_uint8_bytes(images, _TENSOR))
        mapped = _mapped_shard(path, images.shape)
    except OSError as error:
        storage.note_once(
            f"cannot write decoded images to {path.parent} ({error.strerror or error}): they are "
            "kept in memory only"
        )
        return images
    return images if mapped is None else mapped


def _mapped_shard(path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    """A complete shard of ``shape``, mapped; None when it is missing or damaged (rebuilt)."""
    if not path.is_file():
        return None
    try:
        array = map_safetensors_uint8(path, _TENSOR)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return array if tuple(array.shape) == tuple(shape) else None


def _in_memory(parts: list[np.ndarray]) -> torch.Tensor:
    """The parts copied into one tensor (each part read once, no intermediate copy)."""
    total = sum(len(part) for part in parts)
    out = torch.empty((total, *parts[0].shape[1:]), dtype=torch.uint8)
    begin = 0
    for part in parts:
        out.numpy()[begin : begin + len(part)] = part
        begin += len(part)
    return out


def _remove_stale(folder: Path, split: str, keep: set[str]) -> None:
    """Shards of ``split`` that the current images no longer use, and temporary files that a
    killed decode left (no one else writes here: the lock is held)."""
    for path in folder.iterdir():
        stale_shard = path.name.startswith(f"{split}-") and path.name not in keep
        left_temporary = path.name.startswith(f".{split}-") and path.name.endswith(".tmp")
        if stale_shard or left_temporary:
            with contextlib.suppress(OSError):  # a mapped file may be removed: its pages stay
                path.unlink()


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Hold ``folder/.lock`` exclusively (created with the folder): one decoder at a time. The
    kernel releases it however the holder ends.

    A POSIX record lock (``lockf``), not ``flock``: the decoding processes are forked while it is
    held, and a forked child shares an ``flock`` (an orphaned worker of a killed decode would
    hold it for ever) but never a record lock."""
    import fcntl  # POSIX; vae trains on Linux and macOS

    folder.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(
        folder / ".lock", os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644
    )
    try:
        fcntl.lockf(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value).encode()).hexdigest()[:20]


def file_listing(files: list[Path], base: Path) -> list[tuple[str, int, int]]:
    """(path under ``base``, size, mtime) of each file: any added, removed or rewritten file
    changes a cache key built from it."""
    listing = []
    for path in files:
        status = path.stat()
        listing.append((path.relative_to(base).as_posix(), status.st_size, status.st_mtime_ns))
    return listing
