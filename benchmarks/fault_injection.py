"""Fault injection: SIGKILL (and SIGINT) `train` at random moments, resume, check every file.

    poetry run python benchmarks/fault_injection.py [--kills 20] [--interrupts 3] [--seed 0]

Each trial starts a small run (a 2,000-image MNIST subset, 6 epochs) as a subprocess of the
installed `train` entry point and stops it at a seeded random moment (three in four after its
first save): SIGKILL (no chance to
clean up) or SIGINT (Ctrl-C). After every stop: both checkpoints (when present) load,
metrics.jsonl parses with epochs 1..n exactly once each. Then `train --resume` (or a fresh
start, if the run was stopped before its first save) runs to the end and the finished run must
have every epoch exactly once. Prints kills, resumes, the most work lost, and corrupt files.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

BIN = Path(sys.executable).parent
SMALL_RUN = [
    "--limit", "2000", "--val-size", "500", "--epochs", "6", "--batch-size", "100",
    "--latent-dim", "8", "--hidden-sizes", "64", "--conv-widths", "8,16",
    "--device", "cpu", "--no-download",
]  # fmt: skip


@dataclass
class Summary:
    kills: int = 0
    interrupts: int = 0
    resumes: int = 0
    restarts: int = 0  # stopped before the first checkpoint: started again under the same name
    stale_temporaries: int = 0  # half-written .tmp files found after a kill (removed by train)
    corrupt_files: int = 0
    most_seconds_lost: float = 0.0
    epoch_seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def most_epochs_lost(self) -> float:
        return self.most_seconds_lost / self.epoch_seconds if self.epoch_seconds else 0.0

    def lines(self) -> list[str]:
        return [
            f"SIGKILLs injected: {self.kills}; SIGINTs: {self.interrupts}",
            f"resumes: {self.resumes}; fresh restarts (stopped before the first save): "
            f"{self.restarts}",
            f"half-written temporary files left by a kill (removed on the next start): "
            f"{self.stale_temporaries}",
            f"most work lost to one kill: {self.most_seconds_lost:.1f} s since the last save = "
            f"{self.most_epochs_lost:.2f} epochs (an epoch with its validation and writes takes "
            f"{self.epoch_seconds:.1f} s)",
            f"files found corrupt: {self.corrupt_files}",
            f"problems: {len(self.problems)}",
            *[f"  {problem}" for problem in self.problems],
        ]


def check_run(run: Path, summary: Summary, finished_epochs: int | None = None) -> int:
    """Check every file of a run; return the epoch of checkpoint_last (0 if none)."""
    from vae.checkpoint import BEST_NAME, LAST_NAME, load_model, read_header
    from vae.errors import VAEError
    from vae.run_folder import METRICS_NAME, read_metrics

    last_epoch = 0
    for name in (BEST_NAME, LAST_NAME):
        path = run / name
        if path.exists():
            try:
                load_model(path)
                if name == LAST_NAME:
                    last_epoch = int(read_header(path).training_state["progress"]["epoch"])
            except VAEError as error:
                summary.corrupt_files += 1
                summary.problems.append(f"{path}: {error}")
    epochs: list[int] = []
    if (run / METRICS_NAME).exists():
        try:
            epochs = [int(r["epoch"]) for r in read_metrics(run / METRICS_NAME)]
        except VAEError as error:
            summary.corrupt_files += 1
            summary.problems.append(f"{run / METRICS_NAME}: {error}")
    # A kill between metrics.jsonl and checkpoint_last leaves one record ahead of the checkpoint.
    expected = list(range(1, len(epochs) + 1))
    if epochs != expected or len(epochs) not in (last_epoch, last_epoch + 1):
        summary.problems.append(
            f"{run}: metrics epochs {epochs} with checkpoint_last at epoch {last_epoch}"
        )
    if finished_epochs is not None and (epochs != list(range(1, finished_epochs + 1))):
        summary.problems.append(f"{run}: finished with epochs {epochs}")
    return last_epoch


def run_trials(
    kills: int,
    interrupts: int,
    seed: int,
    data_dir: str,
    workdir: Path,
    run_arguments: list[str] = SMALL_RUN,
    epochs: int = 6,
) -> Summary:
    """Stop runs ``kills`` times with SIGKILL and ``interrupts`` times with SIGINT."""
    from vae.checkpoint import LAST_NAME

    generator = random.Random(seed)
    summary = Summary()
    env = {**os.environ, "VAE_DATA_DIR": data_dir}

    def command(name: str, resume: bool) -> list[str]:
        if resume:
            return [str(BIN / "train"), "--resume", str(workdir / name)]
        return [str(BIN / "train"), name, "--runs-dir", str(workdir), *run_arguments]

    # One undisturbed run gives the time scale: when the first epoch is saved, and how long an
    # epoch takes (steps, validation and writes; the gaps between metrics.jsonl records).
    reference = workdir / "reference"
    started = time.perf_counter()
    process = subprocess.Popen(
        command("reference", False), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    record_times: list[float] = []
    while process.poll() is None:
        time.sleep(0.05)
        metrics = reference / "metrics.jsonl"
        count = len(metrics.read_text().splitlines()) if metrics.exists() else 0
        record_times += [time.perf_counter() - started] * (count - len(record_times))
    duration = time.perf_counter() - started
    if process.returncode != 0 or len(record_times) < 2:
        raise SystemExit(f"error: the reference run failed (exit {process.returncode})")
    first_save = record_times[0]
    gaps = [b - a for a, b in zip(record_times, record_times[1:], strict=False)]
    summary.epoch_seconds = sorted(gaps)[len(gaps) // 2]
    check_run(reference, summary, finished_epochs=epochs)

    stops = ["kill"] * kills + ["interrupt"] * interrupts
    generator.shuffle(stops)
    trial = 0
    while stops:
        trial += 1
        name = f"trial{trial:02d}"
        run = workdir / name
        resume = False
        completed = False
        # Stop each run one to three times, then let it finish.
        for _ in range(min(len(stops), generator.randint(1, 3))):
            stop = stops.pop()
            launched = time.time()
            process = subprocess.Popen(
                command(name, resume),
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            # Three stops in four land after the first save (mid-training), the rest anywhere.
            earliest = first_save if generator.random() < 0.75 else 0.2
            time.sleep(generator.uniform(earliest, duration * 0.95))
            if process.poll() is not None:  # it finished first: nothing was stopped
                stops.append(stop)
                # The reference ran slower (a busy machine): take this run's time as the scale,
                # or runs keep finishing before their stop and trials go on and on.
                duration = min(duration, time.time() - launched)
                first_save = min(first_save, duration / 2)
                completed = process.returncode == 0
                if not completed:
                    error = process.communicate()[1]
                    summary.problems.append(f"{name}: exit {process.returncode}: {error}")
                break
            last = run / LAST_NAME
            saved_at = last.stat().st_mtime if last.exists() else None
            now = time.time()
            if stop == "kill":
                process.send_signal(signal.SIGKILL)
                summary.kills += 1
            else:
                process.send_signal(signal.SIGINT)
                summary.interrupts += 1
            _, stderr = process.communicate(timeout=120)
            # -SIGINT: stopped during interpreter start-up, before any of our code ran.
            if stop == "interrupt" and process.returncode not in (130, 0, -signal.SIGINT):
                summary.problems.append(f"{name}: SIGINT exit {process.returncode}: {stderr}")
            if stop == "kill":
                # Work this process did since the later of its launch and the last save (an upper
                # bound: it includes the start-up of a resumed process, which redoes nothing).
                lost = now - max(saved_at or launched, launched)
                summary.most_seconds_lost = max(summary.most_seconds_lost, lost)
            summary.stale_temporaries += len(list(run.glob(".*.tmp")))
            check_run(run, summary)
            # A Ctrl-C during epoch 1 saves a checkpoint_last at epoch 0: resume it too (train
            # refuses to start afresh over one).
            resume = (run / "checkpoint_last.safetensors").exists()
            summary.resumes += resume
            summary.restarts += not resume
        if not completed:
            finished = subprocess.run(
                command(name, resume), env=env, capture_output=True, text=True, check=False
            )
            if finished.returncode != 0:
                summary.problems.append(
                    f"{name}: final run exit {finished.returncode}: {finished.stderr}"
                )
        check_run(run, summary, finished_epochs=epochs)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--interrupts", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    from common import data_dir

    with tempfile.TemporaryDirectory() as folder:
        summary = run_trials(args.kills, args.interrupts, args.seed, data_dir(), Path(folder))
    print("\n".join(summary.lines()))
    if summary.problems or summary.corrupt_files:
        sys.exit(1)


if __name__ == "__main__":
    main()
