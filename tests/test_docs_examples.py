"""The code blocks of README.md and docs/ that run offline are run: each bash or python block
carries ``<!-- run -->`` or ``<!-- norun: reason -->`` on the line before its fence, and every
``run`` block is executed in a temporary folder with ``pretrained/`` linked in, so that nothing
tracked (``images/samples.png``) is rewritten. ``poetry run X`` runs the virtual environment's
installed entry point X."""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
MARK = re.compile(r"<!-- (run|norun: .+) -->\n\Z")
LANGUAGES = {"bash", "sh", "shell", "python"}
# poetry run X -> the entry point X beside the test's own interpreter.
SHIM = 'poetry() { if [ "$1" = run ]; then shift; fi; "$@"; }\nset -euo pipefail\n'


class Block:
    def __init__(self, path: Path, line: int, language: str, code: str, mark: str | None):
        self.path, self.line, self.language, self.code, self.mark = path, line, language, code, mark

    def __repr__(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks() -> list[Block]:
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        text = path.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            language = match.group(1)
            if language not in LANGUAGES:
                continue
            before = text[: match.start()]
            mark = MARK.search(before)
            line = before.count("\n") + 1
            found.append(Block(path, line, language, match.group(2), mark and mark.group(1)))
    return found


BLOCKS = blocks()
RUN = [block for block in BLOCKS if block.mark == "run"]


def test_every_block_is_marked_run_or_norun() -> None:
    unmarked = [repr(block) for block in BLOCKS if block.mark is None]
    assert not unmarked, f"mark these with <!-- run --> or <!-- norun: reason -->: {unmarked}"
    ran = len(RUN)
    warnings.warn(
        f"docs examples: {ran} blocks run, {len(BLOCKS) - ran} marked norun", stacklevel=1
    )
    assert ran >= 5


def _children_cpu_seconds() -> float:
    """CPU seconds used so far by this process's finished child processes."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@pytest.mark.parametrize("block", RUN, ids=repr)
def test_runnable_block(block: Block, tmp_path: Path) -> None:
    (tmp_path / "pretrained").symlink_to(ROOT / "pretrained")
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("VAE_DATA_DIR", None)
    env["VAE_DATA_DIR"] = str(tmp_path / "no-data")  # a block that reads a dataset fails here
    if block.language == "python":
        command = [sys.executable, "-c", block.code]
    else:
        command = ["bash", "-c", SHIM + block.code]
    start, used_before = time.monotonic(), _children_cpu_seconds()
    result = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    seconds = time.monotonic() - start
    # CPU time, not wall time: the suite runs on every core at once (pytest-xdist), and a block
    # waiting for a core is not a block that needs more than 10 s.
    cpu = _children_cpu_seconds() - used_before
    assert result.returncode == 0, f"{block!r} failed:\n{result.stdout}\n{result.stderr}"
    assert cpu < 10, f"{block!r} took {cpu:.1f} s of CPU ({seconds:.1f} s): mark it norun"
    assert not (tmp_path / "no-data").exists(), f"{block!r} read a dataset"
