"""Offline, a trained model is shown its test images with only the test files on disk, and a
missing dataset is one sentence that names the option to pass (not torchvision's own text)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import REPO, make_synthetic_mnist, one_line_error
from vae.cli import app

runner = CliRunner()
SHIPPED = REPO / "pretrained" / "checkpoint_best.safetensors"
TRAINING_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")


@pytest.fixture(scope="module")
def test_files_only(tmp_path_factory) -> Path:
    """MNIST's raw layout holding the test files and no training file."""
    root = make_synthetic_mnist(tmp_path_factory.mktemp("test-only"))
    for name in TRAINING_FILES:
        (root / "MNIST" / "raw" / name).unlink()
    return root


def test_inference_and_evaluate_need_only_the_test_files(tmp_path, test_files_only):
    data = ["--data-dir", str(test_files_only), "--no-download"]
    out = tmp_path / "out"
    shown = runner.invoke(
        app, ["inference", "--mode", "reconstruct", "--output-dir", str(out), *data]
    )
    assert shown.exit_code == 0, shown.output
    assert (out / "reconstructions.png").exists()
    report = tmp_path / "e.json"
    scored = runner.invoke(
        app, ["evaluate", "--k", "2", "--limit", "8", "--quiet", "--output", str(report), *data]
    )
    assert scored.exit_code == 0, scored.output
    assert json.loads(report.read_text())["num_images"] == 8


def test_the_test_split_alone_is_the_one_every_split_gives(tmp_path, synthetic_data_dir):
    from vae.checkpoint import data_for_model, load_model, read_metadata
    from vae.data import ImageSource, load_test_set

    data_info = data_for_model(read_metadata(SHIPPED), load_model(SHIPPED).spec)
    source = ImageSource(data_dir=str(synthetic_data_dir), download=False)
    alone = load_test_set(data_info, source)
    # The whole dataset is there: the splits' own test set is the reference.
    from vae.config import DataConfig
    from vae.data import load_grey_splits

    config = DataConfig(dataset="mnist", data_dir=str(synthetic_data_dir), download=False,
                        image_size=28, channels=1, binarize="none")  # fmt: skip
    reference = load_grey_splits(config).test
    assert alone.images.equal(reference.in_memory().images)
    assert alone.labels.equal(reference.labels)


@pytest.mark.parametrize("keep", ["nothing", "training files only"])
def test_a_missing_dataset_is_one_sentence_naming_the_options(tmp_path, synthetic_data_dir, keep):
    root = tmp_path / "data"
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    if keep == "training files only":
        for name in TRAINING_FILES:
            shutil.copy(synthetic_data_dir / "MNIST" / "raw" / name, raw / name)
    result = runner.invoke(
        app,
        ["evaluate", "--k", "2", "--quiet", "--data-dir", str(root), "--no-download"],
    )
    line = one_line_error(
        result, 1, "dataset 'mnist' is not in", "t10k-images-idx3-ubyte", "--data-dir", "--download"
    )
    assert "download=True" not in line and "train-images" not in line
    assert sorted(p.name for p in raw.iterdir()) == (
        sorted(TRAINING_FILES) if keep != "nothing" else []
    )


def test_the_explorer_says_once_why_it_has_no_test_images(tmp_path):
    from starlette.testclient import TestClient

    from vae.explore.app import build_app
    from vae.explore.decoder import Decoder
    from vae.explore.encoder import MAP_NEEDS_TEST_IMAGES, Encoder
    from vae.reporting import Reporter

    empty = tmp_path / "empty"
    empty.mkdir()
    encoder = Encoder(SHIPPED, data_dir=str(empty), download=False)
    encoder.load(Reporter())
    client = TestClient(
        build_app(Decoder(SHIPPED), encoder, Reporter()), base_url="http://127.0.0.1"
    )
    features = client.get("/api/status").json()["features"]
    reason = features["test_images"]["reason"]
    assert "--data-dir" in reason and "--download" in reason and "download=True" not in reason
    assert features["latent_map"]["reason"] == MAP_NEEDS_TEST_IMAGES


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100", "svhn"])
def test_other_datasets_missing_offline_name_the_options_not_torchvisions(tmp_path, dataset):
    result = runner.invoke(
        app, ["train", "x", "--dataset", dataset, "--data-dir", str(tmp_path), "--no-download",
              "--runs-dir", str(tmp_path / "runs")],
    )  # fmt: skip
    line = one_line_error(result, 1, f"dataset '{dataset}' is not in", "--data-dir", "--download")
    assert "download=True" not in line
