import pytest
import torch
from PIL import Image

from vae.config import DataConfig, flag_of
from vae.data import load_splits, training_batches
from vae.errors import DataError


def config_for(folder, **changes):
    config = DataConfig(dataset="mnist", data_dir=str(folder), download=False, val_size=40)
    for key, value in changes.items():
        setattr(config, key, value)
    return config


def test_missing_data_gives_one_line_naming_dataset_folder_and_options(tmp_path):
    with pytest.raises(DataError) as caught:
        load_splits(config_for(tmp_path / "empty"), "bce")
    message = caught.value.render(flag_of)  # as the command line shows it
    assert "\n" not in message
    for expected in (
        "'mnist'",
        str((tmp_path / "empty" / "MNIST" / "raw").resolve()),
        "--data-dir",
        "VAE_DATA_DIR",
    ):
        assert expected in message
    assert "data_dir (or VAE_DATA_DIR)" in str(caught.value)  # the library names the setting


def test_failed_download_is_reported_the_same_way(tmp_path, monkeypatch):
    import torchvision.datasets as tv

    def offline(self):
        raise RuntimeError(
            "Error downloading train-images-idx3-ubyte.gz:\nTried mirrors, all failed"
        )

    monkeypatch.setattr(tv.MNIST, "download", offline)
    with pytest.raises(
        DataError, match=r"download failed.*Error downloading.*data_dir / VAE_DATA_DIR"
    ):
        load_splits(config_for(tmp_path, download=True), "bce")


def test_corrupt_files_are_reported(tmp_path, synthetic_data_dir):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for source in (synthetic_data_dir / "MNIST" / "raw").iterdir():
        (raw / source.name).write_bytes(source.read_bytes()[:100])  # cut short
    with pytest.raises(DataError, match="dataset 'mnist' is not in .* or cannot be read"):
        load_splits(config_for(tmp_path), "bce")


def test_idx_files_are_read_as_torchvision_reads_them_without_importing_it(synthetic_data_dir):
    import subprocess
    import sys

    import torchvision.datasets as tv

    from vae.data import load_raw

    train, test = load_raw(config_for(synthetic_data_dir, download=True))
    for ours, split in ((train, True), (test, False)):
        theirs = tv.MNIST(str(synthetic_data_dir), train=split, download=False)
        assert torch.equal(ours.images, theirs.data.unsqueeze(1))
        assert torch.equal(ours.labels, theirs.targets)
    # Start-up: torchvision is imported only to download (it costs seconds).
    code = (
        "import sys\nfrom vae.config import DataConfig\nfrom vae.data import load_raw\n"
        f"load_raw(DataConfig(dataset='mnist', data_dir={str(synthetic_data_dir)!r}))\n"
        "assert 'torchvision' not in sys.modules, 'torchvision imported'\nprint('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ("wrong magic", "not a 3-dimensional IDX file of bytes"),
        ("extra bytes", "188177 bytes, expected 188176 for shape (240, 28, 28)"),
        ("cut short", "188175 bytes, expected 188176 for shape (240, 28, 28)"),
        ("short header", "too short for an IDX header"),
        ("labels missing one", "240 images in train-images-idx3-ubyte but 239 labels"),
    ],
)
def test_damaged_idx_files_name_the_problem(tmp_path, synthetic_data_dir, damage, reason):
    import struct

    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for source in (synthetic_data_dir / "MNIST" / "raw").iterdir():
        (raw / source.name).write_bytes(source.read_bytes())
    images, labels = raw / "train-images-idx3-ubyte", raw / "train-labels-idx1-ubyte"
    if damage == "wrong magic":
        images.write_bytes(struct.pack(">I", 0x0801) + images.read_bytes()[4:])
    elif damage == "extra bytes":
        images.write_bytes(images.read_bytes() + b"\0")
    elif damage == "cut short":
        images.write_bytes(images.read_bytes()[:-1])
    elif damage == "short header":
        images.write_bytes(images.read_bytes()[:10])
    else:
        content = labels.read_bytes()
        labels.write_bytes(struct.pack(">II", 0x0801, 239) + content[8:-1])
    with pytest.raises(DataError) as caught:
        load_splits(config_for(tmp_path), "bce")
    message = str(caught.value)
    assert "dataset 'mnist' is not in" in message and reason in message
    assert "\n" not in message


def test_validation_split_is_fixed_and_limit_applies_to_training(synthetic_data_dir):
    first = load_splits(config_for(synthetic_data_dir), "mse")
    second = load_splits(config_for(synthetic_data_dir, limit=25), "mse")
    assert torch.equal(first.val.images, second.val.images)
    assert len(first.train) + len(first.val) == 240
    assert len(second.train) == 25 and torch.equal(second.train.images, first.train.images[:25])
    assert len(first.test) == 60
    assert first.train.images.dtype == torch.uint8


def test_binarization_modes(synthetic_data_dir):
    dynamic = load_splits(config_for(synthetic_data_dir, binarize="dynamic"), "bce")
    static = load_splits(config_for(synthetic_data_dir, binarize="static"), "bce")
    again = load_splits(config_for(synthetic_data_dir, binarize="static"), "bce")
    gaussian = load_splits(config_for(synthetic_data_dir, binarize="static"), "mse")
    binary = lambda images: set(images.unique().tolist()) <= {0, 255}  # noqa: E731
    assert binary(dynamic.val.images) and binary(dynamic.test.images)
    assert not binary(dynamic.train.images)  # drawn afresh per batch instead
    assert binary(static.train.images) and torch.equal(static.train.images, again.train.images)
    assert torch.equal(dynamic.test.images, static.test.images)  # fixed seed for test metrics
    assert gaussian.info["binarize"] == "none" and not binary(gaussian.val.images)


def test_dynamic_batches_are_fresh_each_epoch_and_resumable(synthetic_data_dir):
    splits = load_splits(config_for(synthetic_data_dir), "bce")
    epoch0 = list(training_batches(splits.train, 64, seed=1, epoch=0, dynamic_binarize=True))
    again = list(training_batches(splits.train, 64, seed=1, epoch=0, dynamic_binarize=True))
    epoch1 = list(training_batches(splits.train, 64, seed=1, epoch=1, dynamic_binarize=True))
    tail = list(
        training_batches(splits.train, 64, seed=1, epoch=0, dynamic_binarize=True, start_batch=2)
    )
    assert all(torch.equal(a, b) for a, b in zip(epoch0, again, strict=True))
    assert not torch.equal(epoch0[0], epoch1[0])
    assert all(torch.equal(a, b) for a, b in zip(epoch0[2:], tail, strict=True))
    assert set(torch.cat(epoch0).unique().tolist()) <= {0.0, 1.0}
    assert sum(len(b) for b in epoch0) == len(splits.train)


def test_channels_and_size_conversion(synthetic_data_dir):
    splits = load_splits(config_for(synthetic_data_dir, image_size=32, channels=3), "mse")
    assert splits.train.images.shape[1:] == (3, 32, 32)
    assert splits.info["channels"] == 3 and splits.info["height"] == 32


def test_folder_dataset(tmp_path):
    folder = tmp_path / "pictures"
    (folder / "nested").mkdir(parents=True)
    for index in range(12):
        size = (40 + index, 30)
        colour = (index * 20, 100, 255 - index * 20)
        target = folder / ("nested" if index % 2 else "") / f"img{index}.png"
        Image.new("RGB", size, colour).save(target)
    (folder / "notes.txt").write_text("not an image")
    data = str(tmp_path / "data")  # where the folder's cache goes (never ./data or $VAE_DATA_DIR)
    config = DataConfig(dataset=f"folder:{folder}", data_dir=data, image_size=16, val_size=2)
    splits = load_splits(config, "mse")
    assert len(splits.train) + len(splits.val) + len(splits.test) == 12
    assert splits.train.images.shape[1:] == (3, 16, 16)
    gray = load_splits(
        DataConfig(dataset=f"folder:{folder}", data_dir=data, image_size=8, channels=1, val_size=2),
        "bce",
    )
    assert gray.train.images.shape[1:] == (1, 8, 8)
    assert len(list((tmp_path / "data" / "vae-cache").glob("folder-*/*.safetensors"))) == 2


def test_folder_errors(tmp_path):
    data = str(tmp_path / "data")
    with pytest.raises(DataError, match="image folder not found"):
        load_splits(DataConfig(dataset=f"folder:{tmp_path / 'missing'}", data_dir=data), "mse")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    (tmp_path / "other.png").write_bytes(b"not a png either")
    with pytest.raises(DataError, match="cannot read image .*broken.png"):
        load_splits(DataConfig(dataset=f"folder:{tmp_path}", data_dir=data), "mse")


def test_validation_larger_than_training_set_is_an_error(synthetic_data_dir):
    with pytest.raises(DataError, match="^val_size 1000 leaves no training images"):
        load_splits(config_for(synthetic_data_dir, val_size=1000), "bce")


@pytest.mark.parametrize(
    ("name", "class_name", "layout"),
    [
        ("fashionmnist", "FashionMNIST", "NHW"),
        ("kmnist", "KMNIST", "NHW"),
        ("cifar10", "CIFAR10", "NHWC"),
    ],
)
def test_each_named_dataset_becomes_uint8_nchw(tmp_path, monkeypatch, name, class_name, layout):
    """Stands in for torchvision's classes (no downloads here) to check the array layouts."""
    import numpy as np
    import torchvision.datasets as tv

    calls = []

    class FakeDataset:
        def __init__(self, root, download, train=None):
            calls.append({"root": root, "download": download, "train": train})
            count = 30 if train else 10
            shape = {
                "NHW": (count, 28, 28),
                "NHWC": (count, 32, 32, 3),
            }[layout]
            data = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
            self.data = torch.from_numpy(data) if layout == "NHW" else data
            labels = list(range(count))
            self.targets, self.labels = labels, np.array(labels)

    monkeypatch.setattr(tv, class_name, FakeDataset)
    splits = load_splits(DataConfig(dataset=name, data_dir=str(tmp_path), val_size=5), "mse")
    channels, size = (1, 28) if layout == "NHW" else (3, 32)
    assert splits.train.images.shape == (25, channels, size, size)
    assert splits.test.images.shape == (10, channels, size, size)
    assert splits.train.images.dtype == torch.uint8
    assert [c["train"] for c in calls] == [True, False]
    assert all(c["download"] for c in calls)
