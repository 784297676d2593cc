"""Errors that the command line reports as one clear line instead of a traceback."""


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


class VAEError(Exception):
    """An expected failure at run time (exit code 1)."""

    exit_code = 1


class ConfigError(VAEError):
    """A bad option, option value or configuration file (exit code 2: bad usage)."""

    exit_code = 2


class DataError(VAEError):
    """A dataset that cannot be found, downloaded or read."""


class CheckpointError(VAEError):
    """A checkpoint that cannot be read: missing, not safetensors, truncated, foreign, too new."""


class TrainingDiverged(VAEError):
    """The loss became NaN or infinite; the last good checkpoints are kept."""


class TrainingInterrupted(VAEError):
    """Training stopped on Ctrl-C after saving the last checkpoint (exit code 130)."""

    exit_code = 130
