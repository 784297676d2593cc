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
from vae.data.registry import DatasetEntry, names_read_by
from vae.data.source import dataset_error, torchvision_splits

IDX_DATASETS = names_read_by("idx")
# torchvision's raw files of the MNIST family: (images, labels) per split, the same names for all.
IDX_FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# IDX magic numbers: two zero bytes, the element type (0x08: unsigned byte), the dimension count.
_IDX_UINT8 = 0x0800


def load(entry: DatasetEntry, root: Path, config: DataConfig) -> tuple[ImageSet, ImageSet]:
    """(train, test) of an MNIST-family dataset, downloading it first when files are missing."""
    folder = root / entry.folder
    files = [folder / file for pair in IDX_FILES.values() for file in pair]
    if all(file.exists() for file in files):
        # Read directly: importing torchvision costs ~5 s of start-up on a 2-core machine, and
        # it is needed only to download.
        try:
            train = ImageSet(*_read_split(folder, train=True))
            test = ImageSet(*_read_split(folder, train=False))
        except (OSError, ValueError) as error:
            raise dataset_error(entry, root, config.download, error) from None
        return train, test
    # MNIST-family arrays are [N, H, W] bytes.
    return torchvision_splits(entry, root, config.download, lambda images: images.unsqueeze(1))


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


def _read_split(folder: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    images_name, labels_name = IDX_FILES[train]
    images = read_idx(folder / images_name, 3)
    labels = read_idx(folder / labels_name, 1)
    if len(images) == 0:
        raise ValueError(f"{images_name} holds no images")
    if len(labels) != len(images):
        raise ValueError(f"{len(images)} images in {images_name} but {len(labels)} labels")
    return images.unsqueeze(1), labels.long()
