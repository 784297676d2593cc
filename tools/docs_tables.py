"""The one generator of the documentation's tables: every block between ``<!-- NAME -->`` and
``<!-- /NAME -->`` in README.md and docs/**/*.md is rewritten from the code's own definitions.

    poetry run python tools/docs_tables.py          # rewrite every generated block
    poetry run python tools/docs_tables.py --check  # exit 1 when a block is out of date

Blocks: ``options:train`` (train's options, from the settings in vae.config and vae.cli.train),
``options:COMMAND`` for every other command of vae.commands.COMMANDS and ``options:GROUP-MODE``
for each subcommand of a group, as ``options:visualize-traverse`` (each command's own Click
parameters: flags, default, help), and ``datasets`` (from the data registry,
vae/data/registry.py).
tests/test_docs_pages.py runs the check, so an option or dataset added without its
documentation fails the suite.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"<!-- (?P<name>[a-z][a-z0-9:_-]*) -->\n.*?<!-- /(?P=name) -->", re.DOTALL)


def train_options_table() -> str:
    """train's option table: one row per setting (flags, default, meaning), the seed projects'
    aliases that stand for more than one flag, and the options that are no setting."""
    from vae.cli.train import LEADING_ROWS, TRAILING_ROWS, train_settings
    from vae.config import flag_of

    settings = train_settings()
    rows: list[tuple[str, str, str]] = list(LEADING_ROWS)
    for setting in settings:
        option, value = setting.option, setting.default
        label = ", ".join(f"`{flag.replace('/', ' / ')}`" for flag in setting.flags)
        if option.doc_default is not None:
            default = option.doc_default
        elif value is None:
            default = ""
        else:
            default = f"`{value}`" if isinstance(value, str) else str(value)
        if option.doc is not None:
            meaning = option.doc
        else:
            text = option.help.rstrip(".")
            # 'Latent dimensions' -> 'latent dimensions'; a word in capitals ('KL weight') stays.
            meaning = text if text[1:2].isupper() else text[0].lower() + text[1:]
        rows.append((label, default, meaning))
    for setting in settings:  # aliases that stand for more than the setting's own flag
        for alias, expansion in setting.option.aliases.items():
            if not expansion:
                continue  # plain renamings are in the "Coming from another VAE project" table
            takes_value = expansion[-1] == flag_of(setting.name)
            words = [*expansion, "W"] if takes_value else list(expansion)
            label = f"`{alias} W`" if takes_value else f"`{alias}`"
            rows.append((label, "", f"the same as `{' '.join(words)}`"))
    rows += list(TRAILING_ROWS)
    lines = ["| option | default | meaning |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |".replace("|  |", "| |") for a, b, c in rows]
    return "\n".join(lines) + "\n"


def click_command(path: tuple[str, ...]) -> Any:
    """The Click command at ``path`` (e.g. ``("visualize", "traverse")``) of the vae app."""
    import typer

    from vae.cli import app

    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    return command


def command_paths() -> list[tuple[str, ...]]:
    """Every command's words after ``vae``, in vae.commands.COMMANDS' order: a group's subcommands
    each (``("visualize", "traverse")``), in its ``--help`` order."""
    from vae.commands import COMMANDS

    paths: list[tuple[str, ...]] = []
    for name in COMMANDS:
        subcommands = getattr(click_command((name,)), "commands", None)
        paths += [(name, mode) for mode in subcommands] if subcommands else [(name,)]
    return paths


def table_name(path: tuple[str, ...]) -> str:
    """The block of a command's option table: ``options:`` and its words joined by ``-``."""
    return "options:" + "-".join(path)


# The commands whose option tables are generated from their own Click parameters (train's comes
# from its settings): block name -> the command's path under the ``vae`` application.
COMMAND_TABLES: dict[str, tuple[str, ...]] = {
    table_name(path): path for path in command_paths() if path != ("train",)
}


def _default(param: Any) -> str:
    """A parameter's default as the table shows it: on/off for flags, blank for none."""
    value = param.default
    if getattr(param, "is_flag", False) and isinstance(value, bool):
        return "on" if value else "off"
    if value is None or callable(value):
        return ""
    if isinstance(value, str | Path):
        return f"`{value}`"
    return str(value)


def command_options_table(path: tuple[str, ...]) -> str:
    """One row per parameter of the command in its ``--help`` order, hidden ones left out: the
    flags (``--download / --no-download``; an argument by its name in capitals), the default and
    the help text."""
    rows = []
    for param in click_command(path).params:
        if getattr(param, "hidden", False):
            continue
        if param.param_type_name == "argument":
            label = param.metavar or param.name.upper()
        else:
            label = ", ".join(param.opts)
            if param.secondary_opts:
                label += " / " + ", ".join(param.secondary_opts)
        meaning = " ".join((getattr(param, "help", None) or "").split()).rstrip(".")
        rows.append((f"`{label}`", _default(param), meaning.replace("|", "\\|")))
    lines = ["| option | default | meaning |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |".replace("|  |", "| |") for a, b, c in rows]
    return "\n".join(lines) + "\n"


def datasets_table() -> str:
    """The datasets table, one row per registry entry."""
    from vae.data.registry import markdown_table

    return markdown_table()


GENERATORS: dict[str, Callable[[], str]] = {
    "options:train": train_options_table,
    "datasets": datasets_table,
    **{
        name: (lambda path=path: command_options_table(path))
        for name, path in COMMAND_TABLES.items()
    },
}


def regenerated(text: str, source: str = "text") -> str:
    """``text`` with every generated block rewritten; SystemExit for an unknown block name."""

    def replace(match: re.Match[str]) -> str:
        name = match.group("name")
        if name not in GENERATORS:
            raise SystemExit(f"{source}: no generator for the block <!-- {name} -->")
        return f"<!-- {name} -->\n{GENERATORS[name]()}<!-- /{name} -->"

    return BLOCK.sub(replace, text)


def documents() -> list[Path]:
    """README.md and every Markdown page under docs/."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def main(argv: list[str] | None = None) -> int:
    """Rewrite (or with --check, compare) every block; the exit status for the shell."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report what is out of date")
    args = parser.parse_args(argv)
    stale = []
    for path in documents():
        text = path.read_text(encoding="utf-8")
        wanted = regenerated(text, str(path.relative_to(ROOT)))
        if wanted != text:
            stale.append(path.relative_to(ROOT))
            if not args.check:
                path.write_text(wanted, encoding="utf-8")
    if args.check and stale:
        print(
            f"out of date: {', '.join(map(str, stale))}; run: poetry run python tools/docs_tables.py"
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
