"""Atomic file writes that never destroy what they should not (no torch here: ``info`` uses it)."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path

from vae.errors import ConfigError, VAEError

# The kinds of file a command writes at a path the user names. An existing file there is replaced
# only when its content is of the same kind (an earlier output), so that a mistyped --output can
# never overwrite a checkpoint, a dataset file or a document.
PICTURE = "picture"
EVALUATION = "vae evaluation JSON"
OUTLIER_SCORES = "vae outlier scores CSV"
EVALUATION_PROGRESS = "vae evaluation progress file"
# The safetensors metadata key that marks an evaluation's progress file (vae.evaluation.progress).
PROGRESS_METADATA_KEY = "vae_evaluation_progress"
_SAFETENSORS_MAX_HEADER = 100 * 1024 * 1024
PROGRESS_SUFFIX = ".progress.safetensors"
_PICTURE_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"\xff\xd8\xff")
_EVALUATION_KEYS = {"protocol", "metrics", "checkpoint_sha256"}
_EVALUATION_MAX_BYTES = 64 * 1024 * 1024  # far above any evaluation JSON; bounds the read


def progress_path(output: str | Path) -> Path:
    """Where the progress of an evaluation written to ``output`` is kept (vae.evaluation.progress):
    beside it, named after it."""
    output = Path(output)
    return output.with_name(output.name + PROGRESS_SUFFIX)


def atomic_write_bytes(
    path: str | Path, data: bytes | Sequence[bytes | memoryview], replaces: str | None = None
) -> None:
    """Write ``data`` (bytes, or pieces written one after another, so that a large array need not
    be copied into one bytes object) to ``path`` so that a crash at any moment leaves the old
    file or the new one.

    The bytes go to a temporary file in the same folder, are flushed and fsynced, and the file is
    renamed over the target (an atomic operation on POSIX and Windows). On any failure the
    temporary file is removed and the previous file, if there was one, is untouched.

    Whatever stands at ``path`` must be a regular file (a device, FIFO or folder is never
    replaced); with ``replaces`` (PICTURE or EVALUATION) it must also hold that kind of content,
    checked just before the rename (see :func:`check_replaceable`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if os.path.lexists(temporary):  # left by a killed process, or a link planted there
            os.unlink(temporary)  # removes a link itself, never what it points to
        with open(temporary, "wb", opener=_new_file) as handle:
            for piece in [data] if isinstance(data, bytes) else data:
                handle.write(piece)
            handle.flush()
            os.fsync(handle.fileno())
        check_replaceable(path, replaces)
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


def _new_file(name: str, flags: int) -> int:
    """``open``'s opener for temporary files: created here and now, never through a link
    (O_EXCL | O_NOFOLLOW), so a link planted under the name cannot redirect the write."""
    return os.open(name, flags | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666)


def check_replaceable(path: str | Path, kind: str | None, reads: Iterable[Path] = ()) -> None:
    """Raise VAEError unless writing a file of ``kind`` at ``path`` destroys nothing.

    Links are resolved first. What may be replaced: nothing (the path is free), an empty regular
    file, or a regular file whose content is of ``kind`` (an earlier output: PNG, GIF or JPEG
    signature for PICTURE; a JSON object with a vae evaluation's keys for EVALUATION). Never a
    device, FIFO, socket or folder, and never one of ``reads`` (the files the command reads) or
    a path inside one of them that is a folder.
    ``kind`` None checks only that the path is not something other than a regular file.
    """
    path = Path(path)
    target = Path(os.path.realpath(path))
    for source in reads:
        relation = _relation(target, Path(source))
        if relation is not None:
            raise VAEError(
                f"refusing to write {path}: it {relation} {source}, which this command reads; "
                "choose another output path"
            )
    try:
        status = os.stat(target)
    except OSError:
        return  # nothing there (or a path the write itself will report)
    if not stat.S_ISREG(status.st_mode):
        raise VAEError(f"refusing to write {path}: it is {_what(status.st_mode)}, not a file")
    if kind is None or status.st_size == 0 or _holds(target, kind):
        return
    raise VAEError(
        f"refusing to replace {path}: it is not a {kind} that vae wrote (only earlier outputs "
        "are replaced); choose another output path or move the file away"
    )


def _relation(target: Path, source: Path) -> str | None:
    """ "is" when ``target`` (links resolved) is ``source`` (also as a hard link), "is inside"
    when it lies in the folder ``source`` (a new file there changes that folder, a dataset),
    else None."""
    folder = Path(os.path.realpath(source))
    if target == folder:
        return "is"
    if folder.is_dir() and target.is_relative_to(folder):
        return "is inside"
    try:
        return "is" if os.path.samefile(source, target) else None
    except OSError:
        return None  # one of them does not exist


def _what(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def _holds(path: Path, kind: str) -> bool:
    """Whether the regular file at ``path`` holds ``kind`` content, judged by the content."""
    try:
        with open(path, "rb") as handle:
            if kind == PICTURE:
                start = handle.read(8)
                return any(start.startswith(signature) for signature in _PICTURE_SIGNATURES)
            if kind == OUTLIER_SCORES:
                return handle.read(4) == b"set,"
            if kind == EVALUATION_PROGRESS:
                length = int.from_bytes(handle.read(8), "little")
                if not 0 < length <= _SAFETENSORS_MAX_HEADER:
                    return False
                header = json.loads(handle.read(length))
                metadata = header.get("__metadata__") if isinstance(header, dict) else None
                return isinstance(metadata, dict) and PROGRESS_METADATA_KEY in metadata
            if kind == EVALUATION:
                text = handle.read(_EVALUATION_MAX_BYTES + 1)
                if len(text) > _EVALUATION_MAX_BYTES:
                    return False
                document = json.loads(text)
                return isinstance(document, dict) and _EVALUATION_KEYS <= set(document)
    except (OSError, ValueError, RecursionError):
        return False
    raise ValueError(f"unknown output kind {kind!r}")


def check_output_file(
    path: str | Path, option: str, kind: str | None = None, reads: Iterable[Path] = ()
) -> None:
    """Refuse, before any long work, an output file that can never be written (a folder, or a
    file below something that is not a writable folder) or that must not be replaced (see
    :func:`check_replaceable`). The write checks again and still reports what cannot be
    foreseen, such as a full disk."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{option} {path} is a folder: give a file name")
    _check_writable_below(path.parent, path)
    check_replaceable(path, kind, reads)


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


def atomic_write_text(path: str | Path, text: str, replaces: str | None = None) -> None:
    """UTF-8 text version of :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode("utf-8"), replaces)


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
