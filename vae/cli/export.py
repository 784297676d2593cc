"""``export``: a checkpoint as a folder to share as it is (weights, model card, samples)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vae.cli.common import handle_errors, say

# The inputs ``push`` shares with ``export``, declared once.
CheckpointOrRunArgument = Annotated[
    str,
    typer.Argument(
        help="A vae checkpoint (.safetensors or hf://...), or a run folder (its checkpoint_best)."
    ),
]
LicenseOption = Annotated[
    str | None,
    typer.Option(help="The model card's license, a Hub identifier (mit, cc-by-4.0, ...)."),
]
EvaluationOption = Annotated[
    Path | None,
    typer.Option(
        help="An evaluation JSON of this checkpoint (default: the most thorough "
        "evaluation*.json beside it made of it)."
    ),
]


@handle_errors
def export_command(
    checkpoint_or_run: CheckpointOrRunArgument,
    out_dir: Annotated[Path, typer.Argument(help="The folder to write (new or empty).")],
    license: LicenseOption = None,
    evaluation: EvaluationOption = None,
    force: Annotated[
        bool, typer.Option(help="Write into a folder that is not empty, replacing its files.")
    ] = False,
) -> None:
    """Write a checkpoint's weights, a model card and a samples grid into a folder to share."""
    from vae.export import EXPORTED_FILES, export_checkpoint

    done = export_checkpoint(
        checkpoint_or_run, out_dir, license=license, evaluation=evaluation, force=force
    )
    named = ", ".join(str(path) for path in done.evaluations)
    figures = f" with the figures of {named}" if named else ""
    say(f"exported {done.checkpoint} to {done.folder}: {', '.join(EXPORTED_FILES)}{figures}")
