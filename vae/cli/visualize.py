"""``visualize``: pictures of what a model learned, one subcommand each."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vae.checkpoint import DEFAULT_CHECKPOINT
from vae.cli.common import (
    IMAGES_DIR,
    AliasCommand,
    BinarizeInputOption,
    CheckpointOption,
    DataDirOption,
    DownloadOption,
    ImageSource,
    SeedOption,
    check_finite_positive,
    check_picture_size,
    check_pictures,
    check_positive,
    checkpoint_source,
    handle_errors,
    reads_images,
    say,
    shipped_default,
    write_safely,
)
from vae.config import check_seed
from vae.errors import ConfigError
from vae.fileio import check_output_folder
from vae.shipped import shipped_path

SHIPPED_OOD_REPORTS = (
    Path("pretrained/evaluation_mnist_k100_ood.json"),
    Path("pretrained/fashionmnist/evaluation_k100_ood.json"),
)
PngOption = Annotated[Path, typer.Option("--output", help="PNG to write.")]

visualize_app = typer.Typer(
    name="visualize",
    help="Pictures of what a model learned: interpolate, traverse, latent-map, manifold, curves, gallery.",
    add_completion=False,
    no_args_is_help=True,
)


@visualize_app.command("interpolate", cls=AliasCommand)
@handle_errors
@reads_images(limit=False)
def interpolate_command(
    checkpoint: CheckpointOption = DEFAULT_CHECKPOINT,
    pairs: Annotated[int, typer.Option(help="Pairs of images (drawn with --seed).")] = 6,
    steps: Annotated[int, typer.Option(help="Decoded points per pair, ends included.")] = 10,
    method: Annotated[str, typer.Option(help="slerp (spherical) or lerp (linear).")] = "slerp",
    chain: Annotated[
        str | None,
        typer.Option(help="Walk through one test image of each class in turn, e.g. 0,1,2,...,9."),
    ] = None,
    output: Annotated[Path, typer.Option(help="Grid PNG, one row per pair.")] = IMAGES_DIR
    / "interpolation.png",
    gif: Annotated[
        Path | None, typer.Option(help="Animated GIF (default: --output with .gif).")
    ] = None,
    binarize_input: BinarizeInputOption = False,
    seed: SeedOption = 0,
    *,
    source: ImageSource,
) -> None:
    """Interpolate between posterior means: a grid PNG (originals at both ends) and a GIF."""
    from vae.config import parse_int_list
    from vae.latent import INTERPOLATIONS
    from vae.visualize import interpolate

    check_positive(pairs=pairs)
    check_seed(seed)
    if method not in INTERPOLATIONS:
        raise ConfigError(f"invalid value for --method: {method!r} (expected slerp or lerp)")
    classes = parse_int_list(chain, "chain") if chain is not None else None
    gif_path = gif if gif is not None else output.with_suffix(".gif")
    check_pictures(checkpoint, source.input_path, source.dataset, output=output, gif=gif_path)
    check_picture_size(checkpoint, **{"pairs x steps": pairs * steps})
    inputs = source.load(checkpoint, binarize_input)
    options = {"pairs": pairs, "steps": steps, "method": method, "chain": classes, "seed": seed}
    result = write_safely(
        lambda: interpolate(inputs, output, gif_path, **options), output, gif_path
    )
    say(f"wrote {result.grid_path} and {result.gif_path} ({result.frames} frames)")


@visualize_app.command("traverse", cls=AliasCommand)
@handle_errors
@reads_images()
def traverse_command(
    checkpoint: CheckpointOption = DEFAULT_CHECKPOINT,
    index: Annotated[int, typer.Option(help="Base image (index into the test images).")] = 0,
    steps: Annotated[int, typer.Option(help="Columns per row.")] = 11,
    span: Annotated[float, typer.Option(help="Sweep +-span standard deviations.")] = 3.0,
    max_dims: Annotated[int | None, typer.Option(help="Show at most this many rows.")] = None,
    include_inactive: Annotated[
        bool, typer.Option(help="Also show inactive dimensions (labelled) instead of skipping.")
    ] = False,
    output: PngOption = IMAGES_DIR / "traversal.png",
    *,
    source: ImageSource,
) -> None:
    """Latent traversals: one row per dimension, most informative (highest KL) first."""
    from vae.visualize import traverse

    if max_dims is not None:
        check_positive(max_dims=max_dims)
    check_pictures(checkpoint, source.input_path, source.dataset, output=output)
    check_finite_positive(span=span)
    check_picture_size(checkpoint, steps=steps)
    inputs = source.load(checkpoint)
    options = {"index": index, "steps": steps, "span": span, "max_dims": max_dims}
    result = write_safely(
        lambda: traverse(inputs, output, include_inactive=include_inactive, **options), output
    )
    skipped = (
        f"; skipped inactive {', '.join(f'z{d}' for d in result.skipped)}" if result.skipped else ""
    )
    say(f"wrote {result.path}: rows {', '.join(f'z{d}' for d in result.dims)}{skipped}")


@visualize_app.command("latent-map", cls=AliasCommand)
@handle_errors
@reads_images()
def latent_map_command(
    checkpoint: CheckpointOption = DEFAULT_CHECKPOINT,
    compare: Annotated[
        Path | None,
        typer.Option(
            help="A second checkpoint (a file or hf://...; e.g. an autoencoder) drawn side by "
            "side.",
            parser=str,
            callback=checkpoint_source,
        ),
    ] = None,
    output: PngOption = IMAGES_DIR / "latent_map.png",
    *,
    source: ImageSource,
) -> None:
    """Posterior means in 2-D (PCA when the latent is larger), coloured by label."""
    from vae.visualize import latent_map

    check_pictures(checkpoint, source.input_path, source.dataset, compare, output=output)
    panels = [source.load(checkpoint)]
    if compare is not None:
        panels.append(source.load(compare))
    path = write_safely(lambda: latent_map(panels, output), output)
    say(f"wrote {path}")


@visualize_app.command("manifold", cls=AliasCommand)
@handle_errors
@reads_images()
def manifold_command(
    checkpoint: CheckpointOption = DEFAULT_CHECKPOINT,
    size: Annotated[int, typer.Option(help="Images per side of the mosaic.")] = 20,
    span: Annotated[float, typer.Option(help="Cover +-span standard deviations.")] = 2.0,
    output: PngOption = IMAGES_DIR / "manifold.png",
    *,
    source: ImageSource,
) -> None:
    """Decode a regular grid over the 2-D latent (or its two leading PCA directions)."""
    from vae.visualize import manifold

    check_pictures(checkpoint, source.input_path, source.dataset, output=output)
    check_finite_positive(span=span)
    check_picture_size(checkpoint, **{"size x size": size * size})
    inputs = source.load(checkpoint)
    options = {"size": size, "span": span, "label": source.label}
    path = write_safely(lambda: manifold(inputs, output, **options), output)
    say(f"wrote {path}")


@visualize_app.command("curves", cls=AliasCommand)
@handle_errors
def curves_command(
    run: Annotated[Path, typer.Argument(help="A run folder (or its metrics.jsonl).")],
    output: Annotated[
        Path | None, typer.Option(help="PNG to write (default: RUN/curves.png).")
    ] = None,
) -> None:
    """Redraw a run's training curves (loss, reconstruction, KL, beta) from metrics.jsonl."""
    from vae.run_folder import METRICS_NAME
    from vae.visualize import curves

    if output is not None:  # the command reads the run's metrics, not the whole folder
        check_pictures(run / METRICS_NAME if run.is_dir() else run, output=output)
    path = write_safely(lambda: curves(run, output), output or run)
    say(f"wrote {path}")


@visualize_app.command("gallery", cls=AliasCommand)
@handle_errors
def gallery_command(
    checkpoint: CheckpointOption = DEFAULT_CHECKPOINT,
    autoencoder: Annotated[
        Path | None,
        typer.Option(
            help="Autoencoder checkpoint for the AE vs VAE pictures (a file or hf://...).",
            parser=str,
            callback=checkpoint_source,
        ),
    ] = Path("pretrained/ae/checkpoint_best.safetensors"),
    metrics: Annotated[
        Path | None,
        typer.Option(
            help="metrics.jsonl of the checkpoint's training run.", callback=shipped_default
        ),
    ] = Path("pretrained/metrics.jsonl"),
    ood_report: Annotated[
        list[Path] | None,
        typer.Option(
            help="An outlier evaluation JSON (with its _scores.csv beside it) whose histograms "
            "are redrawn; repeat for several (default: the shipped ones)."
        ),
    ] = None,
    output_dir: Annotated[Path, typer.Option(help="Folder for the pictures.")] = IMAGES_DIR,
    data_dir: DataDirOption = None,
    download: DownloadOption = True,
    seed: SeedOption = 0,
) -> None:
    """Regenerate every README picture from the shipped checkpoints and evaluations."""
    from vae.visualize import gallery

    check_seed(seed)
    check_output_folder(output_dir, "--output-dir")
    for optional in (autoencoder, metrics):
        if optional is not None and not optional.exists():
            raise ConfigError(f"{optional} not found (pass another path)")
    options = {"autoencoder": autoencoder, "metrics": metrics, "seed": seed}
    options |= {"data_dir": data_dir, "download": download, "ood_reports": _ood_reports(ood_report)}
    paths = write_safely(lambda: gallery(checkpoint, output_dir, **options), output_dir)
    for path in paths:
        say(f"wrote {path}")


def _ood_reports(given: list[Path] | None) -> list[Path]:
    """The outlier evaluations to redraw: those given, else the shipped ones that exist (from
    the current folder or the package's project folder, as vae.shipped finds them)."""
    if given is None:
        return [path for path in map(shipped_path, SHIPPED_OOD_REPORTS) if path.is_file()]
    for report in given:
        if not report.is_file():
            raise ConfigError(f"--ood-report {report} not found (pass another path)")
    return given
