"""Atomic file writes and file hashing (no torch here: ``info`` uses it)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from vae.errors import ConfigError, VAEError


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash at any moment leaves the old file or the new one.

    The bytes go to a temporary file in the same folder, are flushed and fsynced, and the file is
    renamed over the target (an atomic operation on POSIX and Windows). On any failure the
    temporary file is removed and the previous file, if there was one, is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        if error.filename is None:  # a failed write() names no file: name the one we were saving
            raise OSError(error.errno, error.strerror or str(error), str(path)) from error
        raise
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def check_output_file(path: str | Path, option: str) -> None:
    """Refuse, before any long work, an output file that can never be written: a folder, or a
    file below something that is not a writable folder. (The write still reports what cannot be
    foreseen, such as a full disk.)"""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{option} {path} is a folder: give a file name")
    _check_writable_below(path.parent, path)


def check_output_folder(path: str | Path, option: str) -> None:
    """Refuse, before any long work, an output folder that can never be written: a file, or a
    folder below something that is not a writable folder."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{option} {path} is a file, not a folder")
    _check_writable_below(path, path)


def file_in_the_way(path: str | Path) -> Path | None:
    """The file standing where one of ``path``'s folders should be, if any: the usual reason a
    write fails with the cryptic "File exists" or "Not a directory"."""
    folder = _nearest_existing(Path(path).parent)
    return None if folder.is_dir() else folder


def _nearest_existing(folder: Path) -> Path:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent  # the folders that do not exist yet will be created
    return folder


def _check_writable_below(folder: Path, target: Path) -> None:
    folder = _nearest_existing(folder)
    if not folder.is_dir():
        raise VAEError(f"cannot write {target}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise VAEError(f"cannot write {target}: {folder} is not writable")


def atomic_write_text(path: str | Path, text: str) -> None:
    """UTF-8 text version of :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode("utf-8"))


def _fsync_directory(folder: Path) -> None:
    # Makes the rename itself durable. Some platforms (Windows) cannot open a folder: the rename
    # has still happened, only its durability across a power cut is weaker there.
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # fsync on a directory is unsupported on some filesystems; the rename stands
    finally:
        os.close(descriptor)


def sha256_file(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()
