"""Strings from files (checkpoint metadata, file names) reach the terminal escaped: control
characters shown as \\x1b or \\n, Rich markup shown as text, every error on one line."""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from vae.reporting import RichReporter, evaluation_table, print_error, printable

BIN = Path(sys.executable).parent
HOSTILE = "\x1b[31mred\x1b[0m\nsecond line [link=http://x]y[/link] [bold]b[/bold] :smile:"
SHOWN = "\\x1b[31mred\\x1b[0m\\nsecond line [link=http://x]y[/link] [bold]b[/bold] :smile:"


@pytest.fixture
def checkpoint(trained_run) -> Path:
    """The best checkpoint of the session's shared run (tests/conftest.py)."""
    return trained_run / "checkpoint_best.safetensors"


def with_metadata(source: Path, target: Path, change) -> Path:
    """A copy of ``source`` with its vae metadata JSON changed by ``change(dict)``."""
    data = source.read_bytes()
    (size,) = struct.unpack("<Q", data[:8])
    header, body = json.loads(data[8 : 8 + size]), data[8 + size :]
    vae = json.loads(header["__metadata__"]["vae"])
    change(vae)
    header["__metadata__"]["vae"] = json.dumps(vae)
    text = json.dumps(header).encode()
    target.write_bytes(struct.pack("<Q", len(text)) + text + body)
    return target


def run_info(*arguments: str) -> subprocess.CompletedProcess:
    # A wide terminal, so that no value is folded over two lines of the table.
    return subprocess.run(
        [str(BIN / "info"), *arguments], capture_output=True, text=True, timeout=60,
        env={**os.environ, "COLUMNS": "400"},
    )  # fmt: skip


def test_printable_shows_control_characters():
    assert printable("plain é ü 名前") == "plain é ü 名前"
    assert printable("a\x1b[2Jb\nc\td\r\x07\u202e") == "a\\x1b[2Jb\\nc\\td\\r\\x07\\u202e"


def test_info_table_shows_hostile_metadata_escaped(tmp_path, checkpoint):
    def change(vae: dict) -> None:
        vae["created_utc"] = HOSTILE
        vae["config"]["train"]["runs_dir"] = HOSTILE
        vae["note\x1b]0;title\x07"] = "[red]x[/red]"

    path = with_metadata(checkpoint, tmp_path / "hostile.safetensors", change)
    result = run_info(str(path))
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout
    created = [line for line in result.stdout.splitlines() if "created_utc" in line]
    assert len(created) == 1 and SHOWN in created[0]  # one row: the newline did not break it
    assert any(
        "config.train.runs_dir" in line and SHOWN in line for line in result.stdout.splitlines()
    )
    assert "note\\x1b]0;title\\x07" in result.stdout and "[red]x[/red]" in result.stdout
    as_json = run_info(str(path), "--json")
    assert as_json.returncode == 0 and "\x1b" not in as_json.stdout
    assert json.loads(as_json.stdout)["created_utc"] == HOSTILE


@pytest.mark.parametrize("field", ["architecture", "dataset"])
def test_hostile_names_the_loaders_check_are_escaped_too(tmp_path, checkpoint, field):
    def change(vae: dict) -> None:
        (vae["model"] if field == "architecture" else vae["data"])[field] = HOSTILE

    path = with_metadata(checkpoint, tmp_path / "hostile.safetensors", change)
    result = run_info(str(path))
    output = result.stdout + result.stderr
    assert "\x1b" not in output and "Traceback" not in output
    if result.returncode == 0:
        assert SHOWN in result.stdout
    else:  # refused: one line, the string escaped in it
        assert result.returncode in (1, 2) and result.stderr.count("\n") == 1


def test_file_names_are_escaped_in_errors_and_titles(tmp_path, checkpoint):
    missing = tmp_path / "gone\n\x1b[2J.safetensors"
    result = run_info(str(missing))
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "\x1b" not in result.stderr
    assert "gone\\n\\x1b[2J.safetensors" in result.stderr
    named = tmp_path / "[link=file:x]a\x1b[1m[bold]b.safetensors"
    shutil.copy(checkpoint, named)
    shown = run_info(str(named))
    assert shown.returncode == 0 and "\x1b" not in shown.stdout
    assert "[link=file:x]a\\x1b[1m[bold]b.safetensors" in shown.stdout


def test_print_error_is_one_line(capsys):
    print_error("cannot read a\nb\x1b[31m.png")
    assert capsys.readouterr().err == "error: cannot read a\\nb\\x1b[31m.png\n"


def test_reporter_and_tables_do_not_read_markup():
    reporter = RichReporter(quiet=True)
    out, err = io.StringIO(), io.StringIO()
    reporter.console = Console(file=out, width=400, highlight=False)
    reporter.error_console = Console(file=err, width=400, highlight=False)
    reporter.message(f"run folder {HOSTILE}")
    reporter.warning(HOSTILE)
    assert out.getvalue() == f"run folder {SHOWN}\n"
    assert err.getvalue() == f"warning: {SHOWN}\n"
    result = {
        "dataset": HOSTILE, "num_images": 10, "k": 5, "repeats": 1, "protocol": "[b]p[/b]",
        "seeds": [0], "metrics": {}, "active_units": 1, "latent_dim": 2, "seconds": 1.0,
    }  # fmt: skip
    table = io.StringIO()
    Console(file=table, width=400).print(evaluation_table(result))
    shown = table.getvalue()  # the title wraps at the table's width: look for its pieces
    assert "\\x1b[31mred" in shown and "[link=http://x]y[/link]" in shown and ":smile:" in shown
    assert "protocol: [b]p[/b]" in shown and "\x1b" not in shown
