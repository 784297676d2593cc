"""Regenerate README.md's datasets table from the data registry (vae/data/registry.py).

    poetry run python tools/datasets_table.py          # rewrite the table in README.md
    poetry run python tools/datasets_table.py --check  # exit 1 when README.md is out of date

tests/test_dataset_registry.py runs the check, so a registry entry without its README row fails.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vae.data.registry import with_table

README = Path(__file__).resolve().parent.parent / "README.md"


def main(argv: list[str] | None = None) -> int:
    """Rewrite (or with --check, compare) the table; the exit status for the shell."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report whether it is current")
    args = parser.parse_args(argv)
    text = README.read_text(encoding="utf-8")
    wanted = with_table(text)
    if args.check:
        if wanted != text:
            print("README.md's datasets table is out of date: run tools/datasets_table.py")
            return 1
        return 0
    if wanted != text:
        README.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
