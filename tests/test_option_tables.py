"""The settings are defined once (vae.config): docs/commands/train.md's table and ``train --help``
agree."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from typer.testing import CliRunner

from vae.cli import app
from vae.cli.train import train_settings
from vae.config import RunConfig, flag_of
from vae.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def _tool():
    spec = importlib.util.spec_from_file_location("docs_tables", ROOT / "tools/docs_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_page_table_is_generated_from_the_definition() -> None:
    tool = _tool()
    readme = (ROOT / "docs" / "commands" / "train.md").read_text(encoding="utf-8")
    assert tool.regenerated(readme) == readme, "run: poetry run python tools/docs_tables.py"
    table = tool.train_options_table()
    assert table in readme
    for setting in train_settings():
        assert f"| {setting.flags[0].split('/')[0]}" in table.replace("`", "")


def _help_blocks(output: str) -> dict[str, str]:
    """Each option's text in ``--help``, keyed by its first flag, whitespace collapsed."""
    blocks: dict[str, str] = {}
    current = None
    for line in output.splitlines():
        text = line.strip("│ ").strip()
        match = re.match(r"(--[a-z0-9-]+)", text)
        if match:
            current = match.group(1)
            blocks[current] = ""
        if current is not None:
            blocks[current] += " " + " ".join(text.split())
    return blocks


def test_train_help_lists_every_setting_with_its_default() -> None:
    result = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "250"})
    assert result.exit_code == 0
    blocks = _help_blocks(result.output)
    for setting in train_settings():
        declaration = setting.flags[0]
        block = blocks[declaration.split("/")[0]]
        for flag in re.split(r"[/,]", ",".join(setting.flags)):
            assert flag in block, flag
        assert " ".join(setting.option.help.split()) in block
        if isinstance(setting.default, bool):
            shown = declaration.split("/")[0 if setting.default else 1].lstrip("-")
        else:
            shown = setting.default
        if shown is not None:
            assert f"[default: {shown}]" in block, (setting.name, block)


def test_library_errors_name_the_setting_and_the_cli_its_flag() -> None:
    try:
        RunConfig().override({"model_type": "gan"}).validate()
    except ConfigError as error:
        assert (
            str(error)
            == "invalid value for model_type: 'gan' (expected one of vae, ae, cvae, hvae)"
        )
        assert error.setting == "model_type"
        assert error.render(flag_of).startswith("invalid value for --model: 'gan'")
    else:
        raise AssertionError("model_type 'gan' was accepted")
    result = CliRunner().invoke(app, ["train", "--model", "gan"])
    assert result.exit_code == 2
    assert "invalid value for --model: 'gan' (expected one of vae, ae, cvae, hvae)" in result.output


def test_every_alias_reaches_its_setting() -> None:
    from vae.aliases import ALIASES

    for setting in train_settings():
        for alias in setting.option.aliases:
            assert alias in ALIASES["train"]
