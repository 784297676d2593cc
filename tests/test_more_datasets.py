"""The other datasets the seed projects accept, each from a tiny fixture in its own on-disk
format: CIFAR-100's pickled batches, MedMNIST's .npz files, image-folder trees (ImageNet,
Tiny ImageNet, Places365, DTD). No network."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vae.data
from vae.config import DataConfig, flag_of
from vae.data import load_splits
from vae.errors import DataError


def test_cifar100_reads_its_pickled_batches_with_torchvision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pickle  # CIFAR's own format, written here as the fixture; vae never unpickles itself

    import torchvision.datasets as tv

    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(0)
    written = {}
    for split, count in (("train", 20), ("test", 6)):
        data = rng.integers(0, 256, (count, 3072), dtype=np.uint8)
        labels = rng.integers(0, 100, count).tolist()
        with open(folder / split, "wb") as handle:
            pickle.dump({"data": data, "fine_labels": labels, "coarse_labels": labels}, handle)
        written[split] = (data, labels)
    with open(folder / "meta", "wb") as handle:
        pickle.dump({"fine_label_names": [f"class{i}" for i in range(100)]}, handle)
    # The fixture's checksums are not the real files': skip only that check.
    monkeypatch.setattr(tv.cifar, "check_integrity", lambda *args, **kwargs: True)
    train, test = vae.data.load_raw(
        DataConfig(dataset="cifar100", data_dir=str(tmp_path), download=False)
    )
    assert tuple(train.images.shape) == (20, 3, 32, 32)
    data, labels = written["test"]
    assert torch.equal(test.images, torch.from_numpy(data).view(6, 3, 32, 32))
    assert test.labels is not None and test.labels.tolist() == labels


@pytest.mark.parametrize(
    ("name", "shape"),
    [
        ("chestmnist", (28, 28)),
        ("octmnist", (28, 28)),
        ("tissuemnist", (28, 28)),
        ("pneumoniamnist", (28, 28)),
        ("pneumoniamnist", (28, 28, 3)),  # colour MedMNIST files ([N, H, W, 3]) read too
    ],
)
def test_medmnist_reads_its_npz_files(tmp_path: Path, name: str, shape: tuple[int, ...]) -> None:
    folder = tmp_path / "medmnist"
    folder.mkdir()
    rng = np.random.default_rng(1)
    arrays = {}
    for split, count in (("train", 30), ("val", 4), ("test", 8)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (count, *shape), dtype=np.uint8)
        width = 14 if name == "chestmnist" else 1  # chestmnist is multi-label
        arrays[f"{split}_labels"] = rng.integers(0, 2, (count, width)).astype(np.uint8)
    np.savez(folder / f"{name}.npz", **arrays)
    splits = load_splits(
        DataConfig(dataset=name, data_dir=str(tmp_path), download=False, val_size=5), "bce"
    )
    channels = 3 if len(shape) == 3 else 1
    assert tuple(splits.test.images.shape) == (8, channels, 28, 28)
    assert len(splits.train) + len(splits.val) == 30
    expected = torch.from_numpy(arrays["test_images"])
    expected = expected.permute(0, 3, 1, 2) if channels == 3 else expected.unsqueeze(1)
    # The test split is binarized for the Bernoulli likelihood: compare the grey source instead.
    raw_train, raw_test = vae.data.load_raw(DataConfig(dataset=name, data_dir=str(tmp_path)))
    assert torch.equal(raw_test.images, expected)
    assert raw_test.labels is not None
    assert raw_test.labels.tolist() == arrays["test_labels"][:, 0].tolist()
    assert splits.info["binarize"] == "dynamic"


def test_missing_medmnist_without_its_package_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import builtins

    real_import = builtins.__import__

    def no_medmnist(name: str, *args: object, **kwargs: object) -> object:
        if name == "medmnist":
            raise ImportError("No module named 'medmnist'")
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", no_medmnist)
    with pytest.raises(DataError) as error:
        vae.data.load_raw(DataConfig(dataset="octmnist", data_dir=str(tmp_path)))
    assert "poetry install --extras medmnist" in str(error.value)
    assert "\n" not in str(error.value)
    with pytest.raises(DataError, match="dataset 'octmnist' is not in .*fetch it with download"):
        vae.data.load_raw(DataConfig(dataset="octmnist", data_dir=str(tmp_path), download=False))


def _image(path: Path, value: int, size: tuple[int, int] = (40, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, dtype=np.uint8)).save(path)


@pytest.mark.parametrize(
    ("name", "layout"),
    [
        # ImageNet's standard layout
        ("imagenet", {"imagenet/train/n01/a.JPEG": 10, "imagenet/train/n01/b.JPEG": 11,
                      "imagenet/train/n02/c.JPEG": 200, "imagenet/val/n01/d.JPEG": 12,
                      "imagenet/val/n02/e.JPEG": 201}),
        # Tiny ImageNet's own layout: train/<wnid>/images/, a flat val/images/
        ("tinyimagenet", {"tiny-imagenet-200/train/n01/images/a.JPEG": 10,
                          "tiny-imagenet-200/train/n02/images/b.JPEG": 200,
                          "tiny-imagenet-200/val/images/c.JPEG": 50}),
        # Places365 (after the download is renamed): train/<letter>/<class>/, flat val/
        ("places365", {"places365/train/a/abbey/a.jpg": 10, "places365/train/a/arch/b.jpg": 200,
                       "places365/train/a/arch/outdoor/e.jpg": 120, "places365/val/c.jpg": 50}),
        # DTD as torchvision writes it: dtd/dtd/images/<class>/, no separate test folder
        ("dtd", {**{f"dtd/dtd/images/banded/{i}.jpg": 10 for i in range(10)},
                 **{f"dtd/dtd/images/woven/{i}.jpg": 200 for i in range(10)}}),
    ],
)  # fmt: skip
def test_image_tree_datasets_read_their_layouts(
    tmp_path: Path, name: str, layout: dict[str, int]
) -> None:
    for relative, value in layout.items():
        _image(tmp_path / relative, value)
    config = DataConfig(dataset=name, data_dir=str(tmp_path), download=False, image_size=16)
    train, test = vae.data.load_raw(config)
    assert train.images.shape[1:] == (3, 16, 16) and test.images.shape[1:] == (3, 16, 16)
    assert len(train) + len(test) == len(layout)
    assert train.labels is not None
    # The class is the folder an image sits in: images of one class share a label, and every
    # folder of the fixture (same value within a folder) is a class of its own.
    for label in train.labels.unique().tolist():
        values = train.images[train.labels == label].float().mean((1, 2, 3))
        assert values.max() - values.min() < 5
    train_folders = {Path(k).parent for k in layout if "/train/" in k}
    if name != "dtd":  # DTD's test tenth comes out of the same folders
        assert len(train.labels.unique()) == len(train_folders)
    if name == "imagenet":
        assert test.labels is not None and test.labels.tolist() == [0, 1]
    assert list((tmp_path / "vae-cache").glob(f"{name}-*/*.safetensors"))


def test_an_empty_test_folder_falls_back_to_a_tenth_of_train(tmp_path: Path) -> None:
    for index in range(20):
        _image(tmp_path / f"imagenet/train/n0{index % 2}/{index}.JPEG", 10 + 100 * (index % 2))
    (tmp_path / "imagenet" / "val").mkdir()
    config = DataConfig(dataset="imagenet", data_dir=str(tmp_path), download=False, image_size=16)
    train, test = vae.data.load_raw(config)
    assert (len(train), len(test)) == (18, 2)
    assert test.labels is not None  # labelled by their folders under train/
    for image, label in zip(test.images, test.labels.tolist(), strict=True):
        assert abs(image.float().mean().item() - (10 + 100 * label)) < 5


def test_imagenet_says_it_cannot_be_downloaded(tmp_path: Path) -> None:
    with pytest.raises(DataError) as error:
        vae.data.load_raw(DataConfig(dataset="imagenet", data_dir=str(tmp_path)))
    message = error.value.render(flag_of)  # as the command line shows it
    assert "cannot be downloaded automatically" in message
    assert "train/<class>" in message and "--data-dir" in message and "\n" not in message


@pytest.mark.parametrize("loss", ["bce", "ms-ssim"])
def test_train_end_to_end_on_fixture_datasets(tmp_path: Path, loss: str) -> None:
    """A MedMNIST file (28 px grey, Bernoulli) and an ImageNet tree (48 px colour, MS-SSIM)."""
    from typer.testing import CliRunner

    from vae.checkpoint import read_metadata
    from vae.cli import app

    rng = np.random.default_rng(2)
    if loss == "bce":
        (tmp_path / "medmnist").mkdir()
        arrays = {
            f"{split}_{kind}": rng.integers(
                0, 256 if kind == "images" else 2, shape, dtype=np.uint8
            )
            for split, count in (("train", 60), ("val", 4), ("test", 10))
            for kind, shape in (("images", (count, 28, 28)), ("labels", (count, 1)))
        }
        np.savez(tmp_path / "medmnist" / "pneumoniamnist.npz", **arrays)
        dataset, extra = "pneumoniamnist", []
    else:
        for index in range(24):
            split = "val" if index % 6 == 0 else "train"
            _image(tmp_path / f"imagenet/{split}/n0{index % 2}/{index}.JPEG", 40 + 8 * index)
        dataset, extra = "imagenet", ["--image-size=48", "--loss=ms-ssim", "--conv-widths=8,16,16"]
    result = CliRunner().invoke(
        app,
        ["train", "run", f"--dataset={dataset}", f"--data-dir={tmp_path}", "--no-download",
         "--val-size=4", "--hidden-sizes=16", "--conv-widths=8,16", "--latent-dim=4",
         "--epochs=1", "--batch-size=16", "--device=cpu", f"--runs-dir={tmp_path / 'runs'}",
         "--quiet", *extra],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    metadata = read_metadata(tmp_path / "runs" / "run" / "checkpoint_best.safetensors")
    assert metadata["data"]["dataset"] == dataset
    assert metadata["likelihood"]["name"] == loss
    expected = (1, 28) if loss == "bce" else (3, 48)
    assert (metadata["data"]["channels"], metadata["data"]["height"]) == expected
