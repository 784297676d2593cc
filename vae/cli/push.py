"""``push``: a checkpoint exported and uploaded to a Hugging Face Hub model repository."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vae.cli.common import handle_errors, say


@handle_errors
def push_command(
    checkpoint_or_run: Annotated[
        str,
        typer.Argument(
            help="A vae checkpoint (.safetensors or hf://...), or a run folder (its "
            "checkpoint_best)."
        ),
    ],
    repo_id: Annotated[
        str, typer.Argument(metavar="OWNER/NAME", help="The Hub model repository to upload to.")
    ],
    private: Annotated[
        bool, typer.Option(help="Create the repository private (an existing one keeps its own).")
    ] = False,
    revision: Annotated[
        str | None,
        typer.Option(help="Upload to this branch, created when missing (default: main)."),
    ] = None,
    license: Annotated[
        str | None,
        typer.Option(help="The model card's license, a Hub identifier (mit, cc-by-4.0, ...)."),
    ] = None,
    evaluation: Annotated[
        Path | None,
        typer.Option(
            help="An evaluation JSON of this checkpoint (default: the most thorough "
            "evaluation*.json beside it made of it)."
        ),
    ] = None,
) -> None:
    """Export a checkpoint as `export` does and upload it to a Hub model repository."""
    from vae.push import push_checkpoint

    done = push_checkpoint(
        checkpoint_or_run,
        repo_id,
        private=private,
        revision=revision,
        license=license,
        evaluation=evaluation,
    )
    say(f"pushed {done.export.checkpoint} to {done.url}")
    say(f"load it with: vae generate --checkpoint {done.reference}")
