"""Datasets: named torchvision datasets or a folder of images, held in memory as uint8 tensors.

Each split is loaded once into a ``[N, C, H, W]`` uint8 tensor; batches are slices of it, so no
per-sample PIL conversion happens while training.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from vae.config import (
    DATA_DIR_ENV,
    DATASETS,
    IMAGE_TREE_DATASETS,
    MEDMNIST_DATASETS,
    DataConfig,
    resolve_data_dir,
)
from vae.errors import DataError, all_lines, first_line

# Fixed seeds: the validation split and the binarized evaluation sets are the same in every run.
SPLIT_SEED = 0
VALIDATION_BINARIZATION_SEED = 1
TEST_BINARIZATION_SEED = 2
DEFAULT_VAL_SIZE = 5000
DEFAULT_FOLDER_IMAGE_SIZE = 64
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")

# Named datasets stored as IDX files (read here without torchvision when present).
IDX_DATASETS = ("mnist", "fashionmnist", "kmnist")
_TORCHVISION: dict[str, tuple[str, str]] = {
    # name: (torchvision class, folder that holds its files under the data root)
    "mnist": ("MNIST", "MNIST/raw"),
    "fashionmnist": ("FashionMNIST", "FashionMNIST/raw"),
    "kmnist": ("KMNIST", "KMNIST/raw"),
    "cifar10": ("CIFAR10", "cifar-10-batches-py"),
    "cifar100": ("CIFAR100", "cifar-100-python"),
    "svhn": ("SVHN", "svhn"),
    "celeba": ("CelebA", "celeba"),
    "dtd": ("DTD", "dtd"),
}
# CelebA's usual 64-pixel protocol (as in PyTorch-VAE and DCGAN work): the centred 148-pixel
# square of the aligned 178 x 218 faces, resized.
CELEBA_CROP = 148
CELEBA_DEFAULT_SIZE = 64
CACHE_FOLDER = "vae-cache"
CACHE_VERSION = 1  # bump when decoding changes, so that old caches are not reused


@dataclass
class ImageSet:
    """Images as uint8 ``[N, C, H, W]``; ``binary`` means values are already 0 or 255."""

    images: torch.Tensor
    labels: torch.Tensor | None = None
    binary: bool = False

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def to(self, device: torch.device | str) -> ImageSet:
        labels = None if self.labels is None else self.labels.to(device)
        return ImageSet(self.images.to(device), labels, self.binary)

    def subset(self, index: torch.Tensor | slice) -> ImageSet:
        labels = None if self.labels is None else self.labels[index]
        return ImageSet(self.images[index], labels, self.binary)


# Validation images shown (grey, as a person knows them) in training's reconstruction grids.
PREVIEW_IMAGES = 32


@dataclass
class DataSplits:
    """Train, validation and test splits plus a description for checkpoint metadata.

    ``preview``: the first PREVIEW_IMAGES validation images before any binarization (uint8).
    """

    train: ImageSet
    val: ImageSet
    test: ImageSet
    info: dict[str, Any]
    preview: torch.Tensor

    def to(self, device: torch.device | str) -> DataSplits:
        return DataSplits(
            self.train.to(device),
            self.val.to(device),
            self.test.to(device),
            self.info,
            self.preview.to(device),
        )


def effective_binarize(config: DataConfig, likelihood: str) -> str:
    """Binarization only applies to the Bernoulli likelihood."""
    return config.binarize if likelihood == "bce" else "none"


def load_splits(config: DataConfig, likelihood: str) -> DataSplits:
    """Load train/validation/test splits as described by ``config``.

    The validation split is carved from the training set with a fixed seed; ``limit`` then keeps
    the first N remaining training images. The official test split is kept for test metrics.
    """
    train, test = load_raw(config)
    train = ImageSet(*_shape(train.images, train.labels, config))
    test = ImageSet(*_shape(test.images, test.labels, config))
    val_size = config.val_size
    if val_size is None:
        val_size = min(DEFAULT_VAL_SIZE, max(1, len(train) // 10))
    if val_size >= len(train):
        raise DataError(
            f"--val-size {val_size} leaves no training images out of {len(train)} in "
            f"'{config.dataset}': choose a smaller --val-size"
        )
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(SPLIT_SEED))
    val = train.subset(order[:val_size])
    train = train.subset(order[val_size:].sort().values)
    if config.limit is not None:
        train = train.subset(slice(0, config.limit))
    fingerprint = split_fingerprint(train, val)
    preview = val.images[:PREVIEW_IMAGES].clone()
    binarize = effective_binarize(config, likelihood)
    if binarize != "none":
        val = binarize_once(val, VALIDATION_BINARIZATION_SEED)
        test = binarize_once(test, TEST_BINARIZATION_SEED)
        if binarize == "static":
            train = binarize_once(train, SPLIT_SEED)
    _, channels, height, width = train.images.shape
    info = {
        "dataset": config.dataset,
        "channels": int(channels),
        "height": int(height),
        "width": int(width),
        "value_range": [0.0, 1.0],
        "binarize": binarize,
        "val_binarization_seed": VALIDATION_BINARIZATION_SEED if binarize != "none" else None,
        "test_binarization_seed": TEST_BINARIZATION_SEED if binarize != "none" else None,
        "num_train": len(train),
        "num_val": len(val),
        "num_test": len(test),
        "fingerprint": fingerprint,
    }
    return DataSplits(train, val, test, info, preview)


# What must be equal for two loads to be the same training data (a resume checks them).
FINGERPRINT_FIELDS = ("dataset", "channels", "height", "width", "num_train", "num_val")


def split_fingerprint(train: ImageSet, val: ImageSet) -> str:
    """sha256 of the training and validation images and labels (uint8, before binarization): a
    resume refuses data whose fingerprint differs from the one its checkpoint recorded."""
    import hashlib

    digest = hashlib.sha256()
    for part in (train.images, train.labels, val.images, val.labels):
        if part is not None:
            digest.update(str(tuple(part.shape)).encode())
            digest.update(part.detach().cpu().contiguous().numpy())
    return digest.hexdigest()


def data_difference(recorded: dict[str, Any], found: dict[str, Any]) -> str | None:
    """How the data a checkpoint was trained on (``recorded``, its metadata's ``data``) differs
    from the data loaded now (``found``), or None when they agree. Checkpoints written before
    fingerprints existed are compared on the other fields only."""
    fields = FINGERPRINT_FIELDS + (("fingerprint",) if "fingerprint" in recorded else ())
    for name in fields:
        if recorded.get(name) != found.get(name):
            if name == "fingerprint":
                return "the images differ (content hash)"
            return f"{name} {found.get(name)!r} where the run had {recorded.get(name)!r}"
    return None


def binarize_once(images: ImageSet, seed: int) -> ImageSet:
    """A Bernoulli draw of every pixel with a fixed seed, stored as 0/255 uint8."""
    generator = torch.Generator(device=images.images.device).manual_seed(seed)
    probabilities = images.images.float() / 255.0
    drawn = torch.bernoulli(probabilities, generator=generator).to(torch.uint8) * 255
    return ImageSet(drawn, images.labels, binary=True)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [0, 1]."""
    return images.float().div_(255.0)


def batch_seed(seed: int, epoch: int, batch: int) -> int:
    """A distinct, reproducible seed per (run seed, epoch, batch)."""
    return (seed * 1_000_003 + epoch) * 1_000_033 + batch


def epoch_order(num_images: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled order of one epoch: a pure function of (seed, epoch), so resumes match."""
    generator = torch.Generator().manual_seed(batch_seed(seed, epoch, -1))
    return torch.randperm(num_images, generator=generator)


def training_batches(
    train: ImageSet,
    batch_size: int,
    seed: int,
    epoch: int,
    dynamic_binarize: bool,
    start_batch: int = 0,
    shard: Callable[[int], slice] | None = None,
) -> Iterator[torch.Tensor]:
    """Float batches in [0, 1] for one epoch, starting at ``start_batch`` (for resume).

    ``shard(n)`` picks this process's part of each batch of ``n`` images in multi-process
    training; the binarization noise is drawn for the whole batch first, so the union of the
    parts equals the single-process batch.
    """
    device = train.images.device
    order = epoch_order(len(train), seed, epoch).to(device)
    for batch, begin in enumerate(range(0, len(train), batch_size)):
        if batch < start_batch:
            continue
        indices = order[begin : begin + batch_size]
        part = shard(len(indices)) if shard is not None else slice(None)
        if not dynamic_binarize:
            yield to_float(train.images[indices[part]])
            continue
        x = to_float(train.images[indices])
        generator = torch.Generator(device=device).manual_seed(batch_seed(seed, epoch, batch))
        # U < p is a Bernoulli(p) draw; on CPU it costs half of torch.bernoulli's time, which
        # is a tenth of a small model's step.
        uniform = torch.rand(x.shape, generator=generator, device=device)
        yield uniform.lt_(x)[part]


def global_batch_size(num_images: int, batch_size: int, batch: int) -> int:
    """Images in batch number ``batch`` of an epoch (the last one may be short)."""
    return min(batch_size, num_images - batch * batch_size)


def batches_per_epoch(num_images: int, batch_size: int) -> int:
    return (num_images + batch_size - 1) // batch_size


def evaluation_batches(images: ImageSet, batch_size: int) -> Iterator[torch.Tensor]:
    """Float batches in [0, 1], in order (evaluation sets are binarized already when needed)."""
    for begin in range(0, len(images), batch_size):
        yield to_float(images.images[begin : begin + batch_size])


# --- loading -------------------------------------------------------------------------------


def load_raw(config: DataConfig) -> tuple[ImageSet, ImageSet]:
    """(train, test) at the dataset's own size and channels."""
    if config.dataset.startswith("folder:"):
        return _load_folder(Path(config.dataset[len("folder:") :]).expanduser(), config)
    if config.dataset not in DATASETS:
        known = ", ".join(DATASETS)
        raise DataError(f"unknown dataset '{config.dataset}' (known: {known}, or folder:PATH)")
    root = resolve_data_dir(config.data_dir)
    with _removed_if_failed(
        root / (_FOLDERS.get(config.dataset) or _TORCHVISION[config.dataset][1])
    ):
        if config.dataset == "svhn":
            return _load_svhn(root, config.download)
        if config.dataset == "celeba":
            return _load_celeba(root, config)
        if config.dataset in MEDMNIST_DATASETS:
            return _load_medmnist(config.dataset, root, config.download)
        if config.dataset in IMAGE_TREE_DATASETS:
            return _load_image_tree(config.dataset, root, config)
        return _load_torchvision(config.dataset, root, config.download)


@contextlib.contextmanager
def _removed_if_failed(folder: Path) -> Iterator[None]:
    """Folders that a failed load created on the way to ``folder`` (a download that could not
    connect leaves an empty ``data/MNIST/raw``) are removed again, with what they hold: none of
    it existed before the load began."""
    first_missing = None
    while not folder.exists() and folder != folder.parent:
        first_missing, folder = folder, folder.parent
    try:
        yield
    except BaseException:
        if first_missing is not None and first_missing.exists():
            shutil.rmtree(first_missing, ignore_errors=True)
        raise


def _dataset_error(name: str, root: Path, download: bool, error: BaseException) -> DataError:
    """The one-line error for a named dataset that cannot be loaded."""
    subfolder = _FOLDERS.get(name) or _TORCHVISION[name][1]
    # A download error's reason is below its first line ("Error downloading X:\nTried ...").
    reason = all_lines(error)
    action = (
        "download failed or files are missing or corrupt"
        if download
        else "files are missing or corrupt and --no-download was given"
    )
    return DataError(
        f"cannot load dataset '{name}' from {(root / subfolder).resolve()} ({action}: {reason}); "
        f"put the files there or point --data-dir / {DATA_DIR_ENV} at a folder holding {subfolder}"
    )


# Where each dataset's files live under the data root (for the torchvision ones: _TORCHVISION).
_FOLDERS = {
    **{name: "medmnist" for name in MEDMNIST_DATASETS},
    "tinyimagenet": "tiny-imagenet-200",
    "places365": "places365",
    "dtd": "dtd",
    "imagenet": "imagenet",
}
# (train, test) folders under a tree dataset's folder when not train/ and val/; DTD as
# torchvision writes it (<root>/dtd/dtd/images/<class>/*.jpg) has no test folder.
_TREE_SPLITS: dict[str, tuple[str, str | None]] = {"dtd": ("dtd/images", None)}
TINY_IMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"


def _load_medmnist(name: str, root: Path, download: bool) -> tuple[ImageSet, ImageSet]:
    """MedMNIST's ``<root>/medmnist/<name>.npz`` (28 px; arrays ``train_images``,
    ``train_labels``, ``test_images``...), read with NumPy without pickle; the ``medmnist``
    package fetches missing files (``poetry install --extras medmnist``)."""
    import numpy as np

    folder = root / "medmnist"
    path = folder / f"{name}.npz"
    try:
        if not path.exists() and download:
            try:
                import medmnist
            except ImportError:
                raise DataError(
                    f"cannot download dataset '{name}': the medmnist package is not installed "
                    f"(poetry install --extras medmnist), or put {name}.npz in {folder.resolve()}"
                ) from None
            folder.mkdir(parents=True, exist_ok=True)
            info = medmnist.INFO[name]
            getattr(medmnist, info["python_class"])(split="test", root=str(folder), download=True)
        with np.load(path, allow_pickle=False) as arrays:
            splits = []
            for split in ("train", "test"):
                images = torch.from_numpy(arrays[f"{split}_images"])
                if images.ndim == 3:
                    images = images.unsqueeze(1)  # grey [N, H, W]
                elif images.ndim == 4:
                    images = images.permute(0, 3, 1, 2)  # colour [N, H, W, 3]
                if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[0] == 0:
                    raise ValueError(
                        f"unexpected {split}_images {tuple(images.shape)} {images.dtype}"
                    )
                labels = torch.from_numpy(arrays[f"{split}_labels"].astype(np.int64))
                # Multi-label sets (chestmnist: 14 findings) keep the first finding as the label.
                splits.append(ImageSet(images.contiguous(), labels.reshape(len(labels), -1)[:, 0]))
    except DataError:
        raise
    except Exception as error:  # noqa: BLE001 - numpy, zipfile and medmnist raise many types
        raise _dataset_error(name, root, download, error) from None
    return splits[0], splits[1]


def _load_image_tree(name: str, root: Path, config: DataConfig) -> tuple[ImageSet, ImageSet]:
    """Datasets kept as folders of image files: ``<root>/<folder>/train/<class>/...`` and
    ``val/`` (ImageNet's standard layout; Tiny ImageNet's and Places365's own layouts fit it, as
    every image under the folder is read). Centre-cropped and resized (64 px by default), labelled
    by the folder each image sits in, and cached like a photo folder."""
    base = root / _FOLDERS[name]
    train_name, test_name = _TREE_SPLITS.get(name, ("train", "val"))
    train_dir = base / train_name
    test_dir = base / test_name if test_name is not None else None
    try:
        if not train_dir.is_dir() and config.download:
            _download_tree(name, root)
        if not train_dir.is_dir():
            hint = (
                "ImageNet cannot be downloaded automatically: put the standard layout there "
                "(train/<class>/*.JPEG, val/<class>/*.JPEG)"
                if name == "imagenet"
                else "no such folder"
            )
            raise FileNotFoundError(f"{train_dir}: {hint}")
        train_files = collect_image_files(train_dir)
        test_files = (
            collect_image_files(test_dir) if test_dir is not None and test_dir.is_dir() else []
        )
        test_folder = test_dir
        if not train_files:
            raise FileNotFoundError(f"{train_dir} holds no images")
    except Exception as error:  # noqa: BLE001 - downloads and file systems raise many types
        raise _dataset_error(name, root, config.download, error) from None
    if not test_files:  # no (or an empty) test folder, as DTD: a fixed tenth of train/
        train_index, test_index = fixed_tenth_split(len(train_files))
        train_files, test_files = (
            [train_files[i] for i in train_index.tolist()],
            [train_files[i] for i in test_index.tolist()],
        )
        test_folder = train_dir
    size = config.image_size or DEFAULT_FOLDER_IMAGE_SIZE
    channels = config.channels or 3

    # The class of an image is its folder under train/ (n01440764, n01440764/images for Tiny
    # ImageNet, a/apartment_building/outdoor for Places365); images straight in train/ have none.
    def class_of(path: Path, folder: Path) -> str:
        return path.parent.relative_to(folder).as_posix()

    classes = sorted({class_of(f, train_dir) for f in train_files} - {"."})
    index = {folder_name: number for number, folder_name in enumerate(classes)}

    def labels(files: list[Path], folder: Path) -> torch.Tensor | None:
        found = [index.get(class_of(f, folder)) for f in files]
        return None if any(label is None for label in found) else torch.tensor(found)

    key = [
        name,
        str(base.resolve()),
        size,
        channels,
        _file_listing([*train_files, *test_files], base),
    ]

    def decode() -> dict[str, torch.Tensor]:
        return {
            "train": read_image_files(train_files, size, channels),
            "test": read_image_files(test_files, size, channels),
        }

    tensors = cached_tensors(root, name, key, decode)
    return (
        ImageSet(tensors["train"], labels(train_files, train_dir)),
        ImageSet(tensors["test"], labels(test_files, test_folder)),
    )


def _download_tree(name: str, root: Path) -> None:
    """Fetch the datasets that can be fetched (Tiny ImageNet, DTD, Places365 at 256 px)."""
    if name == "tinyimagenet":
        from torchvision.datasets.utils import download_and_extract_archive

        download_and_extract_archive(TINY_IMAGENET_URL, str(root))
    elif name == "dtd":
        _download("dtd", root)  # torchvision writes <root>/dtd/dtd/images
    elif name == "places365":
        import torchvision.datasets as tv

        folder = root / "places365"
        for split in ("train-standard", "val"):
            tv.Places365(root=str(folder), split=split, small=True, download=True)
        # torchvision's folders, renamed into the layout read here
        (folder / "data_256_standard").rename(folder / "train")
        (folder / "val_256").rename(folder / "val")


# torchvision's raw files of the MNIST family: (images, labels) per split, the same names for all.
_IDX_FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# IDX magic numbers: two zero bytes, the element type (0x08: unsigned byte), the dimension count.
_IDX_UINT8 = 0x0800


def read_idx(path: Path, dimensions: int) -> torch.Tensor:
    """An IDX file of unsigned bytes (MNIST's format) with ``dimensions`` dimensions, as a uint8
    tensor; a ValueError names what is wrong with a file that is not one."""
    header_size = 4 + 4 * dimensions
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        header = handle.read(header_size)
        if len(header) < header_size:
            raise ValueError(f"{path.name}: {size} bytes, too short for an IDX header")
        magic, *shape = struct.unpack(f">{1 + dimensions}I", header)
        if magic != _IDX_UINT8 + dimensions:
            raise ValueError(
                f"{path.name}: not a {dimensions}-dimensional IDX file of bytes "
                f"(magic number {magic:#010x}, expected {_IDX_UINT8 + dimensions:#010x})"
            )
        body = bytearray(math.prod(shape))
        if size != header_size + len(body) or handle.readinto(body) != len(body):
            raise ValueError(
                f"{path.name}: {size} bytes, expected {header_size + len(body)} for shape "
                f"{tuple(shape)}"
            )
    return torch.frombuffer(body, dtype=torch.uint8).view(shape)


def _read_idx_split(folder: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    images_name, labels_name = _IDX_FILES[train]
    images = read_idx(folder / images_name, 3)
    labels = read_idx(folder / labels_name, 1)
    if len(images) == 0:
        raise ValueError(f"{images_name} holds no images")
    if len(labels) != len(images):
        raise ValueError(f"{len(images)} images in {images_name} but {len(labels)} labels")
    return images.unsqueeze(1), labels.long()


def _load_torchvision(name: str, root: Path, download: bool) -> tuple[ImageSet, ImageSet]:
    folder = root / _TORCHVISION[name][1]
    files = [folder / file for pair in _IDX_FILES.values() for file in pair]
    if name in IDX_DATASETS and all(file.exists() for file in files):
        # Read directly: importing torchvision costs ~5 s of start-up on a 2-core machine, and
        # it is needed only to download.
        try:
            train = ImageSet(*_read_idx_split(folder, train=True))
            test = ImageSet(*_read_idx_split(folder, train=False))
        except (OSError, ValueError) as error:
            raise _dataset_error(name, root, download, error) from None
        return train, test
    import torchvision.datasets as tv

    dataset_class = getattr(tv, _TORCHVISION[name][0])
    splits = []
    for train in (True, False):
        try:
            dataset = dataset_class(root=str(root), train=train, download=download)
            images, labels = _as_tensors(name, dataset)
        except Exception as error:  # noqa: BLE001 - torchvision raises many types; all mean the same
            raise _dataset_error(name, root, download, error) from None
        splits.append(ImageSet(images, labels))
    return splits[0], splits[1]


def _download(name: str, root: Path, **kwargs: Any) -> None:
    """Fetch a named dataset with torchvision (which checks the archive's checksum)."""
    import torchvision.datasets as tv

    getattr(tv, _TORCHVISION[name][0])(root=str(root), download=True, **kwargs)


def _load_svhn(root: Path, download: bool) -> tuple[ImageSet, ImageSet]:
    """SVHN's ``train_32x32.mat`` and ``test_32x32.mat`` under ``<root>/svhn``, read with
    scipy's MATLAB reader (the format's documented loader), the files fetched by torchvision."""
    folder = root / "svhn"
    splits = []
    for split in ("train", "test"):
        path = folder / f"{split}_32x32.mat"
        try:
            if not path.exists() and download:
                _download("svhn", folder, split=split)
            from scipy.io import loadmat

            mat = loadmat(str(path), variable_names=["X", "y"])
            # X is [32, 32, 3, N]; label 10 stands for the digit 0.
            images = torch.from_numpy(mat["X"]).permute(3, 2, 0, 1).contiguous()
            labels = torch.from_numpy(mat["y"].astype("int64")).flatten() % 10
            if images.dtype != torch.uint8 or tuple(images.shape[1:]) != (3, 32, 32):
                raise ValueError(f"unexpected image array {tuple(images.shape)} {images.dtype}")
        except Exception as error:  # noqa: BLE001 - scipy and torchvision raise many types
            raise _dataset_error("svhn", root, download, error) from None
        splits.append(ImageSet(images, labels))
    return splits[0], splits[1]


def _load_celeba(root: Path, config: DataConfig) -> tuple[ImageSet, ImageSet]:
    """CelebA's aligned faces (``<root>/celeba/img_align_celeba/*.jpg`` and
    ``list_eval_partition.txt``), centre-cropped to 148 pixels and resized (64 by default);
    decoded once into a cached uint8 tensor file."""
    folder = root / "celeba"
    partition_file = folder / "list_eval_partition.txt"
    try:
        if not partition_file.exists() and config.download:
            _download("celeba", root, split="all", target_type=[])
        partitions = _read_partitions(partition_file)
    except Exception as error:  # noqa: BLE001 - torchvision and file reads raise many types
        raise _dataset_error("celeba", root, config.download, error) from None
    size = config.image_size or CELEBA_DEFAULT_SIZE
    channels = config.channels or 3
    images_folder = folder / "img_align_celeba"
    names = {
        split: [n for n, p in partitions if p == code]
        for split, code in (("train", 0), ("test", 2))
    }

    def decode() -> dict[str, torch.Tensor]:
        return {
            split: read_image_files([images_folder / n for n in files], size, channels, CELEBA_CROP)
            for split, files in names.items()
        }

    key = ["celeba", str(partition_file.resolve()), len(partitions), size, channels, CELEBA_CROP]
    tensors = cached_tensors(root, "celeba", key, decode)
    return ImageSet(tensors["train"]), ImageSet(tensors["test"])


def _read_partitions(path: Path) -> list[tuple[str, int]]:
    """``list_eval_partition.txt``: lines ``000001.jpg 0`` (0 train, 1 validation, 2 test)."""
    entries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
            raise ValueError(f"{path.name} line {number} is not 'FILE.jpg 0|1|2'")
        entries.append((parts[0], int(parts[1])))
    if not entries:
        raise ValueError(f"{path.name} lists no images")
    return entries


def cached_tensors(
    root: Path, name: str, key: list[Any], build: Callable[[], dict[str, torch.Tensor]]
) -> dict[str, torch.Tensor]:
    """``build()``'s tensors, kept in ``<root>/vae-cache/<name>-<hash of key>.safetensors`` so that
    the next run skips decoding. A damaged cache file is rebuilt; a data folder that cannot be
    written to only means no cache."""
    import hashlib
    import json

    from safetensors import SafetensorError
    from safetensors.torch import load_file, save

    from vae.fileio import atomic_write_bytes

    digest = hashlib.sha256(json.dumps([CACHE_VERSION, *key]).encode()).hexdigest()[:20]
    path = root / CACHE_FOLDER / f"{name}-{digest}.safetensors"
    if path.is_file():
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError):
            pass  # rebuilt and rewritten below
    tensors = build()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, save({k: v.contiguous() for k, v in tensors.items()}))
    except OSError:
        pass  # a read-only data folder: the next run decodes again
    return tensors


def _as_tensors(name: str, dataset: Any) -> tuple[torch.Tensor, torch.Tensor]:
    data = dataset.data
    if name in IDX_DATASETS:
        images = torch.as_tensor(data).unsqueeze(1)
        labels = torch.as_tensor(dataset.targets)
    elif name in ("cifar10", "cifar100"):
        images = torch.as_tensor(data).permute(0, 3, 1, 2)
        labels = torch.as_tensor(dataset.targets)
    else:
        raise ValueError(f"no reader for '{name}'")
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(f"unexpected image array {tuple(images.shape)} {images.dtype}")
    return images.contiguous(), labels.long()


def _load_folder(folder: Path, config: DataConfig) -> tuple[ImageSet, ImageSet]:

    if not folder.is_dir():
        raise DataError(f"image folder not found: {folder} (from --dataset folder:{folder})")
    files = collect_image_files(folder)
    if len(files) < 2:
        raise DataError(
            f"image folder {folder} holds {len(files)} image file(s); at least 2 are needed "
            f"({', '.join(IMAGE_EXTENSIONS)})"
        )
    size = config.image_size or DEFAULT_FOLDER_IMAGE_SIZE
    key = ["folder", str(folder.resolve()), size, config.channels, _file_listing(files, folder)]
    root = resolve_data_dir(config.data_dir)
    images = cached_tensors(
        root, "folder", key, lambda: {"images": read_image_files(files, size, config.channels)}
    )["images"]
    train, test = fixed_tenth_split(len(files))
    return ImageSet(images[train]), ImageSet(images[test])


def fixed_tenth_split(count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, test) indices, each sorted: a fixed tenth of ``count`` items (seed SPLIT_SEED) is
    the test split of datasets that have none of their own (photo folders, DTD)."""
    order = torch.randperm(count, generator=torch.Generator().manual_seed(SPLIT_SEED))
    test_count = count // 10
    return order[test_count:].sort().values, order[:test_count].sort().values


def _file_listing(files: list[Path], base: Path) -> list[tuple[str, int, int]]:
    """(path under ``base``, size, mtime) of each file: any added, removed or rewritten file
    changes a cache key built from it."""
    listing = []
    for path in files:
        status = path.stat()
        listing.append((path.relative_to(base).as_posix(), status.st_size, status.st_mtime_ns))
    return listing


MAX_IMAGE_PIXELS = 40_000_000  # larger files are refused before decoding (decompression bombs)
_GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")


# What Pillow's decoders raise on damaged files besides OSError: a broken PNG chunk gives
# SyntaxError, a short one EOFError or struct.error, odd headers the others.
_DECODER_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    struct.error,
    IndexError,
    KeyError,
    TypeError,
    ZeroDivisionError,
)


def read_image_files(
    files: list[Path], size: int, channels: int | None, crop: int | None = None
) -> torch.Tensor:
    """Image files -> uint8 [N, C, size, size]; channels None infers from the first file.

    Each image is centre-cropped to a square (``crop`` pixels a side, else the largest centred
    square) and resized, so faces and objects keep their proportions. 16-bit and float images
    are scaled to 8 bits (not clipped); transparency is composited onto black, the background of
    the datasets these models train on; palettes are expanded.
    """
    import warnings

    import numpy as np
    from PIL import Image, UnidentifiedImageError

    # Filled in place: a list of arrays stacked at the end would need twice the memory, which
    # matters for ImageNet-sized trees (15.7 GB at 64 px).
    images: torch.Tensor | None = None
    for index, path in enumerate(files):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(path) as image:
                    width, height = image.size
                    if width * height > MAX_IMAGE_PIXELS:
                        raise DataError(
                            f"cannot read image {path}: {width}x{height} pixels is over the "
                            f"{MAX_IMAGE_PIXELS:,}-pixel limit (refused before decoding)"
                        )
                    if channels is None:
                        channels = 1 if image.mode in _GREY_MODES else 3
                    converted = _to_8bit(image, channels)
                    side = min(width, height, crop or max(width, height))
                    left, top = (width - side) // 2, (height - side) // 2
                    converted = converted.resize(
                        (size, size),
                        Image.Resampling.BILINEAR,
                        box=(left, top, left + side, top + side),
                    )
                    array = np.asarray(converted, dtype=np.uint8)
        except (*_DECODER_ERRORS, UnidentifiedImageError, Image.DecompressionBombError) as error:
            raise DataError(f"cannot read image {path}: {first_line(error)}") from None
        except Image.DecompressionBombWarning as error:
            raise DataError(f"cannot read image {path}: {error}") from None
        if images is None:
            images = torch.empty((len(files), channels or 1, size, size), dtype=torch.uint8)
        images.numpy()[index] = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    if images is None:
        return torch.empty((0, channels or 1, size, size), dtype=torch.uint8)
    return images


def _to_8bit(image: Any, channels: int) -> Any:
    """A PIL image in mode L (channels 1) or RGB (channels 3)."""
    import numpy as np
    from PIL import Image

    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        values = np.asarray(image, dtype=np.float64)
        if image.mode != "F":
            values = values / 257.0  # integer grey images are 16-bit in practice (PNG, TIFF)
        elif values.max(initial=0.0) <= 1.0:
            values = values * 255.0  # float images in [0, 1]; otherwise already in [0, 255]
        image = Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), mode="L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        image = image.convert("RGBA")
        black = Image.new("RGBA", image.size, (0, 0, 0, 255))
        image = Image.alpha_composite(black, image)
    return image.convert("L" if channels == 1 else "RGB")


def _shape(
    images: torch.Tensor, labels: torch.Tensor | None, config: DataConfig
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Convert channels and resize once, at load time."""
    if config.channels is not None and images.shape[1] != config.channels:
        if config.channels == 3:
            images = images.expand(-1, 3, -1, -1).contiguous()
        else:
            weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            images = (images.float() * weights).sum(1, keepdim=True).round().to(torch.uint8)
    size = config.image_size
    if size is not None and tuple(images.shape[2:]) != (size, size):
        chunks = []
        for begin in range(0, images.shape[0], 4096):
            chunk = images[begin : begin + 4096].float()
            resized = F.interpolate(chunk, size=(size, size), mode="bilinear", antialias=True)
            chunks.append(resized.round().clamp(0, 255).to(torch.uint8))
        images = torch.cat(chunks)
    return images, labels


def collect_image_files(path: Path) -> list[Path]:
    """An image file, or every image file under a folder (sorted)."""
    if path.is_dir():
        return sorted(
            p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
        )
    if path.is_file():
        return [path]
    raise DataError(f"image file or folder not found: {path}")


def load_images_for_model(data_info: dict[str, Any], **options: Any) -> torch.Tensor:
    """Grey (not binarized) uint8 images shaped for a model trained on ``data_info``: the test
    split of ``dataset`` (default: the model's own), or the files at ``input_path``; the
    options are those of :func:`load_test_set`."""
    return load_test_set(data_info, **options).images


def load_test_set(
    data_info: dict[str, Any],
    *,
    dataset: str | None = None,
    input_path: Path | None = None,
    data_dir: str | None = None,
    download: bool = True,
    limit: int | None = None,
) -> ImageSet:
    """The test split of ``dataset`` (default: the model's own) or the image files at
    ``input_path``, as grey uint8 images shaped for a model trained on ``data_info``, with the
    labels when the dataset has them."""
    channels, height, width = data_info["channels"], data_info["height"], data_info["width"]
    dataset = dataset or data_info.get("dataset")
    if input_path is None and not isinstance(dataset, str):
        raise DataError("the checkpoint does not name its dataset: give image files to read")
    if dataset is not None and dataset.startswith("folder:"):
        input_path = Path(dataset[len("folder:") :]).expanduser()  # every image of the folder
    if input_path is not None:
        files = collect_image_files(input_path)
        if not files:
            raise DataError(f"{input_path} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        if height != width:
            raise DataError(f"images from {input_path} need a model trained on square images")
        return ImageSet(read_image_files(files[:limit] if limit else files, height, channels))
    config = DataConfig(
        dataset=dataset,
        data_dir=data_dir,
        download=download,
        image_size=height if height == width else None,
        channels=channels,
        binarize="none",
    )
    splits = load_splits(config, "mse")
    images = splits.test if len(splits.test) else splits.val
    if tuple(images.images.shape[1:]) != (channels, height, width):
        raise DataError(
            f"'{config.dataset}' images are {tuple(images.images.shape[1:])}, the model needs {(channels, height, width)}"
        )
    return images.subset(slice(0, limit)) if limit else images
