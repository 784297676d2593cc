"""CIFAR-10 and CIFAR-100: torchvision reads (and downloads) their pickled batches."""

from __future__ import annotations

from pathlib import Path

from vae.config import DataConfig
from vae.data.imageset import ImageSet
from vae.data.registry import DatasetEntry
from vae.data.source import torchvision_splits
from vae.data.storage import Storage


def load(
    entry: DatasetEntry, root: Path, config: DataConfig, storage: Storage
) -> tuple[ImageSet, ImageSet]:
    """(train, test) of a CIFAR dataset as ``[N, 3, 32, 32]`` uint8 with labels (torchvision's
    arrays are ``[N, H, W, 3]``).

    Always read into memory (``storage`` is not used): pickled batches cannot be mapped, and these
    sets are small (under 250 MB).
    """
    return torchvision_splits(
        entry, root, config.download, lambda images: images.permute(0, 3, 1, 2)
    )
