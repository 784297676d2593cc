"""The MNIST family (MNIST, Fashion-MNIST, KMNIST): IDX files under ``<root>/<Name>/raw``, read
here directly; torchvision only downloads missing files."""

from __future__ import annotations

import math
import os
import struct
from pathlib import Path

import torch

from vae.config import DataConfig
from vae.data.imageset import ImageSet
from vae.data.mapped import MappedImages, map_array
from vae.data.registry import DatasetEntry, names_read_by
from vae.data.source import dataset_error, missing_files_error, torchvision_splits
from vae.data.storage import Storage

IDX_DATASETS = names_read_by("idx")
# torchvision's raw files of the MNIST family: (images, labels) per split, the same names for all.
IDX_FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# IDX magic numbers: two zero bytes, the element type (0x08: unsigned byte), the dimension count.
_IDX_UINT8 = 0x0800


def load(
    entry: DatasetEntry, root: Path, config: DataConfig, storage: Storage
) -> tuple[ImageSet, ImageSet]:
    """(train, test) of an MNIST-family dataset, downloading it first when files are missing.
    The image files are raw uint8 arrays after a short header: mapped in place when ``storage``
    maps a split of their size."""
    folder = root / entry.folder
    files = [folder / file for pair in IDX_FILES.values() for file in pair]
    if not all(file.exists() for file in files):
        _check_downloadable(entry, root, config, files)
        # Downloaded and read by torchvision, in memory (the next run maps the files it wrote).
        # MNIST-family arrays are [N, H, W] bytes.
        return torchvision_splits(entry, root, config.download, lambda images: images.unsqueeze(1))
    # Read directly: importing torchvision is a large part of a command's start-up (measured in
    # benchmarks/README.md, "Figures behind the code"), and it is needed only to download.
    try:
        train = ImageSet(*_read_split(folder, True, storage))
        test = ImageSet(*_read_split(folder, False, storage))
    except (OSError, ValueError) as error:
        raise dataset_error(entry, root, config.download, error) from None
    return train, test


def load_test(entry: DatasetEntry, root: Path, config: DataConfig, storage: Storage) -> ImageSet:
    """The test split alone: what a trained model is shown needs neither the training files nor
    a download of them."""
    folder = root / entry.folder
    files = [folder / file for file in IDX_FILES[False]]
    if not all(file.exists() for file in files):
        _check_downloadable(entry, root, config, files)
        return load(entry, root, config, storage)[1]
    try:
        return ImageSet(*_read_split(folder, False, storage))
    except (OSError, ValueError) as error:
        raise dataset_error(entry, root, config.download, error) from None


def _check_downloadable(
    entry: DatasetEntry, root: Path, config: DataConfig, files: list[Path]
) -> None:
    """With downloads off, missing files are one sentence naming them and the two ways out
    (torchvision's own text speaks of its ``download=True``)."""
    if config.download:
        return
    missing = [file.name for file in files if not file.exists()]
    raise missing_files_error(entry, root, missing)


def read_idx(
    path: Path, dimensions: int, storage: Storage | None = None
) -> torch.Tensor | MappedImages:
    """An IDX file of unsigned bytes (MNIST's format) with ``dimensions`` dimensions, as a uint8
    tensor, or mapped in place (``dimensions`` 3 only, as [N, 1, H, W]) when ``storage`` maps
    an array of its size; a ValueError names what is wrong with a file that is not one."""
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
        length = math.prod(shape)
        if size != header_size + length:
            raise ValueError(
                f"{path.name}: {size} bytes, expected {header_size + length} for shape "
                f"{tuple(shape)}"
            )
        if dimensions == 3 and length and storage is not None and storage.maps(length):
            count, height, width = shape
            return MappedImages([map_array(path, header_size, (count, 1, height, width))])
        body = bytearray(length)
        if handle.readinto(body) != len(body):
            raise ValueError(f"{path.name}: shorter than its {size} bytes while reading")
    images = torch.frombuffer(body, dtype=torch.uint8).view(shape)
    return images.unsqueeze(1) if dimensions == 3 else images


def _read_split(
    folder: Path, train: bool, storage: Storage
) -> tuple[torch.Tensor | MappedImages, torch.Tensor]:
    images_name, labels_name = IDX_FILES[train]
    images = read_idx(folder / images_name, 3, storage)
    labels = read_idx(folder / labels_name, 1)
    assert isinstance(labels, torch.Tensor)  # labels are never mapped
    if len(images) == 0:
        raise ValueError(f"{images_name} holds no images")
    if len(labels) != len(images):
        raise ValueError(f"{len(images)} images in {images_name} but {len(labels)} labels")
    return images, labels.long()
