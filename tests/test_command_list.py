"""The command list is written once, in vae.commands.COMMANDS: the ``vae`` application, each
command's own application and entry point follow it, and pyproject's [project.scripts] (which
must stay literal) names exactly those commands."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

import vae.cli
import vae.entry
from vae.commands import COMMANDS

ROOT = Path(__file__).resolve().parents[1]


def test_pyprojects_scripts_are_the_command_list() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "scripts"
    ]
    expected = {"vae": "vae.entry:vae", **{name: f"vae.entry:{name}" for name in COMMANDS}}
    assert scripts == expected, (
        "pyproject.toml's [project.scripts] must name vae and every command of vae.commands.COMMANDS"
    )


def test_the_vae_application_has_every_command_and_no_other() -> None:
    group = typer.main.get_command(vae.cli.app)
    assert list(group.commands) == list(COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_each_command_has_its_entry_point_and_application(name: str) -> None:
    entry = getattr(vae.entry, name)
    assert callable(entry) and entry.__name__ == name
    own = getattr(vae.cli, f"{name}_app")
    result = CliRunner().invoke(own, ["--help"])
    assert result.exit_code == 0 and "Usage" in result.output, result.output
    # The script's application is the command ``vae NAME`` runs: the same options (a group's
    # subcommands, each with the same options).
    through_vae = typer.main.get_command(vae.cli.app).commands[name]
    assert _shape(typer.main.get_command(own)) == _shape(through_vae)
    assert _shape(through_vae)


def _shape(command: Any) -> list[str | None] | dict[str, Any]:
    """A command's parameter names, or a group's subcommands with theirs."""
    subcommands = getattr(command, "commands", None)
    if subcommands:
        return {mode: _shape(subcommand) for mode, subcommand in subcommands.items()}
    return [param.name for param in command.params]
