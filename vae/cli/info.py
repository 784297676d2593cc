"""``info``: describe a checkpoint from its header (no torch import)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vae.cli.common import handle_errors
from vae.cli.common.options import CHECKPOINT_HELP, checkpoint_source


@handle_errors
def info_command(
    path: Annotated[
        Path,
        typer.Argument(
            metavar="PATH", help=CHECKPOINT_HELP, parser=str, callback=checkpoint_source
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Describe a checkpoint from its header (no tensors read, no torch import)."""
    print_info(path, as_json)


def print_info(path: Path, as_json: bool) -> None:
    """Print the checkpoint's description as a table or as JSON (also ``--info-only``)."""
    from vae.info import describe_checkpoint, render_json, render_table

    description = describe_checkpoint(path)
    if as_json:
        typer.echo(render_json(description))
    else:
        from rich.console import Console

        Console(highlight=False).print(render_table(description))
