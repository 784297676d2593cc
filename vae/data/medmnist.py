"""MedMNIST: ``<root>/medmnist/<name>.npz`` (28 px; arrays ``train_images``, ``train_labels``,
``test_images``...), read with NumPy without pickle; the ``medmnist`` package fetches missing
files (``poetry install --extras medmnist``)."""

from __future__ import annotations

from pathlib import Path

import torch

from vae.config import DataConfig
from vae.data.imageset import ImageSet
from vae.data.registry import DatasetEntry
from vae.data.source import dataset_error
from vae.data.storage import Storage
from vae.errors import DataError


def load(
    entry: DatasetEntry, root: Path, config: DataConfig, storage: Storage
) -> tuple[ImageSet, ImageSet]:
    """(train, test) as uint8 ``[N, C, 28, 28]``; multi-label sets keep their first finding.

    Always read into memory (``storage`` is not used): .npz archives cannot be mapped, and these
    sets are small (under 250 MB).
    """
    import numpy as np

    name, download = entry.name, config.download
    folder = root / entry.folder
    path = folder / f"{name}.npz"
    try:
        if not path.exists() and download:
            _download(name, folder)
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
        raise dataset_error(entry, root, download, error) from None
    return splits[0], splits[1]


def _download(name: str, folder: Path) -> None:
    """Fetch ``<name>.npz`` into ``folder`` with the optional ``medmnist`` package."""
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
