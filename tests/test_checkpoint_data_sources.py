"""A checkpoint is data: the ``folder:`` or ``hf:`` source its metadata names is never read or
fetched unless the user passes it with --dataset (or gives images with --input), and a model's
``folder:`` source passed with --dataset is scored on its fixed test tenth, as training split
it; --input and --ood-dataset folder: keep every image (issue 28, A1 and A4)."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from conftest import one_line_error
from vae.cli import app
from vae.reporting import Reporter

runner = CliRunner()
FOLDER_IMAGES = 40  # a fixed tenth of them, 4, is the test split
HUB_NAME = "attacker/evil-dataset"


def _image_folder(folder: Path, count: int = FOLDER_IMAGES) -> Path:
    folder.mkdir(parents=True)
    generator = np.random.default_rng(3)
    for index in range(count):
        Image.fromarray(generator.integers(0, 256, (28, 28), dtype=np.uint8)).save(
            folder / f"{index:03d}.png"
        )
    return folder


def _checkpoint_naming(source: str, trained_run: Path, tmp_path: Path) -> Path:
    """The shared run's checkpoint with its metadata's dataset replaced by ``source``."""
    from test_hostile_checkpoints import with_metadata

    def rename(vae: dict) -> None:
        vae["data"]["dataset"] = source

    original = (trained_run / "checkpoint_best.safetensors").read_bytes()
    path = tmp_path / "stranger.safetensors"
    path.write_bytes(with_metadata(original, rename))
    return path


@pytest.fixture
def touched(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """Every way to a folder's files or a Hugging Face dataset, and every address lookup (the
    Hub's HEAD requests start with one), is recorded and fails; the decoded cache goes under
    tmp_path."""
    import vae.data.decoding
    import vae.data.folder
    import vae.data.hf
    import vae.data.test_images

    calls: list[str] = []

    def refuse(name: str):
        def call(*args: object, **kwargs: object) -> None:
            calls.append(name)
            raise AssertionError(f"{name} was called")

        return call

    monkeypatch.setattr(vae.data.folder, "load_folder", refuse("load_folder"))
    monkeypatch.setattr(vae.data.hf, "load_hf", refuse("load_hf"))
    monkeypatch.setattr(vae.data.decoding, "collect_image_files", refuse("collect_image_files"))
    monkeypatch.setattr(vae.data.test_images, "collect_image_files", refuse("collect_image_files"))
    monkeypatch.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
    monkeypatch.setenv("VAE_CACHE_DIR", str(tmp_path / "cache"))
    return calls


@pytest.fixture
def cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Decoded folders go under tmp_path."""
    monkeypatch.setenv("VAE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


SOURCES = [f"hf:{HUB_NAME}", "folder:/usr", "folder:{images}"]
COMMANDS = {
    "evaluate": ["evaluate", "--k", "2", "--quiet"],
    "inference": ["inference", "--mode", "reconstruct", "--num-images", "4"],
    "interpolate": ["visualize", "interpolate", "--pairs", "1", "--steps", "3"],
    "traverse": ["visualize", "traverse", "--steps", "3"],
    "latent-map": ["visualize", "latent-map"],
    "manifold": ["visualize", "manifold", "--size", "3"],
}


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_checkpoints_folder_or_hub_source_is_named_never_read(
    trained_run, tmp_path, touched, source, command
):
    images = _image_folder(tmp_path / "images")
    source = source.format(images=images)
    checkpoint = _checkpoint_naming(source, trained_run, tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    arguments = [*COMMANDS[command], "--checkpoint", str(checkpoint), "--no-download"]
    if command == "inference":
        arguments += ["--output-dir", str(out)]
    elif command != "evaluate":
        arguments += ["--output", str(out / "picture.png")]
    result = runner.invoke(app, arguments)
    one_line_error(result, 1, f"trained on {source}", f"pass --dataset {source}", "--input")
    assert touched == []
    assert list(out.iterdir()) == []


def test_inference_still_samples_from_a_checkpoint_whose_source_it_does_not_read(
    trained_run, tmp_path, touched
):
    checkpoint = _checkpoint_naming("folder:/usr", trained_run, tmp_path)
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        ["inference", "--checkpoint", str(checkpoint), "--num-samples", "4", "--grid-size", "2",
         "--output-dir", str(out)],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "wrote 4 samples" in result.output and [p.name for p in out.iterdir()] == ["samples.png"]
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: no reconstructions: the checkpoint was trained on folder:/usr, which is read only "
        "when you ask: pass --dataset folder:/usr to use it, or give images with --input"
    ]
    assert touched == []


@pytest.mark.parametrize("source", [f"hf:{HUB_NAME}", "folder:/usr"])
def test_the_explorer_names_a_checkpoints_source_without_touching_it(
    trained_run, tmp_path, touched, source
):
    from vae.explore.encoder import FAILED, READY, Encoder

    class Warnings(Reporter):
        def __init__(self) -> None:
            self.lines: list[str] = []

        def warning(self, text: str) -> None:
            self.lines.append(text)

    checkpoint = _checkpoint_naming(source, trained_run, tmp_path)
    reporter = Warnings()
    encoder = Encoder(checkpoint, download=True)
    encoder.load(reporter)
    assert encoder.status["encoder"].state == READY  # uploads still work
    reason = encoder.status["test_images"].reason
    assert encoder.status["test_images"].state == FAILED
    assert f"trained on {source}" in reason and f"--dataset {source}" in reason
    # The explorer has no --input: its own images are uploads.
    assert "--input" not in reason and reason.endswith("or give images with an upload")
    assert len(reporter.lines) == 1 and source in reporter.lines[0]
    assert touched == []


def test_the_explorer_shows_a_folder_given_with_dataset(trained_run, tmp_path, cache):
    from vae.explore.encoder import READY, Encoder

    images = _image_folder(tmp_path / "images")
    checkpoint = _checkpoint_naming(f"folder:{images}", trained_run, tmp_path)
    encoder = Encoder(checkpoint, dataset=f"folder:{images}")
    encoder.load(Reporter())
    assert encoder.status["test_images"].state == READY, encoder.status["test_images"].reason
    assert len(encoder.test_set("mapped").images) == FOLDER_IMAGES // 10


def test_evaluate_scores_a_folder_models_fixed_test_tenth_and_input_every_image(
    trained_run, tmp_path, cache
):
    images = _image_folder(tmp_path / "images")
    checkpoint = _checkpoint_naming(f"folder:{images}", trained_run, tmp_path)
    base = ["evaluate", "--checkpoint", str(checkpoint), "--k", "2", "--quiet", "--no-download"]
    counts = {}
    for name, extra in (
        ("dataset", ["--dataset", f"folder:{images}"]),
        ("input", ["--input", str(images)]),
        ("ood", ["--dataset", f"folder:{images}", "--ood-dataset", f"folder:{images}",
                 "--histogram", str(tmp_path / "histogram.png")]),
    ):  # fmt: skip
        report = tmp_path / f"{name}.json"
        result = runner.invoke(app, [*base, *extra, "--output", str(report)])
        assert result.exit_code == 0, result.output
        counts[name] = json.loads(report.read_text())
    assert counts["dataset"]["num_images"] == FOLDER_IMAGES // 10
    assert counts["dataset"]["dataset"] == f"folder:{images}"
    assert counts["input"]["num_images"] == FOLDER_IMAGES
    assert counts["ood"]["num_images"] == FOLDER_IMAGES // 10
    assert counts["ood"]["ood"]["num_out"] == FOLDER_IMAGES  # an outlier folder: every image


def test_a_folders_test_images_are_the_tenth_training_held_out(tmp_path, cache):
    from vae.config import DataConfig
    from vae.data import (
        ImageSource,
        collect_image_files,
        load_grey_splits,
        load_test_set,
        read_image_files,
    )

    images = _image_folder(tmp_path / "images")
    info = {"dataset": "folder:/elsewhere", "channels": 1, "height": 28, "width": 28}
    test = load_test_set(info, ImageSource(dataset=f"folder:{images}")).images
    training = load_grey_splits(
        DataConfig(dataset=f"folder:{images}", image_size=28, channels=1, val_size=4)
    )
    assert torch.equal(test, training.test.images)
    every = read_image_files(collect_image_files(images), 28, 1)
    held_out = [i for i in range(FOLDER_IMAGES) if any(torch.equal(every[i], t) for t in test)]
    assert len(held_out) == len(test) == FOLDER_IMAGES // 10
    for picture in training.train.images:  # none of them was trained on
        assert not any(torch.equal(picture, every[i]) for i in held_out)


def test_inference_and_visualize_use_a_folder_given_with_dataset(trained_run, tmp_path, cache):
    images = _image_folder(tmp_path / "images")
    checkpoint = _checkpoint_naming(f"folder:{images}", trained_run, tmp_path)
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        ["inference", "--checkpoint", str(checkpoint), "--dataset", f"folder:{images}",
         "--num-images", "8", "--num-samples", "4", "--grid-size", "2", "--output-dir", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "wrote 4 reconstructions" in result.output  # the test tenth: 4 of the 40
    result = runner.invoke(
        app,
        ["visualize", "traverse", "--checkpoint", str(checkpoint), "--dataset", f"folder:{images}",
         "--steps", "3", "--include-inactive", "--output", str(out / "traversal.png")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (out / "traversal.png").is_file()
    # The folder given is read, so no output may land on one of its images.
    before = (images / "001.png").read_bytes()
    result = runner.invoke(
        app,
        ["visualize", "traverse", "--checkpoint", str(checkpoint), "--dataset", f"folder:{images}",
         "--output", str(images / "001.png")],
    )  # fmt: skip
    one_line_error(result, 1, "refusing", "reads")
    assert (images / "001.png").read_bytes() == before


@pytest.mark.parametrize("command", ["inference", "traverse"])
def test_dataset_and_input_together_are_refused(trained_run, tmp_path, command):
    arguments = [
        *COMMANDS[command],
        "--checkpoint",
        str(trained_run / "checkpoint_best.safetensors"),
    ]
    out = tmp_path / "out"
    out.mkdir()
    arguments += (
        ["--output-dir", str(out)] if command == "inference" else ["--output", str(out / "t.png")]
    )
    images = _image_folder(tmp_path / "images", count=2)
    result = runner.invoke(app, [*arguments, "--dataset", "mnist", "--input", str(images)])
    one_line_error(result, 2, "give --dataset or --input, not both")
    assert list(out.iterdir()) == []


def test_no_download_holds_for_a_hub_dataset(trained_run, tmp_path, monkeypatch):
    """``--no-download`` with a hub name that would need the network: one line at once, and no
    address is looked up; the libraries' offline switches are back as they were afterwards."""
    datasets = pytest.importorskip("datasets")
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-datasets")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-hub"))
    monkeypatch.setenv("VAE_CACHE_DIR", str(tmp_path / "cache"))
    lookups: list[object] = []

    def no_network(*args: object, **kwargs: object) -> None:
        lookups.append(args)
        raise OSError("no network in this test")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    switches = (datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE)
    started = time.monotonic()
    result = runner.invoke(
        app,
        ["evaluate", "--checkpoint", str(trained_run / "checkpoint_best.safetensors"),
         "--dataset", f"hf:{HUB_NAME}", "--no-download", "--k", "2", "--quiet"],
    )  # fmt: skip
    one_line_error(result, 1, f"'{HUB_NAME}'", "downloads being off")
    assert time.monotonic() - started < 10  # online, the library retries for about 25 s
    assert lookups == []
    assert (datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE) == switches


@pytest.mark.parametrize(
    "option, value, expected",
    [
        ("--dataset", "folder:", "invalid value for --dataset: 'folder:'"),
        ("--dataset", "hf:", "invalid value for --dataset: 'hf:'"),
        ("--ood-dataset", "folder:", "invalid value for --ood-dataset: 'folder:'"),
    ],
)
def test_an_empty_source_path_is_refused_not_read_as_the_current_folder(
    trained_run, synthetic_data_dir, tmp_path, monkeypatch, option, value, expected
):
    monkeypatch.chdir(tmp_path)  # which an empty path would walk
    checkpoint = str(trained_run / "checkpoint_best.safetensors")
    data = ["--data-dir", str(synthetic_data_dir), "--no-download"]
    result = runner.invoke(
        app, ["evaluate", "--checkpoint", checkpoint, option, value, "--k", "2", *data]
    )
    one_line_error(result, 2, expected)


def test_a_folder_source_that_is_a_file_says_so(trained_run, tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("not images")
    checkpoint = str(trained_run / "checkpoint_best.safetensors")
    result = runner.invoke(
        app, ["evaluate", "--checkpoint", checkpoint, "--dataset", f"folder:{plain}", "--k", "2"]
    )
    one_line_error(result, 1, f"{plain} is not a folder")
