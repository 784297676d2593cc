"""Shared fixtures: synthetic MNIST-format data (fast, always there) and the real data (optional)."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vae.config import RunConfig

REPO = Path(__file__).resolve().parents[1]


def assert_runs_without_torch(app_name: str, argv: list[str]) -> None:
    """Run ``vae.cli.<app_name>`` with ``argv`` in a fresh interpreter; it must succeed without
    ever importing torch (the start-up time users wait for is mostly ``import torch``)."""
    code = (
        "import sys\n"
        f"from vae.cli import {app_name}\n"
        f"sys.argv = {argv!r}\n"
        f"try:\n    {app_name}()\nexcept SystemExit as done:\n    assert done.code in (0, None), done.code\n"
        f"assert 'torch' not in sys.modules, '{argv[0]} imported torch'\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")


def _write_idx(path: Path, array: torch.Tensor) -> None:
    dims = list(array.shape)
    magic = 0x0800 + len(dims)
    with open(path, "wb") as handle:
        handle.write(struct.pack(">I", magic))
        handle.write(struct.pack(">" + "I" * len(dims), *dims))
        handle.write(array.to(torch.uint8).numpy().tobytes())


def make_synthetic_mnist(root: Path, train: int = 240, test: int = 60, seed: int = 0) -> Path:
    """MNIST's raw IDX layout with simple shapes (bars and blobs) that a VAE can learn quickly."""
    generator = torch.Generator().manual_seed(seed)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", train), ("t10k", test)):
        labels = torch.randint(0, 10, (count,), generator=generator)
        images = torch.zeros(count, 28, 28)
        rows = torch.arange(28).view(28, 1).float()
        cols = torch.arange(28).view(1, 28).float()
        for index in range(count):
            cy, cx = torch.randint(8, 20, (2,), generator=generator).float()
            radius = 3.0 + labels[index].item() / 2
            blob = ((rows - cy) ** 2 + (cols - cx) ** 2) <= radius**2
            images[index][blob] = 255.0
            if labels[index] % 2:
                images[index, :, int(cx)] = 200.0
        _write_idx(raw / f"{split}-images-idx3-ubyte", images)
        _write_idx(raw / f"{split}-labels-idx1-ubyte", labels)
    return root


@pytest.fixture(scope="session")
def synthetic_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_mnist(tmp_path_factory.mktemp("synthetic-data"))


@pytest.fixture
def tiny_config(synthetic_data_dir: Path, tmp_path: Path) -> RunConfig:
    """A run that trains in about a second on CPU."""
    config = RunConfig()
    config.data.dataset = "mnist"
    config.data.data_dir = str(synthetic_data_dir)
    config.data.download = False
    config.data.val_size = 40
    config.model.hidden_sizes = [32]
    config.model.conv_widths = [8, 16]
    config.model.latent_dim = 4
    config.objective.beta_warmup = "1"
    config.train.epochs = 2
    config.train.batch_size = 50
    config.train.device = "cpu"
    config.train.sample_every = 1
    config.train.runs_dir = str(tmp_path / "runs")
    return config


def real_data_dir() -> Path | None:
    """$VAE_DATA_DIR or ../shared/data, when it holds MNIST's raw files."""
    candidates = [os.environ.get("VAE_DATA_DIR"), str(REPO.parent / "shared" / "data")]
    for candidate in candidates:
        if candidate and (Path(candidate) / "MNIST" / "raw" / "train-images-idx3-ubyte").exists():
            return Path(candidate)
    return None


@pytest.fixture
def mnist_dir() -> Path:
    found = real_data_dir()
    if found is None:
        pytest.skip("real MNIST not found: set VAE_DATA_DIR to a folder holding MNIST/raw/")
    return found
