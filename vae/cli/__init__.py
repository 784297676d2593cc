"""Command line: parse options, call the library, turn expected errors into one line + exit code.

One module per command of ``vae.commands.COMMANDS``, named after it: ``vae.cli.NAME`` defines
``NAME_command`` (or, for a group of subcommands such as ``visualize``, the Typer application
``NAME_app``), and ``common`` what they share. Each command is then ``vae NAME`` and the
application ``NAME_app`` of its own installed script. Torch is imported inside the commands that
need it, never at module level, so that ``info`` starts fast.
"""

from __future__ import annotations

import importlib
import sys
from typing import Annotated, Any

import typer

from vae import __version__
from vae.cli.common import AliasCommand, _write_json, _write_safely, handle_errors
from vae.commands import COMMANDS

__all__ = [
    "_write_json",
    "_write_safely",
    "app",
    "handle_errors",
    "main",
    *(f"{name}_app" for name in COMMANDS),
]


def _command(name: str) -> Any:
    """The command ``name``: ``NAME_app`` (a group) or ``NAME_command`` of ``vae.cli.NAME``."""
    module = importlib.import_module(f"vae.cli.{name}")
    group = getattr(module, f"{name}_app", None)
    return group if group is not None else getattr(module, f"{name}_command")


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


def _own_application(name: str, command: Any) -> typer.Typer:
    """The application of one command, for its own installed script (``train``, ...): a group
    is one already."""
    if isinstance(command, typer.Typer):
        return command
    single = typer.Typer(name=name, add_completion=False)
    single.command(name, cls=AliasCommand)(command)
    return single


for _name in COMMANDS:
    _found = _command(_name)
    if isinstance(_found, typer.Typer):
        app.add_typer(_found, name=_name)
    else:
        app.command(_name, cls=AliasCommand)(_found)
    # ``train_app`` and the others, which vae.entry runs.
    globals()[f"{_name}_app"] = _own_application(_name, _found)


def main() -> None:
    """``python -m vae``."""
    app()


if __name__ == "__main__":
    sys.exit(main())
