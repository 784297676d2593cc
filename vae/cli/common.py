"""What every command shares: the alias-aware command class, the error handler that turns
library errors into one line and an exit code, option types, option checks and safe writes.

Nothing here imports torch: ``info`` must start without it.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
import typing
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from typer.core import TyperCommand

from vae import interrupts
from vae.aliases import rewrite_aliases
from vae.config import DEVICES, flag_of
from vae.errors import ConfigError, TrainingInterrupted, VAEError
from vae.fileio import PICTURE, check_output_file, file_in_the_way
from vae.limits import check_picture
from vae.reporting import print_error

if TYPE_CHECKING:
    from vae.spec import ModelSpec

F = TypeVar("F", bound=Callable[..., Any])
IMAGES_DIR = Path("images")


class AliasCommand(TyperCommand):
    """A command that also accepts the seed projects' flag spellings (see vae.aliases)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        known = [name for param in self.params for name in getattr(param, "opts", [])]
        known += [name for param in self.params for name in getattr(param, "secondary_opts", [])]
        return super().parse_args(ctx, rewrite_aliases(self.name or "", args, known))


def handle_errors(function: F) -> F:
    """Expected failures become 'error: ...' on stderr and the error's exit code; a setting
    named in a ConfigError is spelled as its flag (``latent_dim`` -> ``--latent-dim``)."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except TrainingInterrupted as error:
            # A requested stop is not an error; its message already says what happened. The
            # code says which signal asked: 130 for Ctrl-C, 143 for SIGTERM (vae.interrupts).
            if getattr(error, "quiet", not is_main_process()):
                raise typer.Exit(interrupts.interrupt_exit_code()) from None
            raise typer.Exit(interrupts.report_interrupt(str(error))) from None
        except VAEError as error:
            # Of several torchrun processes failing together, one (rank 0 by default) speaks.
            if not getattr(error, "quiet", not is_main_process()):
                print_error(error.render(flag_of))
            raise typer.Exit(error.exit_code) from None
        except OSError as error:  # disk full, permission denied, ...: say which file
            where = f": {error.filename}" if error.filename else ""
            print_error(f"{error.strerror or error}{where}")
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            raise typer.Exit(interrupts.report_interrupt()) from None
        except (MemoryError, RuntimeError) as error:
            if not _out_of_memory(error):
                raise
            print_error(
                "out of memory: use a smaller batch size, fewer or smaller images, or a "
                "smaller model"
            )
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _out_of_memory(error: BaseException) -> bool:
    """An allocation that failed: NumPy's MemoryError, torch's CPU allocator, CUDA or MPS
    (``torch.OutOfMemoryError`` is a RuntimeError whose message says so too)."""
    if isinstance(error, MemoryError):
        return True
    message = str(error)
    return "out of memory" in message or "can't allocate memory" in message


def is_main_process() -> bool:
    """True unless this is a torchrun worker other than rank 0 (which stays quiet)."""
    import os

    from vae.distributed import launched_by_torchrun

    try:
        distributed = launched_by_torchrun()
    except ConfigError:  # a malformed WORLD_SIZE: that error is being reported, by this process
        return True
    return not distributed or os.environ.get("RANK", "0") in ("", "0")


# --- option types shared by several commands -------------------------------------------------


def shipped_default(ctx: typer.Context, param: typer.CallbackParam, value: Path | None) -> Any:
    """An option's default that names a shipped file (``pretrained/...``) is found by
    vae.shipped's rule, from any folder; a path the user gave is used as given."""
    from vae.shipped import shipped_path

    source = ctx.get_parameter_source(param.name or "")
    if value is None or source is None or source.name != "DEFAULT":
        return value
    return shipped_path(value)


CheckpointOption = Annotated[
    Path, typer.Option(help="A vae checkpoint (.safetensors).", callback=shipped_default)
]
SeedOption = Annotated[int, typer.Option(help="Random seed: the same seed gives the same PNG.")]
DeviceOption = Annotated[str, typer.Option(help=f"{', '.join(DEVICES)}.")]
BinarizeInputOption = Annotated[
    bool,
    typer.Option(
        help="Bernoulli models: show and encode the binarized originals the likelihood scores, "
        "instead of the grey images."
    ),
]
InputOption = Annotated[
    Path | None,
    typer.Option(
        "--input", help="Image file or folder to use instead of the checkpoint's test images."
    ),
]
DatasetOption = Annotated[
    str | None,
    typer.Option(
        help="Use this dataset's test split (a name, folder:PATH or hf:NAME) instead of the "
        "model's own; the folder: or hf: data a model was trained on is read only when named here."
    ),
]
DataDirOption = Annotated[
    str | None, typer.Option(help="Dataset root (default: $VAE_DATA_DIR, else ./data).")
]
DownloadOption = Annotated[
    bool, typer.Option("--download/--no-download", help="Fetch missing named datasets.")
]
LimitOption = Annotated[int | None, typer.Option(help="Use only the first N images.")]
InvertOption = Annotated[
    bool,
    typer.Option(
        help="Invert the images read (x -> 1 - x) before the model sees them: dark digits on "
        "white for a model trained on white digits on black."
    ),
]
GridSizeOption = Annotated[int, typer.Option(help="Images per grid row.")]


# --- option checks -------------------------------------------------------------------------


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


# --- output --------------------------------------------------------------------------------


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


def load_command_inputs(
    checkpoint: Path,
    input_path: Path | None,
    data_dir: str | None,
    download: bool,
    limit: int | None,
    device: str,
    binarize: bool = True,
    dataset: str | None = None,
    invert: bool = False,
) -> Any:
    """A checkpoint and the images a picture command shows it (vae.visualize.load_inputs), from
    the options every such command has; torch is imported only here, when a command needs it.
    Images on light backgrounds for a model that draws dark ones get a warning on stderr."""
    from vae.data import ImageSource as Images  # the library's; this module's adds --device
    from vae.reporting import RichReporter
    from vae.visualize import load_inputs

    if limit is not None:
        check_positive(limit=limit)
    images = Images(
        dataset=dataset,
        input_path=input_path,
        data_dir=data_dir,
        download=download,
        limit=limit,
        invert=invert,
    )
    return load_inputs(
        checkpoint, images, device=device, binarize=binarize, reporter=RichReporter()
    )


@dataclass(frozen=True)
class ImageSource:
    """The images a picture command shows its model, from the options every such command has:
    ``--input`` files, else the test split of ``--dataset`` or of the checkpoint's named dataset
    (``--data-dir``, ``--download``, ``--limit``), on ``--device``, inverted with ``--invert``."""

    input_path: InputOption = None
    dataset: DatasetOption = None
    data_dir: DataDirOption = None
    download: DownloadOption = True
    limit: LimitOption = None
    device: DeviceOption = "cpu"
    invert: InvertOption = False

    def load(self, checkpoint: Path, binarize: bool = True) -> Any:
        """The checkpoint's model and these images (``vae.visualize.Inputs``)."""
        return load_command_inputs(
            checkpoint,
            self.input_path,
            self.data_dir,
            self.download,
            self.limit,
            self.device,
            binarize,
            self.dataset,
            self.invert,
        )


def reads_images(*, limit: bool = True) -> Callable[[F], F]:
    """Give a command the options of :class:`ImageSource` (without ``--limit`` when ``limit``
    is False), declared once there, and pass them to it as one ``source`` argument."""
    hints = typing.get_type_hints(ImageSource, include_extras=True)
    added = [
        inspect.Parameter(
            field.name,
            inspect.Parameter.KEYWORD_ONLY,
            default=field.default,
            annotation=hints[field.name],
        )
        for field in fields(ImageSource)
        if limit or field.name != "limit"
    ]

    def decorate(function: F) -> F:
        own = typing.get_type_hints(function, include_extras=True)
        signature = inspect.signature(function)
        kept = [
            parameter.replace(annotation=own[parameter.name])
            for parameter in signature.parameters.values()
            if parameter.name != "source"
        ]

        @functools.wraps(function)
        def wrapper(**kwargs: Any) -> Any:
            source = ImageSource(
                **{parameter.name: kwargs.pop(parameter.name) for parameter in added}
            )
            return function(source=source, **kwargs)

        parameters = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in kept] + added
        wrapper.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=parameters, return_annotation=own.get("return", None)
        )
        wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
        return wrapper  # type: ignore[return-value]

    return decorate
