"""A run with the plateau learning-rate schedule writes a checkpoint_last that vae reads back:
its scheduler state holds infinities (ReduceLROnPlateau's ``mode_worse``), which JSON cannot."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from vae.cli import app

runner = CliRunner()
FLAGS = [
    "--limit", "120", "--val-size", "40", "--batch-size", "40", "--latent-dim", "4",
    "--hidden-sizes", "16", "--conv-widths", "4,8", "--beta-warmup", "1",
    "--prior-components", "3", "--lr-schedule", "plateau", "--device", "cpu", "--no-download",
    "--quiet",
]  # fmt: skip


def test_a_plateau_run_resumes_exactly_and_its_last_checkpoint_reads(
    tmp_path: Path, synthetic_data_dir: Path
) -> None:
    data = ["--runs-dir", str(tmp_path), "--data-dir", str(synthetic_data_dir)]
    straight = runner.invoke(app, ["train", "straight", *data, *FLAGS, "--epochs", "2"])
    assert straight.exit_code == 0, straight.output
    cut = runner.invoke(app, ["train", "cut", *data, *FLAGS, "--epochs", "1"])
    assert cut.exit_code == 0, cut.output
    last = tmp_path / "cut" / "checkpoint_last.safetensors"
    info = runner.invoke(app, ["info", str(last)])
    assert info.exit_code == 0, info.output
    resumed = runner.invoke(
        app,
        ["train", "--resume", str(tmp_path / "cut"), "--epochs", "2",
         "--data-dir", str(synthetic_data_dir)],
    )  # fmt: skip
    assert resumed.exit_code == 0, resumed.output
    expected = load_file(str(tmp_path / "straight" / "checkpoint_last.safetensors"))
    got = load_file(str(last))
    assert expected.keys() == got.keys()
    for name in expected:
        if name.startswith("model."):
            assert torch.equal(expected[name], got[name]), name
