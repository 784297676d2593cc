"""``generate``: samples from a checkpoint's prior, as a grid PNG (a conditional model's drawn
as the classes asked for, or one row per class)."""

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
from vae.errors import ConfigError


@handle_errors
def generate_command(
    ctx: typer.Context,
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
    label: Annotated[
        str | None,
        typer.Option(
            help="A conditional model (cvae): draw every sample as this class (a name or an index)."
        ),
    ] = None,
    labels: Annotated[
        str | None,
        typer.Option(
            help="A conditional model: draw the samples as these classes in turn (comma-separated names or indices)."
        ),
    ] = None,
    per_class: Annotated[
        int | None,
        typer.Option(
            help="A conditional model: this many samples of each class, one row per class, the same latents in every row (instead of --num-samples and --grid-size)."
        ),
    ] = None,
) -> None:
    """Draw samples from a checkpoint's prior and save them as a grid PNG."""
    if info_only:
        print_info(checkpoint, as_json=False)
        return
    check_positive(num_samples=num_samples, grid_size=grid_size)
    if per_class is not None:
        _check_per_class(ctx, per_class, label, labels)
    else:
        check_grid_fits(grid_size, num_samples=num_samples)
    check_seed(seed)
    check_finite_positive(temperature=temperature)
    from vae.classes import check_conditional, labels_for, split_labels
    from vae.images import save_grid, save_labelled_rows
    from vae.limits import check_picture
    from vae.sampling import sample_images

    check_pictures(checkpoint, output=output)
    spec = check_picture_size(checkpoint, num_samples=num_samples)
    if per_class is not None:
        check_conditional(spec, "per_class")
        rows = len(spec.classes)
        check_picture(
            "--per-class x classes", per_class * rows, spec.channels, spec.height, spec.width
        )
        samples = sample_images(checkpoint, per_class, seed, temperature, device, per_class=True)
        names = list(spec.classes)
        path = write_safely(lambda: save_labelled_rows(samples, names, output, per_class), output)
        classes = f"{rows} class" + ("" if rows == 1 else "es")
        say(f"wrote {count(per_class, 'sample')} of each of {classes} to {path}")
        return
    chosen = labels_for(spec, num_samples, label, None if labels is None else split_labels(labels))
    if chosen is None:
        explain_samples(spec)
    samples = sample_images(checkpoint, num_samples, seed, temperature, device, chosen)
    path = write_safely(lambda: save_grid(samples, output, grid_size), output)
    say(f"wrote {count(num_samples, 'sample')} to {path}")


def _check_per_class(
    ctx: typer.Context, per_class: int, label: str | None, labels: str | None
) -> None:
    """--per-class chooses the count, the classes and the layout: the options it replaces are
    refused beside it, not ignored."""
    check_positive(per_class=per_class)
    for name, given in (("label", label), ("labels", labels)):
        if given is not None:
            raise ConfigError(f"--per-class draws every class: leave --{name} out")
    for name in ("num_samples", "grid_size"):
        source = ctx.get_parameter_source(name)
        if source is not None and source.name != "DEFAULT":
            flag = "--" + name.replace("_", "-")
            raise ConfigError(f"--per-class sets the rows and columns: leave {flag} out")
