"""One writer per run folder: an operating-system lock held from before the first write to the end.

The lock is ``fcntl.flock`` on ``<run>/.lock``, so the kernel releases it however the holder ends,
``kill -9`` included; the file records the holder's process id for the refusal message. The lock
file is not part of a run: a folder holding only it counts as empty.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from vae.errors import VAEError

LOCK_NAME = ".lock"


class RunFolderBusy(VAEError):
    """Another process is writing the run folder."""


@contextlib.contextmanager
def run_folder_lock(run_dir: Path) -> Iterator[None]:
    """Hold the run folder's lock for the ``with`` block; raise RunFolderBusy when another
    process holds it. Creates the folder if needed and, on leaving, removes what it created
    when nothing else was written (a run refused before its first save leaves no trace)."""
    created = _make_folders(run_dir)
    try:
        _check_folder(run_dir)
        descriptor = _acquire(run_dir / LOCK_NAME)
    except BaseException:
        _remove_empty(created)
        raise
    try:
        yield
    finally:
        # Unlinked before it is unlocked: a process waiting on the old file then sees that its
        # file is gone and opens the new one (see _acquire), so two never both hold a lock.
        with contextlib.suppress(OSError):
            os.unlink(run_dir / LOCK_NAME)
        os.close(descriptor)
        _remove_empty(created)


def lock_holder(run_dir: Path) -> int | None:
    """The process id recorded by the lock's holder, if one can be read."""
    try:
        return int((run_dir / LOCK_NAME).read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None


def _acquire(path: Path) -> int:
    import fcntl  # POSIX; vae's training runs on Linux and macOS

    while True:
        try:
            # Never through a link: a planted .lock -> some file must not get truncated.
            descriptor = os.open(
                path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | os.O_NONBLOCK, 0o644
            )
        except OSError as error:
            raise _open_error(path, error) from None
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            os.close(descriptor)
            raise VAEError(
                f"cannot lock run folder {path.parent}: {path.name} there is not a plain file; "
                "remove it"
            )
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            holder = lock_holder(path.parent)
            who = f"process {holder}" if holder is not None else "another process"
            raise RunFolderBusy(
                f"run folder {path.parent} is in use by {who} (another train is writing it); "
                "wait for it to finish or choose another run name"
            ) from None
        except BaseException:
            os.close(descriptor)
            raise
        try:
            same_file = os.fstat(descriptor).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same_file = False
        if same_file:
            os.ftruncate(descriptor, 0)
            os.write(descriptor, f"{os.getpid()}\n".encode("ascii"))
            return descriptor
        os.close(descriptor)  # the holder removed the file as we locked it: lock the new one


def _open_error(path: Path, error: OSError) -> VAEError:
    """What stopped ``.lock`` from being opened: the file itself only when one is there."""
    reason = error.strerror or str(error)
    try:
        mode = os.lstat(path).st_mode
    except OSError:  # no .lock: the folder refused the new file (read-only, no permission)
        return VAEError(f"cannot write in run folder {path.parent} ({reason})")
    if not stat.S_ISREG(mode):
        return VAEError(
            f"cannot lock run folder {path.parent}: {path.name} there is not a plain file "
            f"({reason}); remove it"
        )
    return VAEError(f"cannot lock run folder {path.parent}: cannot open its {path.name} ({reason})")


_KINDS = (
    (stat.S_ISREG, "a file"),
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISCHR, "a device"),
    (stat.S_ISBLK, "a device"),
    (stat.S_ISSOCK, "a socket"),
)


def _check_folder(folder: Path) -> None:
    """Refuse a run folder that is not a folder (a file, a named pipe, a link to /dev/null):
    opening a .lock inside it would fail with a message about a .lock that is not there."""
    if folder.is_dir():
        return
    try:
        mode = os.stat(folder).st_mode
    except OSError as error:
        if not folder.is_symlink():
            raise VAEError(f"cannot use run folder {folder} ({error.strerror or error})") from None
        what = "a broken link"
    else:
        what = next((kind for test, kind in _KINDS if test(mode)), "something else")
        if folder.is_symlink():
            what = f"a link to {what}"
    raise VAEError(f"run folder {folder} is {what}, not a folder: choose another run name")


def _make_folders(folder: Path) -> list[Path]:
    """mkdir -p that returns the folders it created, deepest first; on failure, removes them and
    raises VAEError naming the folder it could not create."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    created: list[Path] = []
    for path in reversed(missing):
        try:
            path.mkdir()
        except FileExistsError:
            continue  # made by another process at the same moment: not ours to remove
        except OSError as error:
            _remove_empty(created[::-1])
            raise VAEError(f"cannot create run folder {path} ({error.strerror or error})") from None
        created.append(path)
    return created[::-1]


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return  # not empty: the run wrote its files there
