"""Colour and larger images: SVHN and CelebA from fixtures in their own formats, photo folders
(centre crop, cached tensors), a learned Gaussian sigma, conv models at 32 and 64 px."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import vae.data
import vae.data.decoding
from conftest import one_line_error
from vae.checkpoint import load_model, read_metadata
from vae.cli import app
from vae.config import DataConfig, RunConfig, flag_of
from vae.data import CACHE_FOLDER, load_splits
from vae.errors import ConfigError, DataError
from vae.model import ModelSpec, build_model
from vae.objectives import gaussian_log_likelihood
from vae.training import train

runner = CliRunner()


def _write_svhn(root: Path, counts: dict[str, int]) -> dict[str, np.ndarray]:
    from scipy.io import savemat

    folder = root / "svhn"
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    rng = np.random.default_rng(0)
    for split, count in counts.items():
        images = rng.integers(0, 256, size=(32, 32, 3, count), dtype=np.uint8)
        labels = rng.integers(1, 11, size=(count, 1)).astype(np.uint8)  # 10 stands for 0
        savemat(folder / f"{split}_32x32.mat", {"X": images, "y": labels})
        written[split] = images
        written[f"{split}_labels"] = labels
    return written


def test_svhn_loads_from_its_matlab_files(tmp_path: Path) -> None:
    written = _write_svhn(tmp_path, {"train": 12, "test": 5})
    train_images, test_images = vae.data.load_raw(
        DataConfig(dataset="svhn", data_dir=str(tmp_path), download=False)
    )
    assert tuple(train_images.images.shape) == (12, 3, 32, 32)
    assert tuple(test_images.images.shape) == (5, 3, 32, 32)
    expected = torch.from_numpy(written["test"]).permute(3, 2, 0, 1)
    assert torch.equal(test_images.images, expected)
    labels = written["test_labels"].flatten().astype(np.int64) % 10
    assert test_images.labels is not None
    assert test_images.labels.tolist() == labels.tolist()
    assert 10 not in train_images.labels.tolist()  # type: ignore[union-attr]


def test_svhn_and_celeba_are_fetched_by_torchvision_when_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stands in for torchvision's downloaders (no network here): they are asked for the
    files, which are then read like any local copy."""
    import torchvision.datasets as tv

    asked: list[tuple[str, str]] = []

    class FakeSVHN:
        def __init__(self, root: str, download: bool, split: str) -> None:
            assert download
            asked.append(("svhn", split))
            _write_svhn(Path(root).parent, {split: 6})  # root is <data>/svhn

    class FakeCelebA:
        def __init__(self, root: str, download: bool, split: str, target_type: list) -> None:
            assert download and split == "all"
            asked.append(("celeba", split))
            _write_celeba(Path(root), [0, 2, 0])

    monkeypatch.setattr(tv, "SVHN", FakeSVHN)
    monkeypatch.setattr(tv, "CelebA", FakeCelebA)
    train_images, _ = vae.data.load_raw(DataConfig(dataset="svhn", data_dir=str(tmp_path)))
    assert len(train_images) == 6
    faces, test_faces = vae.data.load_raw(DataConfig(dataset="celeba", data_dir=str(tmp_path)))
    assert (len(faces), len(test_faces)) == (2, 1) and faces.images.shape[1:] == (3, 64, 64)
    assert asked == [("svhn", "train"), ("svhn", "test"), ("celeba", "all")]


def test_missing_svhn_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(DataError) as error:
        load_splits(DataConfig(dataset="svhn", data_dir=str(tmp_path), download=False), "mse")
    message = error.value.render(flag_of)  # as the command line shows it
    assert "\n" not in message
    assert "'svhn'" in message and str(tmp_path / "svhn") in message and "--data-dir" in message


def _face(width: int = 178, height: int = 218) -> Image.Image:
    """Red outside, white inside the centred 148-pixel square (what the CelebA crop keeps)."""
    array = np.zeros((height, width, 3), dtype=np.uint8)
    array[..., 0] = 255
    top, left = (height - 148) // 2, (width - 148) // 2
    array[top + 4 : top + 144, left + 4 : left + 144] = 255
    return Image.fromarray(array)


def _write_celeba(root: Path, partitions: list[int]) -> Path:
    folder = root / "celeba"
    (folder / "img_align_celeba").mkdir(parents=True)
    lines = []
    for index, partition in enumerate(partitions, start=1):
        name = f"{index:06d}.jpg"
        _face().save(folder / "img_align_celeba" / name, quality=95)
        lines.append(f"{name} {partition}")
    (folder / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    return folder


def test_celeba_loads_centre_cropped_and_caches_the_decoded_tensors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_celeba(tmp_path, [0, 0, 0, 1, 2, 0, 2])
    config = DataConfig(dataset="celeba", data_dir=str(tmp_path), download=False, image_size=16)
    train_images, test_images = vae.data.load_raw(config)
    assert tuple(train_images.images.shape) == (4, 3, 16, 16)  # partition 0
    assert tuple(test_images.images.shape) == (2, 3, 16, 16)  # partition 2
    # The 148-pixel centre crop keeps the white square; the red border is cut away.
    assert train_images.images[:, :, 2:-2, 2:-2].min() >= 235
    assert len(list((tmp_path / CACHE_FOLDER).glob("celeba-*/*.safetensors"))) == 2  # train, test

    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("decoded again although the cache holds the tensors")

    monkeypatch.setattr(vae.data.decoding, "decode_into", no_decoding)
    again, _ = vae.data.load_raw(config)
    assert torch.equal(again.images, train_images.images)


def test_celeba_with_a_bad_partition_file_is_one_clear_line(tmp_path: Path) -> None:
    folder = _write_celeba(tmp_path, [0, 2])
    (folder / "list_eval_partition.txt").write_text("000001.jpg train\n")
    with pytest.raises(DataError, match="dataset 'celeba' is not in .* or cannot be read .*line 1"):
        vae.data.load_raw(DataConfig(dataset="celeba", data_dir=str(tmp_path), download=False))


def _write_photos(folder: Path, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        array = np.zeros((20, 40, 3), dtype=np.uint8)  # wide: red sides, blue centre square
        array[..., 0] = 255
        array[:, 8:32] = (0, 0, 200 + index)  # a margin past the square: resampling reaches it
        Image.fromarray(array).save(folder / f"photo{index:02d}.png")


def test_a_photo_folder_is_centre_cropped_cached_and_refreshed_when_it_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    photos, data_root = tmp_path / "photos", tmp_path / "data"
    _write_photos(photos, 10)
    config = DataConfig(dataset=f"folder:{photos}", data_dir=str(data_root), image_size=8)
    train_images, test_images = vae.data.load_raw(config)
    assert len(train_images) + len(test_images) == 10
    pixels = torch.cat([train_images.images, test_images.images])
    assert pixels.shape[1:] == (3, 8, 8)
    assert pixels[:, 0].max() <= 10 and pixels[:, 2].min() >= 190  # blue centre only
    caches = list((data_root / CACHE_FOLDER).glob("folder-*/*.safetensors"))
    assert len(caches) == 1

    decoded: list[int] = []
    real_decoder = vae.data.decode_into

    def counting_decoder(out: Any, files: list[Path], *args: Any) -> None:
        decoded.append(len(files))
        real_decoder(out, files, *args)

    monkeypatch.setattr(vae.data.decoding, "decode_into", counting_decoder)
    vae.data.load_raw(config)
    assert decoded == []  # the second run reads the cache
    _write_photos(photos, 11)  # a new photo: the folder is decoded again
    train_images, test_images = vae.data.load_raw(config)
    assert decoded == [11] and len(train_images) + len(test_images) == 11
    # A damaged cache file is rebuilt, not trusted.
    for cache in (data_root / CACHE_FOLDER).glob("folder-*/*.safetensors"):
        cache.write_bytes(b"not a safetensors file")
    again, _ = vae.data.load_raw(config)
    assert decoded == [11, 11] and torch.equal(again.images, train_images.images)


def test_gaussian_log_likelihood_with_a_sigma_per_channel_matches_torch() -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 5, 5, generator=generator)
    mean = torch.rand(4, 3, 5, 5, generator=generator)
    sigma = torch.tensor([0.05, 0.2, 1.0]).view(1, 3, 1, 1)
    expected = torch.distributions.Normal(mean, sigma.expand_as(mean)).log_prob(x).sum((1, 2, 3))
    torch.testing.assert_close(gaussian_log_likelihood(mean, x, sigma), expected)


@pytest.mark.parametrize("size", [32, 64])
def test_conv_models_scale_to_colour_images_without_code_changes(size: int) -> None:
    spec = ModelSpec("conv", 8, 3, size, size, "mse", [64], [16, 32, 64], learned_sigma=True)
    model = build_model(spec)
    x = torch.rand(2, 3, size, size)
    decoded, mu, _ = model(x)
    assert decoded.shape == x.shape and mu.shape == (2, 8)
    assert model.sample(3).shape == (3, 3, size, size)
    assert model.likelihood_sigma(0.1).shape == (1, 3, 1, 1)


def test_learn_sigma_needs_the_gaussian_likelihood() -> None:
    config = RunConfig()
    config.objective.learn_sigma = True
    with pytest.raises(ConfigError, match="learn_sigma"):
        config.validate()


def test_a_colour_folder_run_learns_its_sigma_and_evaluates(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(1)
    for index in range(30):
        array = np.zeros((48, 40, 3), dtype=np.uint8)
        array[:, :, index % 3] = rng.integers(100, 256)
        Image.fromarray(array).save(photos / f"{index:02d}.png")
    config = RunConfig()
    config.data.dataset = f"folder:{photos}"
    config.data.data_dir = str(tmp_path / "data")
    config.data.image_size = 32
    config.data.val_size = 3
    config.model.conv_widths = [8, 16]
    config.model.hidden_sizes = [32]
    config.model.latent_dim = 4
    config.objective.likelihood = "mse"
    config.objective.learn_sigma = True
    config.objective.gaussian_sigma = 0.3
    config.objective.beta_warmup = "0"
    config.train.epochs = 3
    config.train.batch_size = 8
    config.train.device = "cpu"
    config.train.sample_every = 1
    config.train.runs_dir = str(tmp_path / "runs")
    result = train(config, tmp_path / "runs" / "colour")
    metadata = read_metadata(result.best_path)
    assert metadata["data"]["channels"] == 3 and metadata["data"]["height"] == 32
    learned = metadata["likelihood"]["learned_sigma"]
    assert len(learned) == 3 and all(0.0 < s for s in learned)
    assert any(not math.isclose(s, 0.3, rel_tol=1e-3) for s in learned)  # it moved
    model = load_model(result.best_path)
    assert model.likelihood_sigma(0.3).flatten().tolist() == pytest.approx(learned)
    report = tmp_path / "evaluation.json"
    evaluate = ["evaluate", "--checkpoint", str(result.best_path), "--k", "5", "--quiet",
                "--data-dir", str(tmp_path / "data"), "--output", str(report)]  # fmt: skip
    # The checkpoint's own folder is named, not read, until it is passed with --dataset.
    out = runner.invoke(app, evaluate)
    one_line_error(out, 1, f"trained on folder:{photos}", f"--dataset folder:{photos}")
    out = runner.invoke(app, [*evaluate, "--dataset", f"folder:{photos}"])
    assert out.exit_code == 0, out.output
    figures = json.loads(report.read_text())
    assert figures["num_images"] == 3  # the fixed tenth of 30 that training held out
    assert "sigma learned per channel" in figures["protocol"]
