"""CIFAR-10 and CIFAR-100: torchvision reads (and downloads) their pickled batches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from vae.config import DataConfig
from vae.data.imageset import ImageSet
from vae.data.registry import DatasetEntry
from vae.data.source import dataset_error


def load(entry: DatasetEntry, root: Path, config: DataConfig) -> tuple[ImageSet, ImageSet]:
    """(train, test) of a CIFAR dataset as ``[N, 3, 32, 32]`` uint8 with labels."""
    import torchvision.datasets as tv

    dataset_class = getattr(tv, str(entry.torchvision))
    splits = []
    for train in (True, False):
        try:
            dataset = dataset_class(root=str(root), train=train, download=config.download)
            images, labels = _as_tensors(dataset)
        except Exception as error:  # noqa: BLE001 - torchvision raises many types; all mean the same
            raise dataset_error(entry, root, config.download, error) from None
        splits.append(ImageSet(images, labels))
    return splits[0], splits[1]


def _as_tensors(dataset: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """torchvision's ``[N, H, W, 3]`` array as ``[N, 3, H, W]``."""
    images = torch.as_tensor(dataset.data).permute(0, 3, 1, 2)
    labels = torch.as_tensor(dataset.targets)
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(f"unexpected image array {tuple(images.shape)} {images.dtype}")
    return images.contiguous(), labels.long()
