"""What a command writes: result lines on stdout (escaped), counts in words, the note on where
samples come from, and files written safely (a failed write or a NaN in JSON is one line)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from vae.errors import VAEError
from vae.fileio import file_in_the_way

if TYPE_CHECKING:
    from vae.model_spec import ModelSpec


def count(number: int, noun: str) -> str:
    """'1 sample', '3 samples'."""
    return f"{number} {noun}" + ("" if number == 1 else "s")


def say(text: str) -> None:
    """A line of a command's result on stdout, escaped: it names files and runs, which may hold
    escape sequences or line breaks (see vae.reporting.printable)."""
    from vae.reporting import printable

    typer.echo(printable(text))


def explain_samples(spec: ModelSpec) -> None:
    """Say where the samples come from, when the model's family says it needs saying (an
    autoencoder has no prior)."""
    from vae.models import family_of

    note = family_of(spec).sampling_note
    if note is not None:
        typer.echo(f"note: {note}")


def write_safely(write: Callable[[], Path], *targets: Path) -> Path:
    """``write()``, with an OSError reported as one line naming the file of ``targets`` that
    could not be written (the one below a file in the way, else the one the error is about)."""
    try:
        return write()
    except OSError as error:
        target = _failed_target(error, targets)
        blocker = file_in_the_way(target)
        reason = f"{blocker} is a file, not a folder" if blocker else error.strerror or error
        raise VAEError(f"cannot write {target}: {reason}") from None


def _failed_target(error: OSError, targets: tuple[Path, ...]) -> Path:
    """Which of several outputs a failed write was about: the error's own file or a temporary
    beside it names it; else the first with a file standing where its folder should be."""
    if error.filename:
        failed = Path(str(error.filename))
        for target in targets:
            if failed == target or (failed.parent == target.parent and target.name in failed.name):
                return target
    for target in targets:
        if file_in_the_way(target) is not None:
            return target
    return targets[0]


def write_json(path: Path, result: dict[str, Any], write: Callable[[Path, str], None]) -> Path:
    """Write ``result`` as JSON with ``write``; NaN or infinity is an error, not invalid JSON."""
    try:
        # allow_nan=False: Python would otherwise write NaN and Infinity, which are not JSON.
        text = json.dumps(result, indent=2, sort_keys=True, allow_nan=False)
    except ValueError:
        raise VAEError(
            f"the results hold a NaN or infinite number: {path} not written (it would not be "
            "valid JSON)"
        ) from None
    write(path, text + "\n")
    return path


# The names tests and older code import (``from vae.cli import _write_safely, _write_json``).
_write_safely = write_safely
_write_json = write_json
