"""Command line: parse options, call the library, turn expected errors into one line + exit code.

One module per command (``train``, ``generate``, ``inference``, ``evaluate``, ``info``,
``explore``) or group (``visualize``), and ``common`` for what they share. Torch is imported
inside the commands that need it, never at module level, so that ``info`` starts fast.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer

from vae import __version__
from vae.cli.common import AliasCommand, _write_json, _write_safely, handle_errors
from vae.cli.evaluate import evaluate_command
from vae.cli.explore import explore_command
from vae.cli.generate import generate_command
from vae.cli.inference import inference_command
from vae.cli.info import info_command
from vae.cli.train import train_command
from vae.cli.visualize import visualize_app

__all__ = [
    "COMMANDS",
    "_write_json",
    "_write_safely",
    "app",
    "evaluate_app",
    "explore_app",
    "generate_app",
    "handle_errors",
    "inference_app",
    "info_app",
    "main",
    "train_app",
    "visualize_app",
]

COMMANDS: dict[str, Callable[..., Any]] = {
    "train": train_command,
    "generate": generate_command,
    "inference": inference_command,
    "info": info_command,
    "evaluate": evaluate_command,
    "explore": explore_command,
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
    """An application of one command, for its own installed script (``train``, ...)."""
    single = typer.Typer(name=name, add_completion=False)
    single.command(name, cls=AliasCommand)(COMMANDS[name])
    return single


train_app = _single("train")
generate_app = _single("generate")
inference_app = _single("inference")
info_app = _single("info")
evaluate_app = _single("evaluate")
explore_app = _single("explore")


def main() -> None:
    """``python -m vae``."""
    app()


if __name__ == "__main__":
    sys.exit(main())
