"""A few checks on the real MNIST files (skipped with a reason when they are not found)."""

import math

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import REPO, grid_cells
from vae.cli import app
from vae.config import RunConfig
from vae.data import load_splits
from vae.training import train


def test_real_mnist_layout_is_found_without_download(mnist_dir):
    config = RunConfig().data
    config.data_dir = str(mnist_dir)
    config.download = False
    splits = load_splits(config, "bce")
    assert (len(splits.train), len(splits.val), len(splits.test)) == (55_000, 5_000, 10_000)
    assert tuple(splits.train.images.shape[1:]) == (1, 28, 28)


def test_training_on_a_small_real_subset_lowers_validation_loss(mnist_dir, tmp_path):
    config = RunConfig()
    config.data.data_dir = str(mnist_dir)
    config.data.download = False
    config.data.limit = 1_000  # enough to learn: -ELBO falls by about 100 nats in 3 epochs
    config.data.val_size = 250
    config.model.hidden_sizes = [64]
    config.model.conv_widths = [8, 16]
    config.objective.beta_warmup = "1"
    config.train.epochs = 3
    config.train.device = "cpu"
    config.train.sample_every = 0
    result = train(config, tmp_path / "real")
    losses = [record["val_neg_elbo"] for record in result.history]
    uniform = 784 * math.log(2)  # -log p(x) of a model that says 0.5 for every pixel
    assert losses[0] < uniform
    assert losses[-1] < losses[0] - 20, losses


def test_inference_reconstructs_real_test_images(mnist_dir, tmp_path):
    checkpoint = REPO / "pretrained" / "checkpoint_best.safetensors"
    if not checkpoint.exists():
        pytest.skip("no shipped checkpoint in this checkout yet")
    result = CliRunner().invoke(
        app,
        ["inference", "--checkpoint", str(checkpoint), "--data-dir", str(mnist_dir),
         "--output-dir", str(tmp_path), "--no-download"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    samples = grid_cells(tmp_path / "samples.png").reshape(64, 28, 28)
    for cell in samples:  # each a digit: light strokes on a dark background
        assert cell.min() < 30 and 0.02 < (cell > 128).mean() < 0.5
    # 32 test images: rows of originals, each above the row of their reconstructions.
    cells = grid_cells(tmp_path / "reconstructions.png").astype(float)
    assert cells.shape[:2] == (8, 8)
    originals, reconstructions = cells[0::2].reshape(32, 784), cells[1::2].reshape(32, 784)
    own = np.abs(originals - reconstructions).mean(1)  # each against its own reconstruction
    other = np.abs(originals - np.roll(reconstructions, 1, axis=0)).mean(1)  # another's
    assert (own < other).all() and own.mean() < 0.5 * other.mean(), (own, other)
