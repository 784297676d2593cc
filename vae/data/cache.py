"""The decoded-image cache: image files (or a Hugging Face dataset's encoded images) decoded once
into uint8 shard files under the cache folder (see :mod:`vae.data.storage`), read back mapped or
into memory.

Layout: ``<cache>/<name>-<hash of the decoding settings>/<split>-<NNNNN>-<hash of its images>
.safetensors``, each shard a few hundred MB holding one uint8 tensor ``images`` [n, C, H, W] of a
fixed range of the split's images. A shard is written to a temporary file and renamed when
complete, so a shard that exists is whole; an interrupted decode finds the shards it finished and
decodes only the rest. Its header holds the sha256 of its images, checked where they are read
anyway (see :func:`decoded_split`): a damaged shard is decoded again. A shard's name hashes the listing of its own images (path, size, mtime),
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vae.data import decoding
from vae.data.decoding import Encoded
from vae.data.mapped import MappedImages, map_safetensors_uint8, safetensors_uint8_bytes
from vae.data.storage import CACHE_FOLDER, Storage

# Bump when decoding or the shard format changes, so that old caches are not reused (2: JPEG
# draft; 3: each shard's header holds the sha256 of its images).
CACHE_VERSION = 3
SHARD_BYTES = 256 << 20  # decoded bytes per shard
_TENSOR = "images"
_HASH_KEY = "sha256"  # the shard's metadata entry holding the sha256 of its image bytes

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
    cannot be written means in memory, with a one-line note.

    Each cached shard's content is checked against the sha256 in its header where its bytes are
    read anyway: as it is copied into memory, or, mapped, in the pass that reads every training
    image for the data fingerprint (``MappedImages.checked_chunks``). A shard that fails, or
    whose header cannot be read, is decoded again, with a one-line note."""
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
    shards = _Shards(
        storage, sources, folder, names, ranges, (channels, size, size), crop, f"{name} {split}"
    )
    # Complete shards are used as they are, even where the folder cannot be written now.
    for number in range(len(ranges)):
        shards.map(number)
    if shards.missing():
        try:
            lock = _locked(folder)
            lock.__enter__()
        except OSError as error:
            _note_unwritable(storage, error)
            shards.decode(shards.missing(), keep=False)
            return _in_memory(shards.parts, shards.check)
        try:
            # Another process may have written some meanwhile.
            for number in shards.missing():
                shards.map(number)
            shards.decode(shards.missing(), keep=True)
            _remove_stale(folder, split, set(names))
        finally:
            lock.__exit__(None, None, None)
    if maps:
        return MappedImages(shards.parts, check=shards.check)  # type: ignore[arg-type]
    return _in_memory(shards.parts, shards.check)


@dataclass
class _Shards:
    """The shards of one split: where they live, what each must hold, and the arrays mapped or
    decoded so far (``parts``, None where missing). ``unchecked``: the content hash each shard
    mapped from the cache states in its header, until its bytes are checked against it (a shard
    this process decoded needs no check)."""

    storage: Storage
    sources: EncodedSplit
    folder: Path
    names: list[str]
    ranges: list[tuple[int, int]]
    shape: tuple[int, int, int]
    crop: int | None
    label: str  # "<dataset> <split>", for the progress bar
    parts: list[np.ndarray | None] = field(default_factory=list)
    unchecked: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.parts = [None] * len(self.ranges)

    def path(self, number: int) -> Path:
        return self.folder / self.names[number]

    def missing(self) -> list[int]:
        return [number for number, part in enumerate(self.parts) if part is None]

    def map(self, number: int) -> None:
        """Map shard ``number`` from the cache, if it is there and readable (noted when it is
        there but damaged: it is then decoded again)."""
        begin, end = self.ranges[number]
        found = _mapped_shard(self.storage, self.path(number), (end - begin, *self.shape))
        self.parts[number] = None if found is None else found[0]
        if found is not None:
            self.unchecked[number] = found[1]

    def decode(self, numbers: list[int], keep: bool) -> None:
        """Decode shards ``numbers`` (written to the cache and mapped back when ``keep``; the
        lock must be held then), with a progress bar."""
        if not numbers:
            return
        total = sum(self.ranges[n][1] - self.ranges[n][0] for n in numbers)
        self.storage.reporter.task_started(f"decoding {self.label}", total)
        try:
            for number in numbers:
                begin, end = self.ranges[number]
                decoded = _decode(self.storage, self.sources, begin, end, self.shape, self.crop)
                self.unchecked.pop(number, None)
                self.parts[number] = (
                    _kept(self.storage, self.path(number), decoded) if keep else decoded
                )
        finally:
            self.storage.reporter.task_ended()

    def check(self, number: int) -> None:
        """Check shard ``number``'s bytes against its content hash, once; a shard that fails is
        decoded again (one note) and replaces its entry in ``parts``, which the MappedImages
        of this split and all their views share."""
        expected = self.unchecked.pop(number, None)
        if expected is None or _content_hash(self.parts[number]) == expected:
            return
        self.storage.note_once(
            f"cached shard {self.path(number)} is damaged (its images do not match the content "
            "hash in its header): decoding them again"
        )
        try:
            lock = _locked(self.folder)
            lock.__enter__()
        except OSError as error:
            _note_unwritable(self.storage, error)
            self.decode([number], keep=False)
            return
        try:
            # Another process (a torchrun rank) may have decoded it again meanwhile.
            self.map(number)
            expected = self.unchecked.pop(number, None)
            if expected is None or _content_hash(self.parts[number]) != expected:
                self.decode([number], keep=True)
        finally:
            lock.__exit__(None, None, None)


def _note_unwritable(storage: Storage, error: OSError) -> None:
    storage.note_once(
        f"cannot write the cache folder {storage.cache_root} "
        f"({error.strerror or error}): decoded images are kept in memory only and "
        "decoded again next time; set --cache-dir or VAE_CACHE_DIR to a writable folder"
    )


def _content_hash(images: np.ndarray | None) -> str:
    """sha256 of a shard's image bytes (mapped: read from the file, the one read of them)."""
    assert images is not None
    return hashlib.sha256(np.ascontiguousarray(images)).hexdigest()


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
    """Write one decoded shard atomically, its content hash in its header, and map it back
    (its pages then belong to the page cache, not to this process); if it cannot be written,
    keep it in memory with a note."""
    from vae.fileio import atomic_write_bytes

    metadata = {_HASH_KEY: _content_hash(images)}
    try:
        atomic_write_bytes(path, safetensors_uint8_bytes(images, _TENSOR, metadata))
        mapped = _mapped_shard(storage, path, images.shape)
    except OSError as error:
        storage.note_once(
            f"cannot write decoded images to {path.parent} ({error.strerror or error}): they are "
            "kept in memory only"
        )
        return images
    return images if mapped is None else mapped[0]


def _mapped_shard(
    storage: Storage, path: Path, shape: tuple[int, ...]
) -> tuple[np.ndarray, str] | None:
    """(the shard at ``path``, mapped, and the content hash its header states) when it holds
    ``shape`` images; None when it is missing, or damaged (noted: it is decoded again)."""
    if not path.is_file():
        return None
    try:
        array, metadata = map_safetensors_uint8(path, _TENSOR)
        problem = None
        if tuple(array.shape) != tuple(shape):
            problem = f"it holds images of shape {tuple(array.shape)}, not {tuple(shape)}"
        elif not _is_sha256(metadata.get(_HASH_KEY)):
            problem = "its header has no content hash"
    except (OSError, ValueError) as error:
        problem = str(error).removeprefix(f"{path.name}: ")
    if problem is None:
        return array, metadata[_HASH_KEY]
    storage.note_once(f"cached shard {path} is damaged ({problem}): decoding its images again")
    return None


def _is_sha256(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in _HEX for c in value)


_HEX = frozenset("0123456789abcdef")


def _in_memory(parts: list[np.ndarray | None], check: Callable[[int], None]) -> torch.Tensor:
    """The parts copied into one tensor (no intermediate copy), each passed to ``check`` first
    (which may replace it): the copy is the one read of a mapped shard's bytes."""
    total = sum(len(part) for part in parts if part is not None)
    out = torch.empty((total, *parts[0].shape[1:]), dtype=torch.uint8)  # type: ignore[union-attr]
    begin = 0
    for number in range(len(parts)):
        check(number)
        part = parts[number]
        assert part is not None
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
