"""Kill -9 and Ctrl-C at random moments, resume, and check every file (a small fast variant of
benchmarks/fault_injection.py, which runs 20+ kills on real MNIST). The number of kill -9 trials
is $VAE_TEST_KILL_TRIALS: 2 by default, 10 in CI (see tests/conftest.py)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from fault_injection import run_trials  # noqa: E402

from conftest import env_count  # noqa: E402

KILL_TRIALS = env_count("VAE_TEST_KILL_TRIALS", 2)

TINY_RUN = [
    "--limit", "200", "--val-size", "40", "--epochs", "3", "--batch-size", "20",
    "--latent-dim", "2", "--hidden-sizes", "16", "--conv-widths", "4,8",
    "--prior-components", "3", "--sample-every", "0", "--device", "cpu", "--no-download",
]  # fmt: skip


def test_killed_and_interrupted_runs_resume_with_no_corrupt_file(tmp_path, synthetic_data_dir):
    summary = run_trials(
        kills=KILL_TRIALS,
        interrupts=1,
        seed=7,
        data_dir=str(synthetic_data_dir),
        workdir=tmp_path,
        run_arguments=TINY_RUN,
        epochs=3,
    )
    assert summary.kills == KILL_TRIALS and summary.interrupts == 1
    assert summary.resumes + summary.restarts >= KILL_TRIALS + 1
    assert summary.corrupt_files == 0
    assert not summary.problems, "\n".join(summary.problems)
