"""The options several commands share, declared once: their types and help, the folder pictures
go to, the shipped model's default path, and the command class that accepts the seed projects'
flag spellings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperCommand

from vae.aliases import rewrite_aliases
from vae.config import DEVICES

IMAGES_DIR = Path("images")


class AliasCommand(TyperCommand):
    """A command that also accepts the seed projects' flag spellings (see vae.aliases)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        known = [name for param in self.params for name in getattr(param, "opts", [])]
        known += [name for param in self.params for name in getattr(param, "secondary_opts", [])]
        return super().parse_args(ctx, rewrite_aliases(self.name or "", args, known))


def shipped_default(ctx: typer.Context, param: typer.CallbackParam, value: Path | None) -> Any:
    """An option's default that names a shipped file (``pretrained/...``) is found by
    vae.shipped's rule, from any folder; a path the user gave is used as given."""
    from vae.shipped import shipped_path

    source = ctx.get_parameter_source(param.name or "")
    if value is None or source is None or source.name != "DEFAULT":
        return value
    return shipped_path(value)


def checkpoint_source(ctx: typer.Context, param: typer.CallbackParam, value: str | None) -> Any:
    """A checkpoint option's path: the shipped default found by ``shipped_default``'s rule, a
    path as given, or a ``hf://`` reference fetched from the Hub (or its cache) first. Parsed as
    a string because ``Path("hf://o/n")`` would collapse the slashes."""
    from vae.checkpoint.hub import is_hub_reference, local_checkpoint
    from vae.cli.common.errors import handle_errors

    if value is None:
        return None
    if is_hub_reference(value):
        # Here, during parsing, so the command receives a local file that every check applies to.
        return handle_errors(local_checkpoint)(value)
    return shipped_default(ctx, param, Path(value))


# No square brackets: the help is rich markup, where [/...] closes a tag.
CHECKPOINT_HELP = (
    "A vae checkpoint: a .safetensors file, or hf://OWNER/NAME on the Hugging Face Hub (also "
    "hf://OWNER/NAME@REVISION/FILE.safetensors)."
)
CheckpointOption = Annotated[
    Path, typer.Option(help=CHECKPOINT_HELP, parser=str, callback=checkpoint_source)
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
ShownClassOption = Annotated[
    str | None,
    typer.Option(
        "--label",
        help="A conditional model (cvae): show it every image as this class (a name or an "
        "index) instead of each image's own.",
    ),
]
