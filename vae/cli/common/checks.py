"""Checks of option values before any work: counts and sizes in range, pictures small enough to
allocate (from the checkpoint's header alone), and picture outputs that replace no input."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from vae.errors import ConfigError
from vae.fileio import PICTURE, check_output_file
from vae.limits import check_picture

if TYPE_CHECKING:
    from vae.model_spec import ModelSpec


def check_positive(**values: int) -> None:
    """Refuse values below 1, naming the option (keyword ``num_samples`` -> --num-samples)."""
    for name, value in values.items():
        if value < 1:
            raise ConfigError(
                f"invalid value for --{name.replace('_', '-')}: {value} (expected at least 1)"
            )


def check_grid_fits(grid_size: int, **counts: int) -> None:
    """A grid row wider than the images it shows would leave the whole picture padded out."""
    for name, count in counts.items():
        if grid_size > count:
            raise ConfigError(
                f"--grid-size {grid_size} is more than --{name.replace('_', '-')} {count}: "
                f"use --grid-size {count} or fewer"
            )


def check_finite_positive(**values: float) -> None:
    """Refuse values that are not positive and finite, or above their bound in vae.limits
    (``temperature``, ``span``), naming the option."""
    from vae import limits

    bounds = {"temperature": limits.MAX_TEMPERATURE, "span": limits.MAX_SPAN}
    for name, value in values.items():
        flag = f"--{name.replace('_', '-')}"
        if not (value > 0 and math.isfinite(value)):
            raise ConfigError(
                f"invalid value for {flag}: {value} (expected a positive, finite number)"
            )
        if name in bounds:
            limits.check_at_most(flag, value, bounds[name])


def check_picture_size(checkpoint: Path, **counts: int) -> ModelSpec:
    """Refuse, from the checkpoint's header alone, pictures too large to allocate; return the
    checkpoint's model spec."""
    from vae.checkpoint import check_model_tensors, read_header

    spec = check_model_tensors(checkpoint, read_header(checkpoint))
    for name, count in counts.items():
        option = " x ".join(f"--{part.replace('_', '-')}" for part in name.split(" x "))
        check_picture(option, count, spec.channels, spec.height, spec.width)
    return spec


def read_paths(*reads: Path | str | None) -> list[Path]:
    """What a command reads, for the output checks: the files and folders given (None skipped)
    and the folder of every ``folder:PATH`` dataset among them. A checkpoint's own ``folder:``
    dataset is not: it is read only when given with --dataset (vae.data.test_images)."""
    from vae.data.registry import FOLDER_PREFIX

    paths: list[Path] = []
    for read in reads:
        if read is None:
            continue
        if isinstance(read, str):
            # An empty folder: path names no folder (it is refused when the data is loaded).
            if read.startswith(FOLDER_PREFIX) and read[len(FOLDER_PREFIX) :].strip():
                paths.append(Path(read[len(FOLDER_PREFIX) :]).expanduser())
            continue
        paths.append(read)
    return paths


def check_pictures(*reads: Path | str | None, **outputs: Path) -> None:
    """Refuse picture outputs named with a suffix vae cannot write, or that would replace an
    input (see :func:`read_paths`) or a file that is not a picture."""
    expanded = read_paths(*reads)
    for option, path in outputs.items():
        check_picture_output(path, f"--{option}", expanded)


def check_picture_output(path: Path, option: str, reads: list[Path]) -> None:
    """Refuse one picture output: a suffix vae cannot write, or a file that must not be
    replaced; ``reads`` as :func:`read_paths` gives them."""
    from vae.images import check_gif_name, picture_format

    check_output_file(path, option, PICTURE, reads)
    if option == "--gif":
        check_gif_name(path)
    else:
        picture_format(path)
