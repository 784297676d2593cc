"""Command line: parse options, call the library, turn expected errors into one line + exit code.

Torch is imported inside the commands that need it, never at module level, so that ``info``
starts fast.
"""

from __future__ import annotations

import functools
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from typer.core import TyperCommand

from vae import __version__, interrupts, limits
from vae.aliases import rewrite_aliases
from vae.checkpoint import DEFAULT_CHECKPOINT
from vae.config import (
    ARCHITECTURES,
    BETA_SCHEDULES,
    BINARIZATIONS,
    DATASETS,
    DEVICES,
    LR_SCHEDULES,
    OPTIMIZERS,
    PRIORS,
    TRACKERS,
    RunConfig,
    check_seed,
    load_config_file,
)
from vae.errors import ConfigError, DataError, TrainingInterrupted, VAEError
from vae.fileio import (
    EVALUATION,
    OUTLIER_SCORES,
    PICTURE,
    atomic_write_text,
    check_output_file,
    check_output_folder,
    check_replaceable,
    file_in_the_way,
)
from vae.limits import check_at_most, check_picture
from vae.reporting import print_error

F = TypeVar("F", bound=Callable[..., Any])


class AliasCommand(TyperCommand):
    """A command that also accepts the seed projects' flag spellings (see vae.aliases)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        known = [name for param in self.params for name in getattr(param, "opts", [])]
        known += [name for param in self.params for name in getattr(param, "secondary_opts", [])]
        return super().parse_args(ctx, rewrite_aliases(self.name or "", args, known))


_DEFAULT = RunConfig()
IMAGES_DIR = Path("images")
SHIPPED_OOD_REPORTS = (
    Path("pretrained/evaluation_mnist_k100_ood.json"),
    Path("pretrained/fashionmnist/evaluation_k100_ood.json"),
)


def handle_errors(function: F) -> F:
    """Expected failures become 'error: ...' on stderr and the error's exit code."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except TrainingInterrupted as error:
            # A requested stop is not an error; its message already says what happened. The
            # code says which signal asked: 130 for Ctrl-C, 143 for SIGTERM (vae.interrupts).
            if getattr(error, "quiet", not _is_main_process()):
                raise typer.Exit(interrupts.interrupt_exit_code()) from None
            raise typer.Exit(interrupts.report_interrupt(str(error))) from None
        except VAEError as error:
            # Of several torchrun processes failing together, one (rank 0 by default) speaks.
            if not getattr(error, "quiet", not _is_main_process()):
                print_error(str(error))
            raise typer.Exit(error.exit_code) from None
        except OSError as error:  # disk full, permission denied, ...: say which file
            where = f": {error.filename}" if error.filename else ""
            print_error(f"{error.strerror or error}{where}")
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            raise typer.Exit(interrupts.report_interrupt()) from None

    return wrapper  # type: ignore[return-value]


def _is_main_process() -> bool:
    import os

    from vae.distributed import launched_by_torchrun

    try:
        distributed = launched_by_torchrun()
    except ConfigError:  # a malformed WORLD_SIZE: that error is being reported, by this process
        return True
    return not distributed or os.environ.get("RANK", "0") in ("", "0")


def _choices(values: tuple[str, ...]) -> str:
    return ", ".join(values)


def _joined(values: list[int]) -> str:
    return ",".join(str(v) for v in values)


# --- train ---------------------------------------------------------------------------------


@handle_errors
def train_command(
    ctx: typer.Context,
    run_name: Annotated[
        str | None,
        typer.Argument(help="Run folder name under --runs-dir (default: dataset-arch-timestamp)."),
    ] = None,
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config", help="YAML file of options (a run's config.yaml); flags override it."
        ),
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(help="Continue the run in this folder exactly where it stopped."),
    ] = None,
    dataset: Annotated[
        str, typer.Option(help=f"{_choices(DATASETS)}, or folder:PATH for a folder of images.")
    ] = _DEFAULT.data.dataset,
    data_dir: Annotated[
        str | None,
        typer.Option(help="Dataset root (default: $VAE_DATA_DIR, else ./data)."),
    ] = None,
    download: Annotated[
        bool, typer.Option("--download/--no-download", help="Download missing named datasets.")
    ] = _DEFAULT.data.download,
    image_size: Annotated[
        int | None,
        typer.Option(
            help="Resize images to this many pixels a side (default: the dataset's own; 64 for folders)."
        ),
    ] = None,
    channels: Annotated[
        int | None, typer.Option(help="1 (grayscale) or 3 (RGB); default: the dataset's own.")
    ] = None,
    binarize: Annotated[
        str, typer.Option(help=f"For bce: {_choices(BINARIZATIONS)} (dynamic: fresh draw per use).")
    ] = _DEFAULT.data.binarize,
    val_size: Annotated[
        int | None,
        typer.Option(
            help="Validation images carved from the training set with a fixed seed (default: min(5000, 10%))."
        ),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(help="Train on the first N training images only (smoke runs).")
    ] = None,
    architecture: Annotated[
        str, typer.Option(help=_choices(ARCHITECTURES))
    ] = _DEFAULT.model.architecture,
    model_type: Annotated[
        str,
        typer.Option(
            "--model", help="vae, or ae: a plain autoencoder with the same layers, for comparison."
        ),
    ] = _DEFAULT.model.model_type,
    latent_dim: Annotated[int, typer.Option(help="Latent dimensions.")] = _DEFAULT.model.latent_dim,
    hidden_sizes: Annotated[
        str,
        typer.Option(
            help="Comma-separated dense layer sizes (mlp: all layers; conv: after the convolutions)."
        ),
    ] = _joined(_DEFAULT.model.hidden_sizes),
    conv_widths: Annotated[
        str, typer.Option(help="Comma-separated channel widths of the stride-2 conv layers.")
    ] = _joined(_DEFAULT.model.conv_widths),
    decoder_hidden_sizes: Annotated[
        str | None,
        typer.Option(help="Dense layer sizes of the decoder (default: mirror --hidden-sizes)."),
    ] = None,
    decoder_conv_widths: Annotated[
        str | None,
        typer.Option(
            help="Conv widths of the decoder, encoder order (default: mirror --conv-widths)."
        ),
    ] = None,
    prior: Annotated[
        str,
        typer.Option(
            help=f"{_choices(PRIORS)}: N(0, I), or a mixture of Gaussians learned with the model "
            "(better likelihoods)."
        ),
    ] = _DEFAULT.model.prior,
    prior_components: Annotated[
        int, typer.Option(help="Components of the mog prior.")
    ] = _DEFAULT.model.prior_components,
    likelihood: Annotated[
        str,
        typer.Option(
            "--likelihood",
            "--loss",
            help="bce (Bernoulli), mse (Gaussian: fixed or learned sigma), or the perceptual "
            "ssim / ms-ssim (no likelihood: evaluate refuses them).",
        ),
    ] = _DEFAULT.objective.likelihood,
    gaussian_sigma: Annotated[
        float,
        typer.Option(
            help="Standard deviation of the Gaussian likelihood (mse); with --learn-sigma its start."
        ),
    ] = _DEFAULT.objective.gaussian_sigma,
    learn_sigma: Annotated[
        bool,
        typer.Option(
            "--learn-sigma/--fixed-sigma",
            help="mse: learn one sigma per channel (colour data) instead of keeping it fixed.",
        ),
    ] = _DEFAULT.objective.learn_sigma,
    beta: Annotated[float, typer.Option(help="KL weight after warm-up.")] = _DEFAULT.objective.beta,
    beta_schedule: Annotated[
        str, typer.Option(help=_choices(BETA_SCHEDULES))
    ] = _DEFAULT.objective.beta_schedule,
    beta_warmup: Annotated[
        str, typer.Option(help="Warm-up length: epochs (10) or steps (2000steps).")
    ] = _DEFAULT.objective.beta_warmup,
    beta_cycles: Annotated[
        int, typer.Option(help="Cycles within the warm-up (cyclical schedule).")
    ] = _DEFAULT.objective.beta_cycles,
    beta_ramp_ratio: Annotated[
        float, typer.Option(help="Fraction of each cycle spent ramping (cyclical schedule).")
    ] = _DEFAULT.objective.beta_ramp_ratio,
    free_bits: Annotated[
        float,
        typer.Option(help="Minimum KL per latent dimension in the training loss (nats; 0 = off)."),
    ] = _DEFAULT.objective.free_bits,
    epochs: Annotated[int, typer.Option(help="Epochs to train.")] = _DEFAULT.train.epochs,
    batch_size: Annotated[int, typer.Option(help="Images per batch.")] = _DEFAULT.train.batch_size,
    optimizer: Annotated[str, typer.Option(help=_choices(OPTIMIZERS))] = _DEFAULT.train.optimizer,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = _DEFAULT.train.lr,
    weight_decay: Annotated[
        float, typer.Option(help="Weight decay.")
    ] = _DEFAULT.train.weight_decay,
    grad_clip: Annotated[
        float, typer.Option(help="Clip the gradient norm to this value (0 = off).")
    ] = _DEFAULT.train.grad_clip,
    lr_schedule: Annotated[
        str,
        typer.Option(help=f"{_choices(LR_SCHEDULES)} (cosine: per epoch; plateau: on validation)."),
    ] = _DEFAULT.train.lr_schedule,
    seed: Annotated[int, typer.Option(help="Random seed.")] = _DEFAULT.train.seed,
    device: Annotated[
        str, typer.Option(help=f"{_choices(DEVICES)} (auto: an accelerator when present).")
    ] = _DEFAULT.train.device,
    bf16: Annotated[
        bool,
        typer.Option(
            "--bf16/--no-bf16",
            help="bf16 autocast where the hardware has native bf16 (GPUs, AVX512-BF16/AMX CPUs); loss in float32.",
        ),
    ] = _DEFAULT.train.bf16,
    compile: Annotated[
        bool,
        typer.Option(
            "--compile/--no-compile",
            help="torch.compile the training forward pass (worth it on long GPU runs; compiling "
            "takes seconds to a minute, and a C++ compiler on CPUs).",
        ),
    ] = _DEFAULT.train.compile,
    sample_every: Annotated[
        int, typer.Option(help="Write sample and reconstruction grids every N epochs (0 = never).")
    ] = _DEFAULT.train.sample_every,
    runs_dir: Annotated[
        str, typer.Option(help="Folder that holds run folders.")
    ] = _DEFAULT.train.runs_dir,
    tracker: Annotated[
        str,
        typer.Option(
            help=f"{_choices(TRACKERS)}: also record scalars, grids, config and final metrics "
            "(optional extras: poetry install --extras tensorboard / wandb; W&B runs offline "
            "unless WANDB_MODE says otherwise)."
        ),
    ] = _DEFAULT.train.tracker,
    quiet: Annotated[bool, typer.Option(help="No progress bar or per-epoch tables.")] = False,
) -> None:
    """Train a VAE; writes runs/<RUN_NAME>/ with config, checkpoints, metrics and grids."""
    from vae.distributed import launched_by_torchrun
    from vae.interrupts import graceful_interrupt

    # Installed before torch is imported: a Ctrl-C during start-up then stops cleanly too.
    with graceful_interrupt(distributed=launched_by_torchrun()) as stop_requested:
        _train(ctx, run_name, config_file, resume, quiet, stop_requested)


def _train(
    ctx: typer.Context,
    run_name: str | None,
    config_file: Path | None,
    resume: Path | None,
    quiet: bool,
    stop_requested: Callable[[], bool],
) -> None:
    from vae.reporting import RichReporter
    from vae.training import default_run_name, prepare_resume, train

    control = {"run_name", "config_file", "resume", "quiet", "ctx"}
    given = {
        name: value
        for name, value in ctx.params.items()
        if name not in control and ctx.get_parameter_source(name).name != "DEFAULT"
    }
    if resume is not None:
        if run_name is not None or config_file is not None:
            raise ConfigError(
                "--resume takes the run folder; do not also give RUN_NAME or --config"
            )
        config = prepare_resume(resume, given)
        run_dir = resume
    else:
        if run_name is not None and (
            run_name in ("", ".", "..") or any(c in run_name for c in "/\\")
        ):
            raise ConfigError(
                f"invalid RUN_NAME {run_name!r}: a folder name, without path separators"
            )
        config = load_config_file(config_file) if config_file is not None else RunConfig()
        config.override(given).validate()
        if config.model.model_type == "ae" and given.get("prior", "standard") != "standard":
            raise ConfigError(
                f"invalid value for --prior: {given['prior']!r} (an autoencoder has no prior: "
                "leave --prior out with --model ae)"
            )
        run_dir = Path(config.train.runs_dir) / (run_name or default_run_name(config))
    result = train(
        config,
        run_dir,
        resume=resume is not None,
        reporter=RichReporter(quiet=quiet),
        stop_requested=stop_requested,
    )
    if _is_main_process():
        typer.echo(f"best checkpoint: {result.best_path}")
        typer.echo(f"last checkpoint: {result.last_path}")


# --- generate ------------------------------------------------------------------------------


CheckpointOption = Annotated[Path, typer.Option(help="A vae checkpoint (.safetensors).")]
SeedOption = Annotated[int, typer.Option(help="Random seed: the same seed gives the same PNG.")]
DeviceOption = Annotated[str, typer.Option(help=f"{_choices(DEVICES)}.")]
BinarizeInputOption = Annotated[
    bool,
    typer.Option(
        help="Bernoulli models: show and encode the binarized originals the likelihood scores, "
        "instead of the grey images."
    ),
]


@handle_errors
def generate_command(
    checkpoint: CheckpointOption = DEFAULT_CHECKPOINT,
    num_samples: Annotated[int, typer.Option(help="Images to generate.")] = 64,
    grid_size: Annotated[int, typer.Option(help="Images per grid row.")] = 8,
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
        _print_info(checkpoint, as_json=False)
        return
    _check_positive(num_samples=num_samples, grid_size=grid_size)
    _check_grid_fits(grid_size, num_samples=num_samples)
    check_seed(seed)
    _check_finite_positive(temperature=temperature)
    from vae.images import save_grid

    _check_pictures(checkpoint, output=output)
    _check_picture(checkpoint, num_samples=num_samples)

    samples = _sample_without_torch(checkpoint, num_samples, seed, temperature, device)
    if samples is None:
        import torch

        from vae.checkpoint import load_model
        from vae.device import resolve_device

        model = load_model(checkpoint, resolve_device(device))
        _explain_autoencoder_samples(model.is_autoencoder)
        samples = model.sample(num_samples, torch.Generator().manual_seed(seed), temperature)
    path = _write_safely(lambda: save_grid(samples, output, grid_size), output)
    typer.echo(f"wrote {_count(num_samples, 'sample')} to {path}")


# --- inference -----------------------------------------------------------------------------


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
    num_images: Annotated[int, typer.Option(help="Images to reconstruct.")] = 32,
    num_samples: Annotated[int, typer.Option(help="Images to sample.")] = 64,
    grid_size: Annotated[int, typer.Option(help="Images per grid row.")] = 8,
    output_dir: Annotated[
        Path, typer.Option(help="Folder for reconstructions.png and samples.png.")
    ] = IMAGES_DIR,
    data_dir: Annotated[
        str | None, typer.Option(help="Dataset root (default: $VAE_DATA_DIR, else ./data).")
    ] = None,
    download: Annotated[bool, typer.Option("--download/--no-download")] = True,
    seed: SeedOption = 0,
    device: DeviceOption = "cpu",
    binarize_input: BinarizeInputOption = False,
    info_only: Annotated[
        bool, typer.Option("--info-only", hidden=True, help="Describe the checkpoint and stop.")
    ] = False,
) -> None:
    """Sample from a checkpoint and/or reconstruct images (originals above reconstructions)."""
    if info_only:  # the seed projects' spelling of `info CHECKPOINT`
        _print_info(checkpoint, as_json=False)
        return
    if mode not in ("sample", "reconstruct", "both"):
        raise ConfigError(
            f"invalid value for --mode: {mode!r} (expected sample, reconstruct or both)"
        )
    _check_positive(num_images=num_images, num_samples=num_samples, grid_size=grid_size)
    check_seed(seed)
    if mode in ("sample", "both"):
        _check_grid_fits(grid_size, num_samples=num_samples)
    check_output_folder(output_dir, "--output-dir")
    reads = [checkpoint] + ([input_path] if input_path is not None else [])
    for name in ("reconstructions.png", "samples.png"):
        check_replaceable(output_dir / name, PICTURE, reads)
    _check_picture(checkpoint, num_samples=num_samples, num_images=num_images)
    import torch

    from vae.checkpoint import load_model
    from vae.device import resolve_device
    from vae.images import save_grid, save_reconstruction_grid

    inputs, missing_data = None, None
    if mode in ("reconstruct", "both"):
        from vae.visualize import load_inputs

        try:
            inputs = load_inputs(
                checkpoint,
                input_path=input_path,
                data_dir=data_dir,
                download=download,
                limit=num_images,
                device=device,
                binarize=binarize_input,
            )
        except DataError as error:
            if mode != "both" or input_path is not None:
                raise
            missing_data = error  # sampling needs no data: the samples are still written
    if mode in ("sample", "both"):
        model = (
            inputs.model if inputs is not None else load_model(checkpoint, resolve_device(device))
        )
        _explain_autoencoder_samples(model.is_autoencoder)
        samples = model.sample(num_samples, torch.Generator().manual_seed(seed))
        target = output_dir / "samples.png"
        _write_safely(lambda: save_grid(samples, target, grid_size), target)
        typer.echo(f"wrote {_count(num_samples, 'sample')} to {target}")
    if missing_data is not None:
        raise DataError(f"no reconstructions: {missing_data}")
    if inputs is not None:
        model = inputs.model
        originals = inputs.images.to(next(model.parameters()).device)
        reconstructions = model.reconstruct(originals)
        target = output_dir / "reconstructions.png"
        _write_safely(
            lambda: save_reconstruction_grid(originals, reconstructions, target, grid_size), target
        )
        typer.echo(f"wrote {_count(originals.shape[0], 'reconstruction')} to {target}")


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def _sample_without_torch(
    checkpoint: Path, num_samples: int, seed: int, temperature: float, device: str
) -> Any:
    """The samples ``model.sample`` would give, decoded with NumPy (``import torch`` takes longer
    than the whole job on a small CPU); None where that path does not apply (another device, or
    fewer than 16 latent values, which torch draws with a different algorithm)."""
    if device != "cpu":
        return None
    from vae import numpy_sampling

    spec, weights = numpy_sampling.load_decoder(checkpoint)
    if not numpy_sampling.can_sample(spec, num_samples):
        return None
    _explain_autoencoder_samples(spec.model_type == "ae")
    return numpy_sampling.sample(spec, weights, num_samples, seed, temperature)


def _explain_autoencoder_samples(is_autoencoder: bool) -> None:
    if is_autoencoder:
        typer.echo(
            "note: this checkpoint is a plain autoencoder, which has no prior to sample from; "
            "these samples are decoded from a Gaussian fitted to its training codes"
        )


# --- evaluate ------------------------------------------------------------------------------


@handle_errors
def evaluate_command(
    checkpoint: CheckpointOption = DEFAULT_CHECKPOINT,
    k: Annotated[
        int, typer.Option("--k", help="Importance samples per image (5000 for paper comparisons).")
    ] = 1000,
    repeats: Annotated[int, typer.Option(help="Evaluation seeds; reports mean and std.")] = 1,
    binarize_test: Annotated[
        str | None,
        typer.Option(
            help="static (fixed seed, default for Bernoulli models), dynamic (redrawn per repeat) or none."
        ),
    ] = None,
    dataset: Annotated[
        str | None,
        typer.Option(help="Evaluate on this dataset's test split instead of the model's own."),
    ] = None,
    input_path: Annotated[
        Path | None, typer.Option("--input", help="Evaluate on an image file or folder instead.")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Use only the first N images.")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per evaluation batch.")] = 100,
    ood_dataset: Annotated[
        str | None,
        typer.Option(
            help="Out-of-distribution dataset (name or folder:PATH) for outlier detection."
        ),
    ] = None,
    histogram: Annotated[
        Path, typer.Option(help="PNG of the score histograms (with --ood-dataset).")
    ] = IMAGES_DIR / "ood_histogram.png",
    output: Annotated[
        Path | None, typer.Option(help="Write every figure to this JSON file.")
    ] = None,
    data_dir: Annotated[
        str | None, typer.Option(help="Dataset root (default: $VAE_DATA_DIR, else ./data).")
    ] = None,
    download: Annotated[bool, typer.Option("--download/--no-download")] = True,
    seed: Annotated[int, typer.Option(help="First evaluation seed.")] = 0,
    device: Annotated[str, typer.Option(help=f"{_choices(DEVICES)}.")] = "auto",
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """ELBO, importance-weighted NLL (nats and bits/dim), active units; outlier detection."""
    _check_positive(k=k, repeats=repeats, batch_size=batch_size)
    check_at_most("--k", k, limits.MAX_IMPORTANCE_SAMPLES)
    check_at_most("--repeats", repeats, limits.MAX_REPEATS)
    check_at_most("--batch-size", batch_size, limits.MAX_BATCH_SIZE)
    check_seed(seed, count=repeats)
    if limit is not None:
        _check_positive(limit=limit)
    if binarize_test not in (None, "static", "dynamic", "none"):
        raise ConfigError(
            f"invalid value for --binarize-test: {binarize_test!r} (expected static, dynamic or none)"
        )
    if dataset is not None and input_path is not None:
        raise ConfigError("give --dataset or --input, not both")
    # An evaluation can take an hour: a path it could never write is refused before it starts.
    reads = [checkpoint] + ([input_path] if input_path is not None else [])
    if output is not None:
        check_output_file(output, "--output", EVALUATION, reads)
        if ood_dataset is not None:
            from vae.ood import scores_path

            check_output_file(scores_path(output), "--output", OUTLIER_SCORES, reads)
    if ood_dataset is not None:
        _check_pictures(*reads, histogram=histogram)
    from rich.console import Console

    from vae.evaluation import evaluate_checkpoint
    from vae.reporting import RichReporter, evaluation_table, ood_table

    result = evaluate_checkpoint(
        checkpoint,
        k=k,
        repeats=repeats,
        binarize_test=binarize_test,
        dataset=dataset,
        input_path=input_path,
        data_dir=data_dir,
        download=download,
        limit=limit,
        batch_size=batch_size,
        seed=seed,
        device=device,
        ood_dataset=ood_dataset,
        histogram=histogram,
        reporter=RichReporter(quiet=quiet),
    )
    result["command"] = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
    console = Console(highlight=False)
    console.print(evaluation_table(result))
    if "ood" in result:
        console.print(ood_table(result["ood"]))
    per_image = result.get("ood", {}).pop("per_image", None)
    if output is not None:
        if per_image is not None:
            from vae.ood import scores_csv, scores_path

            scores_file = scores_path(output)
            result["ood"]["scores_file"] = scores_file.name  # beside the JSON
            _write_safely(lambda: _write_scores(scores_file, scores_csv(per_image)), scores_file)
            typer.echo(f"wrote {scores_file}")
        _write_safely(lambda: _write_json(output, result, _write_evaluation), output)
        typer.echo(f"wrote {output}")


def _write_evaluation(path: Path, text: str) -> None:
    atomic_write_text(path, text, replaces=EVALUATION)


def _write_scores(path: Path, text: str) -> Path:
    atomic_write_text(path, text, replaces=OUTLIER_SCORES)
    return path


def _write_json(path: Path, result: dict[str, Any], write: Callable[[Path, str], None]) -> Path:
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


# --- info ----------------------------------------------------------------------------------


@handle_errors
def info_command(
    path: Annotated[Path, typer.Argument(help="A vae checkpoint (.safetensors).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Describe a checkpoint from its header (no tensors read, no torch import)."""
    _print_info(path, as_json)


def _print_info(path: Path, as_json: bool) -> None:
    from vae.info import describe_checkpoint, render_json, render_table

    description = describe_checkpoint(path)
    if as_json:
        typer.echo(render_json(description))
    else:
        from rich.console import Console

        Console(highlight=False).print(render_table(description))


# --- visualize -----------------------------------------------------------------------------

visualize_app = typer.Typer(
    name="visualize",
    help="Pictures of what a model learned: interpolate, traverse, latent-map, manifold, curves, gallery.",
    add_completion=False,
    no_args_is_help=True,
)
InputOption = Annotated[
    Path | None,
    typer.Option(
        "--input", help="Image file or folder to use instead of the checkpoint's test images."
    ),
]
DataDirOption = Annotated[
    str | None, typer.Option(help="Dataset root (default: $VAE_DATA_DIR, else ./data).")
]
DownloadOption = Annotated[bool, typer.Option("--download/--no-download")]
LimitOption = Annotated[int | None, typer.Option(help="Use only the first N images.")]


def _inputs(
    checkpoint: Path,
    input_path: Path | None,
    data_dir: str | None,
    download: bool,
    limit: int | None,
    device: str,
    binarize: bool = True,
) -> Any:
    from vae.visualize import load_inputs

    if limit is not None:
        _check_positive(limit=limit)
    return load_inputs(
        checkpoint,
        input_path=input_path,
        data_dir=data_dir,
        download=download,
        limit=limit,
        device=device,
        binarize=binarize,
    )


@visualize_app.command("interpolate", cls=AliasCommand)
@handle_errors
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
    input_path: InputOption = None,
    data_dir: DataDirOption = None,
    download: DownloadOption = True,
    binarize_input: BinarizeInputOption = False,
    seed: SeedOption = 0,
    device: DeviceOption = "cpu",
) -> None:
    """Interpolate between posterior means: a grid PNG (originals at both ends) and a GIF."""
    from vae.config import parse_int_list
    from vae.latent import INTERPOLATIONS
    from vae.visualize import interpolate

    _check_positive(pairs=pairs)
    check_seed(seed)
    if method not in INTERPOLATIONS:
        raise ConfigError(f"invalid value for --method: {method!r} (expected slerp or lerp)")
    classes = parse_int_list(chain, "chain") if chain is not None else None
    gif_path = gif if gif is not None else output.with_suffix(".gif")
    _check_pictures(checkpoint, input_path, output=output, gif=gif_path)
    _check_picture(checkpoint, **{"pairs x steps": pairs * steps})
    inputs = _inputs(checkpoint, input_path, data_dir, download, None, device, binarize_input)
    result = _write_safely(
        lambda: interpolate(
            inputs,
            output,
            gif_path,
            pairs=pairs,
            steps=steps,
            method=method,
            chain=classes,
            seed=seed,
        ),
        output,
        gif_path,
    )
    typer.echo(f"wrote {result.grid_path} and {result.gif_path} ({result.frames} frames)")


@visualize_app.command("traverse", cls=AliasCommand)
@handle_errors
def traverse_command(
    checkpoint: CheckpointOption = DEFAULT_CHECKPOINT,
    index: Annotated[int, typer.Option(help="Base image (index into the test images).")] = 0,
    steps: Annotated[int, typer.Option(help="Columns per row.")] = 11,
    span: Annotated[float, typer.Option(help="Sweep +-span standard deviations.")] = 3.0,
    max_dims: Annotated[int | None, typer.Option(help="Show at most this many rows.")] = None,
    include_inactive: Annotated[
        bool, typer.Option(help="Also show inactive dimensions (labelled) instead of skipping.")
    ] = False,
    output: Annotated[Path, typer.Option(help="PNG to write.")] = IMAGES_DIR / "traversal.png",
    input_path: InputOption = None,
    data_dir: DataDirOption = None,
    download: DownloadOption = True,
    limit: LimitOption = None,
    device: DeviceOption = "cpu",
) -> None:
    """Latent traversals: one row per dimension, most informative (highest KL) first."""
    from vae.visualize import traverse

    if max_dims is not None:
        _check_positive(max_dims=max_dims)
    _check_pictures(checkpoint, input_path, output=output)
    _check_finite_positive(span=span)
    _check_picture(checkpoint, steps=steps)
    inputs = _inputs(checkpoint, input_path, data_dir, download, limit, device)
    result = _write_safely(
        lambda: traverse(
            inputs,
            output,
            index=index,
            steps=steps,
            span=span,
            max_dims=max_dims,
            include_inactive=include_inactive,
        ),
        output,
    )
    skipped = (
        f"; skipped inactive {', '.join(f'z{d}' for d in result.skipped)}" if result.skipped else ""
    )
    typer.echo(f"wrote {result.path}: rows {', '.join(f'z{d}' for d in result.dims)}{skipped}")


@visualize_app.command("latent-map", cls=AliasCommand)
@handle_errors
def latent_map_command(
    checkpoint: CheckpointOption = DEFAULT_CHECKPOINT,
    compare: Annotated[
        Path | None,
        typer.Option(help="A second checkpoint (e.g. an autoencoder) drawn side by side."),
    ] = None,
    output: Annotated[Path, typer.Option(help="PNG to write.")] = IMAGES_DIR / "latent_map.png",
    input_path: InputOption = None,
    data_dir: DataDirOption = None,
    download: DownloadOption = True,
    limit: LimitOption = None,
    device: DeviceOption = "cpu",
) -> None:
    """Posterior means in 2-D (PCA when the latent is larger), coloured by label."""
    from vae.visualize import latent_map

    _check_pictures(checkpoint, input_path, compare, output=output)
    panels = [_inputs(checkpoint, input_path, data_dir, download, limit, device)]
    if compare is not None:
        panels.append(_inputs(compare, input_path, data_dir, download, limit, device))
    path = _write_safely(lambda: latent_map(panels, output), output)
    typer.echo(f"wrote {path}")


@visualize_app.command("manifold", cls=AliasCommand)
@handle_errors
def manifold_command(
    checkpoint: CheckpointOption = DEFAULT_CHECKPOINT,
    size: Annotated[int, typer.Option(help="Images per side of the mosaic.")] = 20,
    span: Annotated[float, typer.Option(help="Cover +-span standard deviations.")] = 2.0,
    output: Annotated[Path, typer.Option(help="PNG to write.")] = IMAGES_DIR / "manifold.png",
    input_path: InputOption = None,
    data_dir: DataDirOption = None,
    download: DownloadOption = True,
    limit: LimitOption = None,
    device: DeviceOption = "cpu",
) -> None:
    """Decode a regular grid over the 2-D latent (or its two leading PCA directions)."""
    from vae.visualize import manifold

    _check_pictures(checkpoint, input_path, output=output)
    _check_finite_positive(span=span)
    _check_picture(checkpoint, **{"size x size": size * size})
    inputs = _inputs(checkpoint, input_path, data_dir, download, limit, device)
    path = _write_safely(lambda: manifold(inputs, output, size=size, span=span), output)
    typer.echo(f"wrote {path}")


@visualize_app.command("curves", cls=AliasCommand)
@handle_errors
def curves_command(
    run: Annotated[Path, typer.Argument(help="A run folder (or its metrics.jsonl).")],
    output: Annotated[
        Path | None, typer.Option(help="PNG to write (default: RUN/curves.png).")
    ] = None,
) -> None:
    """Redraw a run's training curves (loss, reconstruction, KL, beta) from metrics.jsonl."""
    from vae.training import METRICS_NAME
    from vae.visualize import curves

    if output is not None:  # the command reads the run's metrics, not the whole folder
        _check_pictures(run / METRICS_NAME if run.is_dir() else run, output=output)
    path = _write_safely(lambda: curves(run, output), output or run)
    typer.echo(f"wrote {path}")


@visualize_app.command("gallery", cls=AliasCommand)
@handle_errors
def gallery_command(
    checkpoint: CheckpointOption = DEFAULT_CHECKPOINT,
    autoencoder: Annotated[
        Path | None, typer.Option(help="Autoencoder checkpoint for the AE vs VAE pictures.")
    ] = Path("pretrained/ae/checkpoint_best.safetensors"),
    metrics: Annotated[
        Path | None, typer.Option(help="metrics.jsonl of the checkpoint's training run.")
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
    # The shipped evaluations by default, where they are (from the project folder).
    ood_reports = (
        ood_report
        if ood_report is not None
        else [path for path in SHIPPED_OOD_REPORTS if path.is_file()]
    )
    for report in ood_reports:
        if not report.is_file():
            raise ConfigError(f"--ood-report {report} not found (pass another path)")
    paths = _write_safely(
        lambda: gallery(
            checkpoint,
            output_dir,
            autoencoder=autoencoder,
            metrics=metrics,
            data_dir=data_dir,
            download=download,
            seed=seed,
            ood_reports=ood_reports,
        ),
        output_dir,
    )
    for path in paths:
        typer.echo(f"wrote {path}")


# --- helpers -------------------------------------------------------------------------------


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if value < 1:
            raise ConfigError(
                f"invalid value for --{name.replace('_', '-')}: {value} (expected at least 1)"
            )


def _check_grid_fits(grid_size: int, **counts: int) -> None:
    """A grid row wider than the images it shows would leave the whole picture padded out."""
    for name, count in counts.items():
        if grid_size > count:
            raise ConfigError(
                f"--grid-size {grid_size} is more than --{name.replace('_', '-')} {count}: "
                f"use --grid-size {count} or fewer"
            )


def _check_finite_positive(**values: float) -> None:
    for name, value in values.items():
        if not (value > 0 and math.isfinite(value)):
            raise ConfigError(
                f"invalid value for --{name.replace('_', '-')}: {value} (expected a positive, "
                "finite number)"
            )


def _check_picture(checkpoint: Path, **counts: int) -> None:
    """Refuse, from the checkpoint's header alone, pictures too large to allocate."""
    from vae.checkpoint import check_model_tensors, read_header

    spec = check_model_tensors(checkpoint, read_header(checkpoint))
    for name, count in counts.items():
        option = " x ".join(f"--{part.replace('_', '-')}" for part in name.split(" x "))
        check_picture(option, count, spec.channels, spec.height, spec.width)


def _check_pictures(*reads: Path | None, **outputs: Path) -> None:
    """Refuse picture outputs named with a suffix vae cannot write, or that would replace an
    input or a file that is not a picture."""
    from vae.images import check_gif_name, picture_format

    for option, path in outputs.items():
        check_output_file(path, f"--{option}", PICTURE, [r for r in reads if r is not None])
        if option == "gif":
            check_gif_name(path)
        else:
            picture_format(path)


def _write_safely(write: Callable[[], Path], *targets: Path) -> Path:
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


# --- applications --------------------------------------------------------------------------

COMMANDS: dict[str, Callable[..., Any]] = {
    "train": train_command,
    "generate": generate_command,
    "inference": inference_command,
    "info": info_command,
    "evaluate": evaluate_command,
}


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"vae {__version__}")
        raise typer.Exit()


app = typer.Typer(
    name="vae",
    help="Train variational autoencoders on images; generate, reconstruct and inspect checkpoints.",
    add_completion=False,
    no_args_is_help=True,
)


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version_callback, is_eager=True, help="Show the version."
        ),
    ] = False,
) -> None:
    """vae: variational autoencoders for images."""


for _name, _command in COMMANDS.items():
    app.command(_name, cls=AliasCommand)(_command)
app.add_typer(visualize_app, name="visualize")


def _single(name: str) -> typer.Typer:
    single = typer.Typer(name=name, add_completion=False)
    single.command(name, cls=AliasCommand)(COMMANDS[name])
    return single


train_app = _single("train")
generate_app = _single("generate")
inference_app = _single("inference")
info_app = _single("info")
evaluate_app = _single("evaluate")


def main() -> None:
    """``python -m vae``."""
    app()


if __name__ == "__main__":
    sys.exit(main())
