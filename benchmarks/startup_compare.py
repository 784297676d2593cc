"""Start-up of two trees of this package side by side, e.g. before and after a refactor:
``python -m vae <command>`` with each tree first on PYTHONPATH, alternated, medians of N rounds.

    git worktree add /tmp/before <REV>
    poetry run python -m compileall -q vae /tmp/before/vae    # bytecode in both trees
    poetry run python benchmarks/startup_compare.py /tmp/before . [--rounds 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHECKPOINT = Path(__file__).resolve().parent.parent / "pretrained" / "checkpoint_best.safetensors"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("before", type=Path, help="the first tree (its vae/ is imported)")
    parser.add_argument("after", type=Path, help="the second tree")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    with tempfile.TemporaryDirectory() as folder:
        commands = {
            "info": ["info", str(CHECKPOINT)],
            "generate --help": ["generate", "--help"],
            "generate": ["generate", "--checkpoint", str(CHECKPOINT), "--output", "s.png"],
        }
        times: dict[tuple[str, str], list[float]] = {(t, c): [] for t in trees for c in commands}
        for _ in range(args.rounds):
            for command, argv in commands.items():
                for tree, path in trees.items():
                    env = {**os.environ, "PYTHONPATH": str(path)}
                    started = time.perf_counter()
                    done = subprocess.run(
                        [sys.executable, "-m", "vae", *argv],
                        env=env,
                        capture_output=True,
                        cwd=folder,
                    )
                    times[(tree, command)].append(time.perf_counter() - started)
                    if done.returncode != 0:
                        raise SystemExit(f"{tree} {command}: {done.stderr.decode()[-500:]}")
    for command in commands:
        before = statistics.median(times[("before", command)])
        after = statistics.median(times[("after", command)])
        print(
            f"{command:16s} before {before:.3f} s  after {after:.3f} s  ratio {after / before:.2f}"
        )


if __name__ == "__main__":
    main()
