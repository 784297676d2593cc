"""``push``: a checkpoint exported and uploaded to a Hugging Face Hub model repository."""

from __future__ import annotations

from typing import Annotated

import typer

from vae.cli.common import handle_errors, say
from vae.cli.export import CheckpointOrRunArgument, EvaluationOption, LicenseOption


@handle_errors
def push_command(
    checkpoint_or_run: CheckpointOrRunArgument,
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
    license: LicenseOption = None,
    evaluation: EvaluationOption = None,
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
