"""Start-up time of the installed entry points and peak resident memory of train and evaluate.

    poetry run python benchmarks/startup.py [--repeats 5]

Wall times (median, min-max) of `info`, `generate --help` and `generate` (64 samples) on the
shipped checkpoint; peak RSS of `train` (one epoch of the default model on MNIST) and of
`evaluate` at k = 5000 (peak memory does not grow with the number of images: work is chunked).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

import torch
from common import BIN, REPO, data_dir, describe_machine, summary

CHECKPOINT = str(REPO / "pretrained" / "checkpoint_best.safetensors")
TARGETS = {"info": 0.5, "generate --help": 0.5, "generate (64 samples)": 3.0}


def wall_and_peak_rss(arguments: list[str]) -> tuple[float, float]:
    """(seconds, peak resident MiB) of one run of an installed entry point."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [str(BIN / arguments[0]), *arguments[1:]],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        error = process.stderr.read().decode() if process.stderr else ""
        raise SystemExit(f"error: {' '.join(arguments)} failed ({process.returncode}): {error}")
    return seconds, usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    os.environ["VAE_DATA_DIR"] = data_dir()
    print(describe_machine(torch.device("cpu")))
    with tempfile.TemporaryDirectory() as folder:
        commands = {
            "info": ["info", CHECKPOINT],
            "generate --help": ["generate", "--help"],
            "generate (64 samples)": [
                "generate", "--checkpoint", CHECKPOINT, "--num-samples", "64",
                "--output", str(Path(folder) / "samples.png"), "--device", "cpu",
            ],
        }  # fmt: skip
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.repeats):  # interleaved, so noise hits every command alike
            for name, command in commands.items():
                times[name].append(wall_and_peak_rss(command)[0])
        for name, values in times.items():
            print(f"{name:22s} {summary(values, 's', 3)}  target < {TARGETS[name]} s")
        _, train_rss = wall_and_peak_rss(
            ["train", "rss", "--runs-dir", folder, "--epochs", "1", "--no-download"]
        )
        _, evaluate_rss = wall_and_peak_rss(
            [
                "evaluate", "--checkpoint", CHECKPOINT, "--k", "5000", "--limit", "20",
                "--quiet", "--no-download",
            ]
        )  # fmt: skip
    print(f"peak RSS, train (default model, MNIST, 1 epoch): {train_rss:,.0f} MiB (target < 1,536)")
    print(f"peak RSS, evaluate --k 5000 (20 images):        {evaluate_rss:,.0f} MiB")


if __name__ == "__main__":
    main()
