"""``generate``: samples from a checkpoint's prior, as a grid PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vae.checkpoint import DEFAULT_CHECKPOINT
from vae.cli.common import (
    IMAGES_DIR,
    CheckpointOption,
    DeviceOption,
    GridSizeOption,
    SeedOption,
    check_finite_positive,
    check_grid_fits,
    check_picture_size,
    check_pictures,
    check_positive,
    count,
    explain_samples,
    handle_errors,
    say,
    write_safely,
)
from vae.cli.info import print_info
from vae.config import check_seed


@handle_errors
def generate_command(
    checkpoint: CheckpointOption = DEFAULT_CHECKPOINT,
    num_samples: Annotated[int, typer.Option(help="Images to generate.")] = 64,
    grid_size: GridSizeOption = 8,
    output: Annotated[Path, typer.Option(help="PNG file to write.")] = IMAGES_DIR / "samples.png",
    seed: SeedOption = 0,
    temperature: Annotated[
        float, typer.Option(help="Scale of the prior's standard deviation (1 = the true prior).")
    ] = 1.0,
    info_only: Annotated[
        bool, typer.Option(help="Describe the checkpoint and exit without generating.")
    ] = False,
    device: DeviceOption = "cpu",
) -> None:
    """Draw samples from a checkpoint's prior and save them as a grid PNG."""
    if info_only:
        print_info(checkpoint, as_json=False)
        return
    check_positive(num_samples=num_samples, grid_size=grid_size)
    check_grid_fits(grid_size, num_samples=num_samples)
    check_seed(seed)
    check_finite_positive(temperature=temperature)
    from vae.images import save_grid
    from vae.sampling import sample_images

    check_pictures(checkpoint, output=output)
    spec = check_picture_size(checkpoint, num_samples=num_samples)
    explain_samples(spec)
    samples = sample_images(checkpoint, num_samples, seed, temperature, device)
    path = write_safely(lambda: save_grid(samples, output, grid_size), output)
    say(f"wrote {count(num_samples, 'sample')} to {path}")
