"""``inference``: samples and reconstructions from a checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from vae.checkpoint import DEFAULT_CHECKPOINT
from vae.cli.common import (
    IMAGES_DIR,
    BinarizeInputOption,
    CheckpointOption,
    DataDirOption,
    DatasetOption,
    DeviceOption,
    DownloadOption,
    GridSizeOption,
    ImageSource,
    InvertOption,
    SeedOption,
    ShownClassOption,
    check_grid_fits,
    check_picture_size,
    check_positive,
    count,
    explain_samples,
    handle_errors,
    read_paths,
    say,
    write_safely,
)
from vae.cli.info import print_info
from vae.config import check_seed
from vae.errors import ConfigError, DataError
from vae.fileio import PICTURE, check_output_folder, check_replaceable

MODES = ("sample", "reconstruct", "both")


@handle_errors
def inference_command(
    checkpoint: CheckpointOption = DEFAULT_CHECKPOINT,
    mode: Annotated[str, typer.Option(help="sample, reconstruct or both.")] = "both",
    input_path: Annotated[
        Path | None,
        typer.Option(
            "--input",
            help="Image file or folder to reconstruct (default: test images of the checkpoint's dataset).",
        ),
    ] = None,
    dataset: DatasetOption = None,
    num_images: Annotated[int, typer.Option(help="Images to reconstruct.")] = 32,
    num_samples: Annotated[int, typer.Option(help="Images to sample.")] = 64,
    grid_size: GridSizeOption = 8,
    output_dir: Annotated[
        Path, typer.Option(help="Folder for reconstructions.png and samples.png.")
    ] = IMAGES_DIR,
    data_dir: DataDirOption = None,
    download: DownloadOption = True,
    seed: SeedOption = 0,
    device: DeviceOption = "cpu",
    binarize_input: BinarizeInputOption = False,
    invert: InvertOption = False,
    label: ShownClassOption = None,
    info_only: Annotated[
        bool, typer.Option("--info-only", hidden=True, help="Describe the checkpoint and stop.")
    ] = False,
) -> None:
    """Sample from a checkpoint and/or reconstruct images (originals above reconstructions)."""
    if info_only:  # the seed projects' spelling of `info CHECKPOINT`
        print_info(checkpoint, as_json=False)
        return
    _check_options(mode, num_images, num_samples, grid_size, seed)
    check_output_folder(output_dir, "--output-dir")
    reads = read_paths(checkpoint, input_path, dataset)
    for name in ("reconstructions.png", "samples.png"):
        check_replaceable(output_dir / name, PICTURE, reads)
    check_picture_size(checkpoint, num_samples=num_samples, num_images=num_images)
    inputs, missing_data = None, None
    if mode in ("reconstruct", "both"):
        try:
            images = ImageSource(
                input_path=input_path,
                dataset=dataset,
                data_dir=data_dir,
                download=download,
                limit=num_images,
                device=device,
                invert=invert,
                label=label,
            )
            inputs = images.load(checkpoint, binarize_input)
        except DataError as error:
            if mode != "both" or input_path is not None or dataset is not None:
                raise
            missing_data = error  # sampling needs no data: the samples are still written
    if mode in ("sample", "both"):
        _write_samples(checkpoint, inputs, num_samples, seed, device, output_dir, grid_size, label)
    if missing_data is not None:
        missing_data.prefix("no reconstructions: ")  # the settings it names stay flags
        raise missing_data
    if inputs is not None:
        _write_reconstructions(inputs, output_dir, grid_size)


def _check_options(mode: str, num_images: int, num_samples: int, grid_size: int, seed: int) -> None:
    if mode not in MODES:
        raise ConfigError(
            f"invalid value for --mode: {mode!r} (expected sample, reconstruct or both)"
        )
    check_positive(num_images=num_images, num_samples=num_samples, grid_size=grid_size)
    check_seed(seed)
    if mode in ("sample", "both"):
        check_grid_fits(grid_size, num_samples=num_samples)


def _write_samples(
    checkpoint: Path,
    inputs: Any,
    num_samples: int,
    seed: int,
    device: str,
    output_dir: Path,
    grid_size: int,
    label: str | None,
) -> None:
    from vae.checkpoint import load_model
    from vae.classes import labels_for
    from vae.device import resolve_device
    from vae.images import save_grid
    from vae.sampling import sample_from_model

    model = inputs.model if inputs is not None else load_model(checkpoint, resolve_device(device))
    # A conditional model's samples are drawn as --label when it is given.
    chosen = labels_for(model.spec, num_samples, label)
    if chosen is None:
        explain_samples(model.spec)
    samples = sample_from_model(model, num_samples, seed, labels=chosen)
    target = output_dir / "samples.png"
    write_safely(lambda: save_grid(samples, target, grid_size), target)
    say(f"wrote {count(num_samples, 'sample')} to {target}")


def _write_reconstructions(inputs: Any, output_dir: Path, grid_size: int) -> None:
    from vae.images import save_reconstruction_grid

    model = inputs.model
    originals = inputs.images.to(next(model.parameters()).device)
    # A conditional model's as each image's own class (ignored by any other model).
    reconstructions = model.reconstruct(originals, inputs.condition)
    target = output_dir / "reconstructions.png"
    write_safely(
        lambda: save_reconstruction_grid(originals, reconstructions, target, grid_size), target
    )
    say(f"wrote {count(originals.shape[0], 'reconstruction')} to {target}")
