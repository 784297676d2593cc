"""Bad options, bad images and failing disks: one line, the right exit code, nothing lost."""

from __future__ import annotations

import errno
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import one_line_error
from vae.cli import app
from vae.config import load_config_file
from vae.data import MAX_IMAGE_PIXELS, read_image_files

runner = CliRunner()
CLICK_PARSED = pytest.mark.click_parsed
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def tiny_run(trained_run) -> Path:
    """The session's shared run (tests/conftest.py); tests that change it copy it first."""
    return trained_run


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--latent-dim", "0"], "--latent-dim"),
        (["--latent-dim", "-3"], "--latent-dim"),
        (["--batch-size", "0"], "--batch-size"),
        (["--hidden-sizes", "0"], "--hidden-sizes"),
        (["--conv-widths", "4,-1"], "--conv-widths"),
        (["--lr", "-1"], "--lr"),
        (["--lr", "nan"], "--lr"),
        (["--image-size", "0"], "--image-size"),
        (["--val-size", "0"], "--val-size"),
        (["--dataset", "folder:"], "--dataset"),
        (["--dataset", "imagenett"], "invalid value for --dataset"),
        (["--beta-schedule", "wavy"], "invalid value for --beta-schedule: 'wavy'"),
        (["--hidden-sizes", "12,abc"], "invalid value for --hidden-sizes"),
        (["--beta-warmup", "soon"], "invalid value for --beta-warmup"),
        (["--epochs", "0"], "invalid value for --epochs"),
        (["--seed", str(2**64)], "invalid value for --seed"),
        # Refused by click's own parsing: the installed command prints one line (see
        # test_entry_points.py); under CliRunner click's boxed usage message is shown instead.
        pytest.param(["--lr", "fast"], "invalid value for '--lr'", marks=CLICK_PARSED),
        pytest.param(["--no-such-option"], "no such option: --no-such-option", marks=CLICK_PARSED),
    ],
)
def test_bad_training_options_exit_2_naming_the_flag(
    tmp_path, synthetic_data_dir, flags, fragment, request
):
    """The one table of bad train flags: exit 2, one error line naming the flag, no run folder."""
    result = runner.invoke(
        app,
        ["train", "x", "--runs-dir", str(tmp_path), "--data-dir", str(synthetic_data_dir),
         "--no-download", *flags],
    )  # fmt: skip
    if request.node.get_closest_marker("click_parsed"):
        assert result.exit_code == 2 and fragment in result.output.lower(), result.output
    else:
        one_line_error(result, 2, fragment)
    assert "Traceback" not in result.output
    assert not (tmp_path / "x").exists()


def test_unknown_yaml_keys_are_all_named(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("model:\n  latent: 3\n  widths: [1]\n")
    result = runner.invoke(app, ["train", "x", "--config", str(path), "--runs-dir", str(tmp_path)])
    one_line_error(result, 2, "unknown options 'model.latent', 'model.widths'")


def test_grid_larger_than_the_samples_is_refused(tmp_path, tiny_run):
    output = tmp_path / "g.png"
    result = runner.invoke(
        app,
        ["generate", "--checkpoint", str(tiny_run / "checkpoint_best.safetensors"),
         "--num-samples", "10", "--grid-size", "16", "--output", str(output)],
    )  # fmt: skip
    one_line_error(result, 2, "--grid-size", "--num-samples")
    assert not output.exists()


@pytest.mark.parametrize(
    "failure",
    [
        MemoryError(),
        RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 9 bytes"),
        RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB"),
    ],
)
def test_running_out_of_memory_is_one_line(tmp_path, tiny_run, monkeypatch, failure):
    """An allocation that fails anyway (a model within the limits, a machine without the memory)
    is one line with what to make smaller, and the output is not written."""

    def fail(*args, **kwargs):
        raise failure

    monkeypatch.setattr("vae.sampling.sample_images", fail)
    output = tmp_path / "g.png"
    checkpoint = tiny_run / "checkpoint_best.safetensors"
    result = runner.invoke(
        app, ["generate", "--checkpoint", str(checkpoint), "--output", str(output)]
    )
    one_line_error(result, 1, "out of memory", "smaller")
    assert not output.exists()


def test_other_runtime_errors_are_not_called_out_of_memory(tmp_path, tiny_run, monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr("vae.sampling.sample_images", fail)
    checkpoint = tiny_run / "checkpoint_best.safetensors"
    result = runner.invoke(
        app, ["generate", "--checkpoint", str(checkpoint), "--output", str(tmp_path / "g.png")]
    )
    assert isinstance(result.exception, RuntimeError) and "out of memory" not in result.output


def write_png(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path)
    return path


def evaluate_input(checkpoint: Path, input_path: Path):
    return runner.invoke(
        app,
        ["evaluate", "--checkpoint", str(checkpoint), "--input", str(input_path), "--k", "2",
         "--quiet"],
    )  # fmt: skip


@pytest.mark.parametrize("kind", ["empty folder", "text files only", "corrupt png", "missing"])
def test_unusable_input_is_one_line_exit_1(tmp_path, tiny_run, kind):
    folder = tmp_path / "input"
    folder.mkdir()
    if kind == "text files only":
        (folder / "notes.txt").write_text("not an image")
    elif kind == "corrupt png":
        noise = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
        good = write_png(folder / "good.png", noise)
        (folder / "bad.png").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif kind == "missing":
        folder = tmp_path / "nowhere"
    for command in ("evaluate", "inference"):
        if command == "evaluate":
            result = evaluate_input(tiny_run / "checkpoint_best.safetensors", folder)
        else:
            result = runner.invoke(
                app,
                ["inference", "--checkpoint", str(tiny_run / "checkpoint_best.safetensors"),
                 "--input", str(folder), "--output-dir", str(tmp_path / "out")],
            )  # fmt: skip
        one_line_error(result, 1, str(folder.name))


def test_decompression_bomb_is_refused_before_decoding(tmp_path, tiny_run):
    side = int(MAX_IMAGE_PIXELS**0.5) + 100
    bomb = write_png(tmp_path / "bomb" / "big.png", np.zeros((side, side), np.uint8))
    result = evaluate_input(tiny_run / "checkpoint_best.safetensors", bomb.parent)
    one_line_error(result, 1, "pixel limit")


def test_sixteen_bit_rgba_and_palette_images_are_converted_not_clipped(tmp_path):
    ramp = np.linspace(0, 65535, 28 * 28).reshape(28, 28).astype(np.uint16)
    sixteen = tmp_path / "sixteen.png"
    Image.fromarray(ramp).save(sixteen)
    assert Image.open(sixteen).mode.startswith("I")
    grey = read_image_files([sixteen], 28, 1)[0, 0].numpy().astype(float)
    assert np.abs(grey - ramp / 257.0).max() <= 1.0  # scaled to 8 bits, not clipped at 255

    rgba = np.zeros((28, 28, 4), np.uint8)
    rgba[..., :3] = 255
    rgba[:14, :, 3] = 255  # top half opaque white, bottom half transparent white
    path = write_png(tmp_path / "rgba.png", rgba, "RGBA")
    grey = read_image_files([path], 28, 1)[0, 0].numpy()
    assert grey[:12].min() == 255 and grey[16:].max() == 0  # transparent -> black background

    palette = Image.fromarray(np.arange(28 * 28, dtype=np.uint8).reshape(28, 28) % 2 * 255)
    palette.convert("P").save(tmp_path / "palette.png")
    grey = read_image_files([tmp_path / "palette.png"], 28, 1)[0, 0].numpy()
    assert set(np.unique(grey).tolist()) == {0, 255}


@pytest.mark.parametrize("error_number", [errno.ENOSPC, errno.EROFS])
def test_failing_disk_keeps_the_previous_checkpoint_and_config(
    tmp_path, tiny_run, monkeypatch, error_number, synthetic_data_dir
):
    import shutil

    import vae.fileio as fileio

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    real_open = open

    def failing_open(path, mode="r", *args, **kwargs):
        handle = real_open(path, mode, *args, **kwargs)
        if "w" in mode and str(path).endswith(".tmp") and ".safetensors" in str(path):

            class Failing:
                def __enter__(self):
                    return self

                def __exit__(self, *exc):
                    handle.close()
                    return False

                def write(self, data):
                    raise OSError(error_number, "simulated " + os.strerror(error_number))

                def __getattr__(self, name):
                    return getattr(handle, name)

            return Failing()
        return handle

    monkeypatch.setattr(fileio, "open", failing_open, raising=False)
    data = ["--data-dir", str(synthetic_data_dir)]
    result = runner.invoke(app, ["train", "--resume", str(run), "--epochs", "3", *data])
    # train prints its progress first; the failure is its last line and the only error line.
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit | None)
    assert [line for line in lines if line.startswith("error:")] == lines[-1:], result.output
    assert (
        "simulated" in lines[-1] and "checkpoint_" in lines[-1] and "Traceback" not in result.output
    )
    after = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    for name in ("checkpoint_best.safetensors", "checkpoint_last.safetensors"):
        assert after[name] == before[name], name
    # config.yaml was rewritten (atomically) when the resume started, to say --epochs 3.
    assert load_config_file(run / "config.yaml").train.epochs == 3
    # metrics.jsonl is written just before checkpoint_last: it may hold the failed epoch's record
    # after the old ones (a resume drops it), never fewer or changed records.
    assert after["metrics.jsonl"].startswith(before["metrics.jsonl"])
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]
    monkeypatch.undo()
    resumed = runner.invoke(app, ["train", "--resume", str(run), "--epochs", "3", "--quiet", *data])
    assert resumed.exit_code == 0, resumed.output  # the disk is back: the run goes on
    records = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in records] == [1, 2, 3]


def test_source_has_no_unsafe_loaders():
    """No pickle-based or code-running loaders in the package or the benchmarks (a test writes
    CIFAR-100's pickled fixture, the format torchvision reads)."""
    pattern = re.compile(
        r"torch\.load\(|import pickle|pickle\.|yaml\.load\(|yaml\.unsafe_load|yaml\.Loader"
        r"|(?<![\w.])eval\(|(?<![\w.])exec\("
    )
    offenders = []
    for folder in ("vae", "benchmarks"):
        for path in (REPO / folder).rglob("*.py"):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if pattern.search(line):
                    offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_a_diverging_learning_rate_stops_with_the_last_good_checkpoints(
    trained_run, tmp_path, monkeypatch, synthetic_data_dir
):
    """Weights that blow up in epoch 3 of a resumed run: train stops with one error line naming
    --lr, and the checkpoints of epoch 2 are kept byte for byte and still load, finite."""
    import shutil

    import torch

    from vae.checkpoint import load_model

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.name.endswith(".safetensors")}
    assert set(before) == {"checkpoint_best.safetensors", "checkpoint_last.safetensors"}
    real_step = torch.optim.Adam.step

    def exploding_step(self, *args, **kwargs):  # what a learning rate of 1e30 does to weights
        result = real_step(self, *args, **kwargs)
        with torch.no_grad():
            for group in self.param_groups:
                for parameter in group["params"]:
                    parameter.mul_(1e30)
        return result

    monkeypatch.setattr(torch.optim.Adam, "step", exploding_step)
    result = runner.invoke(
        app, ["train", "--resume", str(run), "--epochs", "3", "--quiet",
              "--data-dir", str(synthetic_data_dir)],
    )  # fmt: skip
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1, result.output
    assert lines[-1].startswith("error:") and "became" in lines[-1] and "--lr" in lines[-1]
    assert "epoch 3" in lines[-1], lines[-1]
    monkeypatch.undo()
    after = {p.name: p.read_bytes() for p in run.iterdir() if p.name.endswith(".safetensors")}
    assert after == before
    for name in before:
        model = load_model(run / name)
        assert all(torch.isfinite(p).all() for p in model.parameters())


def test_a_file_named_png_holding_eps_never_reaches_ghostscript(tmp_path, tiny_run, monkeypatch):
    """Pillow judges files by content: an EPS file named .png would be opened as EPS, whose loader
    runs Ghostscript on it. Only the formats of the image extensions are tried."""
    from PIL import EpsImagePlugin

    opened = []
    original = EpsImagePlugin.EpsImageFile._open
    monkeypatch.setattr(
        EpsImagePlugin.EpsImageFile, "_open", lambda self: opened.append(1) or original(self)
    )
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "digit.png").write_bytes(
        b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 28 28\nshowpage\n"
    )
    result = evaluate_input(tiny_run / "checkpoint_best.safetensors", folder)
    one_line_error(result, 1, "digit.png")
    assert not opened


def test_a_malformed_local_world_size_is_a_clear_error(monkeypatch):
    from vae.config import DataConfig
    from vae.data.storage import Storage
    from vae.errors import ConfigError

    monkeypatch.setenv("LOCAL_WORLD_SIZE", "two")
    with pytest.raises(ConfigError, match="LOCAL_WORLD_SIZE='two' is not an integer"):
        Storage.for_config(DataConfig())
