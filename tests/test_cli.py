import hashlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import REPO, assert_runs_without_torch, grid_cells
from vae.checkpoint import read_metadata
from vae.cli import app

runner = CliRunner()
BIN = Path(sys.executable).parent
TINY = [
    "--limit", "120", "--val-size", "40", "--epochs", "2", "--batch-size", "40",
    "--latent-dim", "4", "--hidden-sizes", "16", "--conv-widths", "4,8", "--beta-warmup", "1",
    "--device", "cpu", "--no-download",
]  # fmt: skip


@pytest.fixture
def trained(trained_run):
    """The session's shared run (tests/conftest.py): trained with TRAINED_RUN_FLAGS."""
    return trained_run


def test_train_end_to_end(trained):
    assert (trained / "checkpoint_best.safetensors").exists()
    assert (trained / "checkpoint_last.safetensors").exists()
    assert len((trained / "metrics.jsonl").read_text().splitlines()) == 2
    metadata = read_metadata(trained / "checkpoint_best.safetensors")
    assert metadata["model"]["conv_widths"] == [4, 8]
    assert metadata["model"]["prior_components"] == 3
    assert metadata["data"]["num_train"] == 120


def test_train_from_config_file_with_flag_override(tmp_path, trained, synthetic_data_dir):
    result = runner.invoke(
        app,
        ["train", "again", "--config", str(trained / "config.yaml"), "--runs-dir", str(tmp_path),
         "--epochs", "1", "--lr", "0.002"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    saved = (tmp_path / "again" / "config.yaml").read_text()
    assert "lr: 0.002" in saved and "epochs: 1" in saved and "latent_dim: 4" in saved


def test_train_resume_extends_a_finished_run(tmp_path, trained, synthetic_data_dir):
    copy = tmp_path / "copy"
    copy.mkdir()
    for item in trained.iterdir():
        if item.is_file():
            (copy / item.name).write_bytes(item.read_bytes())
    result = runner.invoke(
        app,
        ["train", "--resume", str(copy), "--epochs", "3", "--quiet",
         "--data-dir", str(synthetic_data_dir)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert len((copy / "metrics.jsonl").read_text().splitlines()) == 3


@pytest.mark.parametrize("name", ["../escape", "a/b", ".."])
def test_run_name_cannot_escape_the_runs_folder(tmp_path, name):
    result = runner.invoke(app, ["train", name, "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2 and "invalid RUN_NAME" in result.output
    assert not (tmp_path / "escape").exists()


def test_train_without_data_exits_1_with_one_line(tmp_path):
    result = runner.invoke(
        app,
        [
            "train",
            "x",
            "--runs-dir",
            str(tmp_path),
            "--data-dir",
            str(tmp_path / "none"),
            "--no-download",
        ],
    )
    assert result.exit_code == 1
    assert result.output.startswith("error: dataset 'mnist' is not in")
    assert result.output.count("\n") == 1


def test_generate_is_deterministic_per_seed(tmp_path, trained):
    checkpoint = str(trained / "checkpoint_best.safetensors")
    outputs = []
    for name, seed in (("a", "7"), ("b", "7"), ("c", "8")):
        target = tmp_path / f"{name}.png"
        result = runner.invoke(
            app, ["generate", "--checkpoint", checkpoint, "--seed", seed, "--output", str(target),
                  "--num-samples", "12", "--grid-size", "4"],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        outputs.append(target.read_bytes())
    assert outputs[0] == outputs[1]
    assert outputs[0] != outputs[2]

    with Image.open(tmp_path / "a.png") as picture:  # 4 x 3 grid of 28-pixel images, 2-pixel gaps
        assert picture.size == (4 * 30 + 2, 3 * 30 + 2)


def test_generate_info_only_and_errors(tmp_path, trained):
    checkpoint = str(trained / "checkpoint_best.safetensors")
    info = runner.invoke(
        app,
        [
            "generate",
            "--checkpoint",
            checkpoint,
            "--info-only",
            "--output",
            str(tmp_path / "x.png"),
        ],
    )
    assert info.exit_code == 0 and "parameter_count" in info.output
    assert not (tmp_path / "x.png").exists()
    missing = runner.invoke(app, ["generate", "--checkpoint", str(tmp_path / "nope.safetensors")])
    assert missing.exit_code == 1 and "checkpoint not found" in missing.output
    assert "Traceback" not in missing.output
    zero = runner.invoke(app, ["generate", "--checkpoint", checkpoint, "--num-samples", "0"])
    assert zero.exit_code == 2 and "--num-samples" in zero.output
    folder = runner.invoke(app, ["generate", "--checkpoint", checkpoint, "--output", str(tmp_path)])
    assert folder.exit_code == 2 and f"--output {tmp_path} is a folder" in folder.output
    blocker = tmp_path / "a-file"
    blocker.write_text("kept")
    below = runner.invoke(
        app, ["generate", "--checkpoint", checkpoint, "--output", str(blocker / "x.png")]
    )
    assert below.exit_code == 1 and f"{blocker} is a file, not a folder" in below.output
    assert blocker.read_text() == "kept"


def test_generate_keeps_an_existing_output_when_the_checkpoint_is_bad(tmp_path):
    target = tmp_path / "samples.png"
    earlier = b"\x89PNG\r\n\x1a\n an earlier output"
    target.write_bytes(earlier)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"garbage" * 10)
    result = runner.invoke(app, ["generate", "--checkpoint", str(bad), "--output", str(target)])
    assert result.exit_code == 1 and "not a safetensors file" in result.output
    assert target.read_bytes() == earlier


def test_inference_both_modes_on_dataset_and_on_user_images(tmp_path, trained, synthetic_data_dir):
    checkpoint = str(trained / "checkpoint_best.safetensors")
    result = runner.invoke(
        app, ["inference", "--checkpoint", checkpoint, "--output-dir", str(tmp_path / "out"),
              "--data-dir", str(synthetic_data_dir), "--num-images", "8", "--no-download"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "out" / "reconstructions.png") as picture:
        assert picture.size == (8 * 30 + 2, 2 * 30 + 2)  # originals row above reconstructions row
    assert (tmp_path / "out" / "samples.png").exists()
    pictures = tmp_path / "mine"
    pictures.mkdir()
    for index in range(3):
        Image.new("RGB", (50, 40), (index * 80, 0, 0)).save(pictures / f"{index}.jpg")
    mine = runner.invoke(
        app, ["inference", "--checkpoint", checkpoint, "--mode", "reconstruct", "--input", str(pictures),
              "--output-dir", str(tmp_path / "mine-out")],
    )  # fmt: skip
    assert mine.exit_code == 0, mine.output
    assert (tmp_path / "mine-out" / "reconstructions.png").exists()
    assert not (tmp_path / "mine-out" / "samples.png").exists()
    bad = runner.invoke(app, ["inference", "--checkpoint", checkpoint, "--mode", "dream"])
    assert bad.exit_code == 2 and "--mode" in bad.output
    blocker = tmp_path / "a-file"
    blocker.write_text("kept")
    for output_dir, exit_code, message in (
        (blocker, 2, f"--output-dir {blocker} is a file, not a folder"),
        (blocker / "out", 1, f"{blocker} is a file, not a folder"),
    ):
        refused = runner.invoke(
            app, ["inference", "--checkpoint", checkpoint, "--output-dir", str(output_dir)]
        )
        assert refused.exit_code == exit_code and message in refused.output, refused.output
    assert blocker.read_text() == "kept"


def test_info_table_and_json(trained):
    checkpoint = trained / "checkpoint_best.safetensors"
    table = runner.invoke(app, ["info", str(checkpoint)])
    assert table.exit_code == 0
    for field in (
        "model.architecture",
        "sha256",
        "validation.neg_elbo",
        "torch_version",
        "file_size",
    ):
        assert field in table.output
    result = runner.invoke(app, ["info", str(checkpoint), "--json"])
    described = json.loads(result.output)
    assert described["sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert described["file_size_bytes"] == checkpoint.stat().st_size
    assert described["model"]["latent_dim"] == 4
    assert described["format_version"] == 2  # layers named by the plan (format 1: shipped files)


def test_info_on_a_file_that_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.safetensors"
    path.write_text("hello")
    result = runner.invoke(app, ["info", str(path)])
    assert result.exit_code == 1 and "not a safetensors file" in result.output


# --- the installed entry points, as a user runs them ----------------------------------------


def run_entry(name: str, *arguments: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / name), *arguments], capture_output=True, text=True, timeout=120, **kwargs
    )


def test_installed_entry_points(tmp_path, trained):
    checkpoint = str(trained / "checkpoint_best.safetensors")
    started = time.perf_counter()
    info = run_entry("info", checkpoint, "--json")
    info_seconds = time.perf_counter() - started
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["kind"] == "best"
    assert info_seconds < 3.0  # typically ~0.3 s; generous for loaded CI machines
    generated = run_entry(
        "generate", "--checkpoint", checkpoint, "--output", str(tmp_path / "s.png")
    )
    assert generated.returncode == 0 and (tmp_path / "s.png").exists()
    sampled = run_entry(
        "inference", "--checkpoint", checkpoint, "--mode", "sample", "--output-dir", str(tmp_path)
    )
    assert sampled.returncode == 0, sampled.stderr
    # Same seed 0; generate decodes with NumPy, so a pixel on a rounding boundary may differ by 1.
    with Image.open(tmp_path / "samples.png") as a, Image.open(tmp_path / "s.png") as b:
        difference = np.abs(np.asarray(a).astype(int) - np.asarray(b).astype(int))
    assert difference.max() <= 1 and (difference > 0).mean() < 1e-3
    umbrella = run_entry("vae", "info", checkpoint, "--json")
    assert umbrella.returncode == 0 and json.loads(umbrella.stdout) == json.loads(info.stdout)
    for name in ("train", "inference", "generate", "info", "vae"):
        assert run_entry(name, "--help").returncode == 0
    missing = run_entry("info", str(tmp_path / "none.safetensors"))
    assert missing.returncode == 1
    assert missing.stderr.strip() == f"error: checkpoint not found: {tmp_path / 'none.safetensors'}"


def test_info_does_not_import_torch(trained):
    checkpoint = str(trained / "checkpoint_best.safetensors")
    assert_runs_without_torch("info_app", ["info", checkpoint, "--json"])


def test_ctrl_c_in_a_real_process_saves_and_exits_130(tmp_path, synthetic_data_dir):
    process = subprocess.Popen(
        [str(BIN / "train"), "run", "--runs-dir", str(tmp_path), "--data-dir", str(synthetic_data_dir),
         *TINY[:4], "--epochs", "10000", *TINY[6:]],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    last = tmp_path / "run" / "checkpoint_last.safetensors"
    deadline = time.time() + 90
    while not last.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.1)
    assert last.exists(), process.communicate()
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "saved" in stderr and "--resume" in stderr and "Traceback" not in stderr
    state = read_metadata(last)
    assert state["kind"] == "last"


def test_generate_from_a_fresh_clone_uses_the_shipped_checkpoint(tmp_path):
    shipped = REPO / "pretrained" / "checkpoint_best.safetensors"
    if not shipped.exists():
        pytest.skip("no shipped checkpoint in this checkout yet")
    result = run_entry("generate", "--output", str(tmp_path / "samples.png"), cwd=REPO)
    assert result.returncode == 0, result.stderr
    cells = grid_cells(tmp_path / "samples.png")
    assert cells.shape[:2] == (8, 8)  # 64 samples on an 8 x 8 grid
    for cell in cells.reshape(64, 28, 28):  # each a digit: light strokes on a dark background
        assert cell.min() < 30 and 0.02 < (cell > 128).mean() < 0.5
    assert read_metadata(shipped)["data"]["dataset"] == "mnist"


def test_unwritable_run_folder_is_one_line_and_exit_1(tmp_path, synthetic_data_dir):
    blocker = tmp_path / "runs"
    blocker.write_text("a file where the runs folder should be")
    result = runner.invoke(
        app,
        ["train", "x", "--runs-dir", str(blocker), "--data-dir", str(synthetic_data_dir), *TINY],
    )
    assert result.exit_code == 1
    assert result.output.startswith("error: ") and result.output.count("\n") == 1
    assert blocker.read_text() == "a file where the runs folder should be"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("model:\n  latent: 3\n", "unknown option 'model.latent'"),
        ("model: [1\n", "is not valid YAML"),
        ("train:\n  epochs: many\n", "invalid value for --epochs: 'many'"),
        ("optimiser: {}\n", "unknown section 'optimiser'"),
    ],
)
def test_bad_config_files_exit_2(tmp_path, content, message):
    path = tmp_path / "config.yaml"
    path.write_text(content)
    result = runner.invoke(app, ["train", "x", "--config", str(path), "--runs-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert message in result.output and result.output.count("\n") == 1
