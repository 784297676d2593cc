"""Errors that the command line reports as one clear line instead of a traceback."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def shown(value: Any) -> str:
    """``value`` for an error message, cut short: a hostile file may hold a million entries."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def first_line(error: BaseException) -> str:
    """The first line of ``error``'s message (libraries often add pages of detail below it), or
    its type's name when it has no message."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def all_lines(error: BaseException, limit: int = 600) -> str:
    """Every line of ``error``'s message joined into one (for messages whose reason is below a
    heading line, such as torchvision's download errors), cut at ``limit`` characters."""
    text = " ".join(line.strip() for line in str(error).strip().splitlines() if line.strip())
    text = text or type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Setting(str):
    """A setting's name inside an error message (e.g. ``latent_dim``): the library's message
    shows the name, the command line shows the flag it is given with (``--latent-dim``)."""


def listed(names: list[str]) -> list[str]:
    """Setting names joined by commas, as message parts."""
    parts: list[str] = []
    for index, name in enumerate(names):
        parts += [", "] * bool(index) + [Setting(name)]
    return parts


class VAEError(Exception):
    """An expected failure at run time (exit code 1).

    The message is built from ``parts``: plain text and Setting names. ``str(error)`` speaks of
    the settings, as a Python user wrote them; ``render(flag_of)`` spells them as flags.
    """

    exit_code = 1

    def __init__(self, *parts: str) -> None:
        self.parts = parts
        super().__init__(self.render(str))

    @property
    def setting(self) -> str | None:
        """The first setting the message names (the one at fault), or None."""
        return next((str(part) for part in self.parts if isinstance(part, Setting)), None)

    def render(self, spell: Callable[[str], str]) -> str:
        """The message with each setting's name replaced by ``spell(name)``."""
        return "".join(spell(str(p)) if isinstance(p, Setting) else p for p in self.parts)

    def prefix(self, text: str) -> None:
        """Put ``text`` before the message (e.g. which process failed)."""
        self.parts = (text, *self.parts)
        self.args = (self.render(str),)


class ConfigError(VAEError):
    """A bad option, option value or configuration file (exit code 2: bad usage)."""

    exit_code = 2


class DataError(VAEError):
    """A dataset that cannot be found, downloaded or read."""


class CheckpointError(VAEError):
    """A checkpoint that cannot be read: missing, not safetensors, truncated, foreign, too new."""


class TrainingDiverged(VAEError):
    """The loss became NaN or infinite; the last good checkpoints are kept."""


class Interrupted(VAEError):
    """A command stopped on Ctrl-C (or SIGTERM) after saving what lets it continue; its message
    says where (exit code 130, or 128 + the signal's number)."""

    exit_code = 130


class TrainingInterrupted(Interrupted):
    """Training stopped on Ctrl-C after saving the last checkpoint (exit code 130)."""
