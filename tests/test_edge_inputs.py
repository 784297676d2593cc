"""Inputs at the edges that once ended in a traceback or a misleading message (issue 28, B): a run
name that is not UTF-8, the largest seeds, a latent map of one image, a class label beyond any
integer type, a configuration nested a thousand deep, and run folders that are not writable
folders. Each is a clean run or one line, with the files that were there left as they were."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from starlette.testclient import TestClient
from typer.testing import CliRunner

from conftest import one_line_error
from vae.cli import app
from vae.data.batches import batch_seed, epoch_order
from vae.explore.app import build_app
from vae.explore.decoder import Decoder
from vae.explore.encoder import Encoder
from vae.reporting import Reporter

runner = CliRunner()
BIN = Path(sys.executable).parent
TINY = [
    "--limit", "120", "--val-size", "40", "--epochs", "1", "--batch-size", "40",
    "--latent-dim", "4", "--hidden-sizes", "16", "--conv-widths", "4,8", "--device", "cpu",
    "--no-download", "--quiet",
]  # fmt: skip


def _png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as picture:
        assert picture.format == "PNG"
        return picture.size


# --- a run name that is not UTF-8 --------------------------------------------------------------


def test_a_run_name_that_is_not_utf8_trains_and_its_pictures_draw(synthetic_data_dir, tmp_path):
    # A folder name from the file system may hold any bytes: Python passes b"\xff" on as the
    # lone surrogate "\udcff", which matplotlib's font code refused (the run lost its
    # checkpoint_best and curves.png). The two $ would make a title mathtext (an error too).
    name = b"run\xff$_$"
    runs = os.fsencode(tmp_path / "runs")
    data = os.fsencode(synthetic_data_dir)
    tiny = [flag.encode() for flag in TINY]
    trained = subprocess.run(
        [os.fsencode(BIN / "vae"), b"train", name, b"--runs-dir", runs, b"--data-dir", data,
         *tiny, b"--epochs", b"2"],
        capture_output=True, timeout=300,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr.decode(errors="replace")
    run = runs + b"/" + name
    files = set(os.listdir(run))
    assert {b"checkpoint_best.safetensors", b"checkpoint_last.safetensors", b"curves.png"} <= files

    os.unlink(run + b"/curves.png")
    redrawn = subprocess.run(
        [os.fsencode(BIN / "vae"), b"visualize", b"curves", run], capture_output=True, timeout=120
    )
    assert redrawn.returncode == 0, redrawn.stderr.decode(errors="replace")
    assert b"Traceback" not in redrawn.stderr
    assert os.path.getsize(run + b"/curves.png") > 0

    # The latent map's title names the checkpoint, in the same folder.
    mapped = subprocess.run(
        [os.fsencode(BIN / "vae"), b"visualize", b"latent-map", b"--checkpoint",
         run + b"/checkpoint_best.safetensors", b"--data-dir", data, b"--no-download",
         b"--limit", b"20", b"--output", run + b"/map.png"],
        capture_output=True, timeout=120,
    )  # fmt: skip
    assert mapped.returncode == 0, mapped.stderr.decode(errors="replace")
    assert _png_size(Path(os.fsdecode(run + b"/map.png")))[0] > 100


# --- the largest seeds -------------------------------------------------------------------------


def test_the_shuffle_of_existing_runs_is_unchanged():
    # Orders recorded before the batch seed was taken modulo 2**64: seed 0 made seed -1, which
    # torch reads as 2**64 - 1; 18,446,080 was the largest run seed that worked at epoch 0.
    assert epoch_order(12, 0, 0).tolist() == [3, 1, 8, 9, 2, 6, 10, 11, 0, 5, 7, 4]
    assert epoch_order(12, 42, 3).tolist() == [2, 10, 4, 9, 0, 1, 7, 8, 11, 3, 6, 5]
    assert epoch_order(12, 18_446_080, 0).tolist() == [0, 2, 10, 1, 6, 9, 5, 3, 7, 4, 11, 8]
    # The binarization noise of batch 5 of epoch 3 of seed 7: the same number as before.
    assert batch_seed(7, 3, 5) == (7 * 1_000_003 + 3) * 1_000_033 + 5


@pytest.mark.parametrize("seed", [18_446_081, 2**64 - 1])
def test_a_seed_up_to_the_largest_accepted_trains(seed, synthetic_data_dir, tmp_path):
    for epoch in (0, 10**6):
        assert sorted(epoch_order(10, seed, epoch).tolist()) == list(range(10))
    result = runner.invoke(
        app,
        ["train", "big-seed", "--runs-dir", str(tmp_path), "--data-dir", str(synthetic_data_dir),
         "--seed", str(seed), *TINY],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (tmp_path / "big-seed" / "checkpoint_best.safetensors").exists()


# --- a latent map of one image -----------------------------------------------------------------


def test_a_latent_map_of_one_test_image_draws_its_point(trained_run, synthetic_data_dir, tmp_path):
    output = tmp_path / "map.png"
    result = runner.invoke(
        app,
        ["visualize", "latent-map", "--checkpoint", str(trained_run / "checkpoint_best.safetensors"),
         "--data-dir", str(synthetic_data_dir), "--no-download", "--limit", "1",
         "--output", str(output)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert _png_size(output)[0] > 100


def test_a_latent_map_of_one_input_file_draws_its_point(trained_run, tmp_path):
    picture = tmp_path / "one.png"
    Image.fromarray(np.tile(np.arange(28, dtype=np.uint8) * 9, (28, 1))).save(picture)
    output = tmp_path / "map.png"
    result = runner.invoke(
        app,
        ["visualize", "latent-map", "--checkpoint", str(trained_run / "checkpoint_best.safetensors"),
         "--input", str(picture), "--output", str(output)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert _png_size(output)[0] > 100


def test_the_explorers_map_of_one_test_image_is_one_point(trained_run, synthetic_data_dir):
    checkpoint = trained_run / "checkpoint_best.safetensors"
    encoder = Encoder(checkpoint, data_dir=str(synthetic_data_dir), download=False, limit=1)
    encoder.load(Reporter())
    client = TestClient(
        build_app(Decoder(checkpoint), encoder, Reporter()), base_url="http://127.0.0.1"
    )
    answer = client.get("/api/map")
    assert answer.status_code == 200, answer.text
    found = answer.json()
    assert len(found["points"]) == 1 and len(found["points"][0]) == 2
    assert found["axes"] == ["PC1", "PC2"] and "(1 image" in found["title"]


# --- a class label beyond any integer type -----------------------------------------------------


@pytest.mark.parametrize("label", ["99999999999999999999", "-1"])
def test_a_chain_class_that_no_image_has_is_one_line(
    label, trained_run, synthetic_data_dir, tmp_path
):
    output = tmp_path / "chain.png"
    result = runner.invoke(
        app,
        ["visualize", "interpolate", "--checkpoint", str(trained_run / "checkpoint_best.safetensors"),
         "--data-dir", str(synthetic_data_dir), "--no-download", "--chain", f"{label},1",
         "--output", str(output)],
    )  # fmt: skip
    one_line_error(result, 1, f"class {label}", "--chain")
    assert list(tmp_path.iterdir()) == []


# --- a configuration nested a thousand deep ----------------------------------------------------


@pytest.mark.parametrize("text", ["[" * 1000, "train:\n  epochs: " + "{a: " * 1000])
def test_a_config_nested_too_deeply_is_one_line_naming_the_file(text, tmp_path):
    config = tmp_path / "deep.yaml"
    config.write_text(text)
    result = runner.invoke(
        app, ["train", "deep", "--config", str(config), "--runs-dir", str(tmp_path / "runs")]
    )
    one_line_error(result, 2, str(config), "nested too deeply")
    assert not (tmp_path / "runs").exists()


# --- run folders that are not writable folders -------------------------------------------------


def _train_into(runs: Path, name: str, data_dir: Path):
    return runner.invoke(
        app, ["train", name, "--runs-dir", str(runs), "--data-dir", str(data_dir), *TINY]
    )


def test_a_run_folder_linked_to_dev_null_is_not_a_folder(synthetic_data_dir, tmp_path):
    (tmp_path / "null").symlink_to(os.devnull)
    line = one_line_error(
        _train_into(tmp_path, "null", synthetic_data_dir), 1, "is a link to a device, not a folder"
    )
    assert ".lock" not in line and "remove" not in line
    assert os.readlink(tmp_path / "null") == os.devnull
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)


def test_a_run_folder_that_is_a_named_pipe_is_not_a_folder(synthetic_data_dir, tmp_path):
    os.mkfifo(tmp_path / "pipe")
    line = one_line_error(
        _train_into(tmp_path, "pipe", synthetic_data_dir), 1, "is a named pipe, not a folder"
    )
    assert ".lock" not in line
    assert stat.S_ISFIFO(os.lstat(tmp_path / "pipe").st_mode)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["pipe"]


def _unprivileged(tmp_path: Path) -> list[str]:
    """A command prefix under which a 0o555 folder refuses writes: none for a normal user; for
    root (whom permissions do not stop), setpriv dropping the power to override them."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root, where a 0o555 folder is writable, and setpriv is missing")
    prefix = [setpriv, "--bounding-set", "-dac_override,-dac_read_search", "--"]
    probe = tmp_path / "probe"
    probe.mkdir(mode=0o555)
    tried = subprocess.run([*prefix, "touch", str(probe / "x")], capture_output=True, timeout=30)
    probe.rmdir()
    if tried.returncode == 0 or b"setpriv" in tried.stderr:
        pytest.skip("running as root, and setpriv cannot drop the power to override permissions")
    return prefix


def test_a_read_only_run_folder_says_it_is_not_writable(synthetic_data_dir, tmp_path):
    prefix = _unprivileged(tmp_path)
    runs = tmp_path / "runs"
    (runs / "old").mkdir(parents=True)
    (runs / "old" / "notes.txt").write_text("kept")
    for folder in (runs / "old", runs):
        folder.chmod(0o555)
    try:
        answers = {
            name: subprocess.run(
                [
                    *prefix,
                    str(BIN / "vae"),
                    "train",
                    name,
                    "--runs-dir",
                    str(runs),
                    "--data-dir",
                    str(synthetic_data_dir),
                    *TINY,
                ],
                capture_output=True,
                text=True,
                timeout=120,
            )  # fmt: skip
            for name in ("old", "new")
        }
    finally:
        for folder in (runs, runs / "old"):
            folder.chmod(0o755)
    expected = {
        "old": f"error: cannot write in run folder {runs / 'old'} (Permission denied)",
        "new": f"error: cannot create run folder {runs / 'new'} (Permission denied)",
    }
    for name, answer in answers.items():
        assert answer.returncode == 1, answer.stderr
        assert answer.stderr.strip() == expected[name]
    assert sorted(path.name for path in runs.iterdir()) == ["old"]
    assert [path.name for path in (runs / "old").iterdir()] == ["notes.txt"]
    assert (runs / "old" / "notes.txt").read_text() == "kept"


def test_torch_reads_a_seed_modulo_2_64():
    # What keeps the recorded orders above: the old seed -1 and the new 2**64 - 1 draw alike.
    first = torch.randperm(20, generator=torch.Generator().manual_seed(-1))
    second = torch.randperm(20, generator=torch.Generator().manual_seed(2**64 - 1))
    assert torch.equal(first, second)
