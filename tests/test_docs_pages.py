"""The documentation cannot drift: every generated table is current, every command page lists
every option its ``--help`` shows, and every relative link in README.md and docs/ reaches a file."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vae.cli import app

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _tool():
    spec = importlib.util.spec_from_file_location("docs_tables", ROOT / "tools/docs_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Each command (its words after ``vae``, from vae.commands.COMMANDS) and the page that documents it:
# docs/commands/NAME.md, a group's subcommands together on their group's page.
TOOL = _tool()
PAGES = {path: f"commands/{path[0]}.md" for path in TOOL.command_paths()}


def _documents() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def test_every_generated_block_is_current() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "docs_tables.py"), "--check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_command_has_a_generated_table_on_its_page() -> None:
    for path, page in PAGES.items():
        name = TOOL.table_name(path)
        assert name in TOOL.GENERATORS, name
        text = (DOCS / page).read_text(encoding="utf-8")
        assert f"<!-- {name} -->\n" in text and f"<!-- /{name} -->" in text, (page, name)


def _block(text: str, name: str) -> str:
    match = re.search(rf"<!-- {re.escape(name)} -->\n(.*?)<!-- /{re.escape(name)} -->", text, re.S)
    assert match, name
    return match.group(1)


@pytest.mark.parametrize("path", list(PAGES), ids=" ".join)
def test_each_page_table_lists_every_option_of_help(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    flags = set()
    for line in result.output.splitlines():
        # An option's row starts with its flags ("--download  --no-download  Fetch ..."), columns
        # apart by two or more spaces; flags named inside a help text are not rows.
        for column in re.split(r"\s{2,}", line.strip("│ ").strip()):
            if not column.startswith("-"):
                break
            flags.update(re.findall(r"--[a-z][a-z0-9-]*", column))
    flags.discard("--help")
    assert flags, result.output
    table = _block((DOCS / PAGES[path]).read_text(encoding="utf-8"), TOOL.table_name(path))
    cells = {cell for row in table.splitlines() for cell in re.findall(r"--[a-z][a-z0-9-]*", row)}
    missing = sorted(flags - cells)
    assert not missing, (
        f"{PAGES[path]}: no row for {missing}; run poetry run python tools/docs_tables.py"
    )


LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_every_relative_link_reaches_a_file() -> None:
    broken = []
    for document in _documents():
        text = document.read_text(encoding="utf-8")
        text = re.sub(r"```.*?```", "", text, flags=re.S)  # links in code are not links
        for target in LINK.findall(text):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            file = target.split("#", 1)[0]
            if not (document.parent / file).exists():
                broken.append(f"{document.relative_to(ROOT)}: {target}")
    assert not broken, broken


def test_every_docs_page_is_reachable_from_the_readme() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for page in DOCS.rglob("*.md"):
        assert f"({page.relative_to(ROOT).as_posix()}" in readme, page


def test_the_readme_is_a_front_page() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 150
    assert "\npoetry run pytest\n" in readme and "poetry install --compile" in readme
