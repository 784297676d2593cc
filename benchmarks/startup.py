"""Start-up time of the installed entry points and peak resident memory of train and evaluate.

    poetry run python benchmarks/startup.py [--repeats 5]

Wall times (median, min-max) of `info`, `generate --help` and `generate` (64 samples) on the
shipped checkpoint, of `inference --mode reconstruct` (which loads the MNIST test set) and of a
`train` run of one epoch on 128 images, each with the installed bytecode and, alternated with it,
with the dependencies and `vae` compiled from source at every start, as where
PYTHONDONTWRITEBYTECODE is set and nothing was installed with `poetry install --compile`
(PYTHONPYCACHEPREFIX points at a folder holding only the standard library's bytecode, which
Python's own install writes). Peak RSS of `train` (one epoch of the default model on MNIST) and of
`evaluate` at k = 5000 (peak memory does not grow with the number of images: work is chunked).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import torch
from common import BIN, REPO, data_dir, describe_machine, summary

CHECKPOINT = str(REPO / "pretrained" / "checkpoint_best.safetensors")
TARGETS = {"info": 0.5, "generate --help": 0.5, "generate (64 samples)": 3.0}


def wall_and_peak_rss(
    arguments: list[str], env: dict[str, str] | None = None
) -> tuple[float, float]:
    """(seconds, peak resident MiB) of one run of an installed entry point."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [str(BIN / arguments[0]), *arguments[1:]],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
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
            "inference (reconstruct)": [
                "inference", "--checkpoint", CHECKPOINT, "--mode", "reconstruct",
                "--output-dir", folder, "--device", "cpu", "--no-download",
            ],
        }  # fmt: skip
        train = ["train", "startup", "--epochs", "1", "--limit", "128", "--no-download"]
        no_cache = tempfile.mkdtemp(dir=folder)
        source_env = {**os.environ, "PYTHONPYCACHEPREFIX": no_cache, "PYTHONDONTWRITEBYTECODE": "1"}
        stdlib = sysconfig.get_path("stdlib")
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", "-j", "0", "-x", "site-packages", stdlib],
            env=source_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,  # a few of the standard library's test files do not compile, by design
        )
        states = {"bytecode": None, "source": source_env}
        names = [*commands, "train (1 epoch, 128 images)"]
        times = {(name, state): [] for name in names for state in states}
        for _ in range(args.repeats):  # interleaved, so noise hits every command alike
            for name in names:
                for state, env in states.items():
                    # A fresh runs folder for each train run (run folders are never overwritten).
                    command = commands.get(name) or [
                        *train,
                        "--runs-dir",
                        tempfile.mkdtemp(dir=folder),
                    ]
                    times[name, state].append(wall_and_peak_rss(command, env)[0])
        print("wall time: with the installed bytecode | compiled from source at every start")
        for name in names:
            cached, source = times[name, "bytecode"], times[name, "source"]
            target = f"  target < {TARGETS[name]} s" if name in TARGETS else ""
            print(f"{name:27s} {summary(cached, 's', 3)} | {summary(source, 's', 3)}{target}")
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
