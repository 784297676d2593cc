"""Regenerate README.md's option table of ``train`` from the settings' definition (vae.config).

    poetry run python tools/option_tables.py          # rewrite the table in README.md
    poetry run python tools/option_tables.py --check  # exit 1 when README.md is out of date

The table sits between ``<!-- options:train -->`` and ``<!-- /options:train -->``; each row comes
from one setting's Option (flags, default, meaning), the seed projects' aliases that stand for
more than one flag, and the few options that are no setting (vae.cli.train's rows).
tests/test_option_tables.py runs the check.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from vae.cli.train import LEADING_ROWS, TRAILING_ROWS, TrainSetting, train_settings
from vae.config import flag_of

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- options:train -->", "<!-- /options:train -->"


def _label(setting: TrainSetting) -> str:
    """``--likelihood``, ``--loss`` or ``--download / --no-download``."""
    return ", ".join(f"`{flag.replace('/', ' / ')}`" for flag in setting.flags)


def _default(setting: TrainSetting) -> str:
    option, value = setting.option, setting.default
    if option.doc_default is not None:
        return option.doc_default
    if value is None:
        return ""
    return f"`{value}`" if isinstance(value, str) else str(value)


def _meaning(setting: TrainSetting) -> str:
    if setting.option.doc is not None:
        return setting.option.doc
    text = setting.option.help.rstrip(".")
    # 'Latent dimensions' -> 'latent dimensions'; a word in capitals ('KL weight') stays.
    return text if text[1:2].isupper() else text[0].lower() + text[1:]


def _alias_rows(setting: TrainSetting) -> list[tuple[str, str, str]]:
    """Rows for the aliases that stand for more than the setting's own flag (``--kld-weight``);
    the plain renamings are in the README's "Coming from..." table."""
    rows = []
    for alias, expansion in setting.option.aliases.items():
        if not expansion:
            continue
        takes_value = expansion[-1] == flag_of(setting.name)
        words = [*expansion, "W"] if takes_value else list(expansion)
        label = f"`{alias} W`" if takes_value else f"`{alias}`"
        rows.append((label, "", f"the same as `{' '.join(words)}`"))
    return rows


def rows() -> list[tuple[str, str, str]]:
    """Every row of the table, in the order of ``train --help``."""
    settings = train_settings()
    table: list[tuple[str, str, str]] = list(LEADING_ROWS)
    table += [(_label(s), _default(s), _meaning(s)) for s in settings]
    table += [row for s in settings for row in _alias_rows(s)]
    return table + list(TRAILING_ROWS)


def markdown_table() -> str:
    """The table as Markdown, header included."""
    lines = ["| option | default | meaning |", "|---|---|---|"]
    lines += [
        f"| {label} | {default} | {meaning} |".replace("|  |", "| |")
        for label, default, meaning in rows()
    ]
    return "\n".join(lines) + "\n"


def with_table(readme: str) -> str:
    """``readme`` with the text between the markers replaced by the generated table."""
    pattern = re.compile(re.escape(START) + r"\n.*?" + re.escape(END), re.DOTALL)
    if not pattern.search(readme):
        raise SystemExit(f"README.md has no {START} ... {END} markers")
    return pattern.sub(lambda _: f"{START}\n{markdown_table()}{END}", readme, count=1)


def main(argv: list[str] | None = None) -> int:
    """Rewrite (or with --check, compare) the table; the exit status for the shell."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report whether it is current")
    args: Any = parser.parse_args(argv)
    text = README.read_text(encoding="utf-8")
    wanted = with_table(text)
    if args.check:
        if wanted != text:
            print("README.md's train option table is out of date: run tools/option_tables.py")
            return 1
        return 0
    if wanted != text:
        README.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
