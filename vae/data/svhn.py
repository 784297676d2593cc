"""SVHN: ``train_32x32.mat`` and ``test_32x32.mat`` under ``<root>/svhn``, read with SciPy's MATLAB
reader (the format's documented loader); torchvision fetches missing files."""

from __future__ import annotations

from pathlib import Path

import torch

from vae.config import DataConfig
from vae.data.imageset import ImageSet
from vae.data.registry import DatasetEntry
from vae.data.source import dataset_error, torchvision_download
from vae.data.storage import Storage


def load(
    entry: DatasetEntry, root: Path, config: DataConfig, storage: Storage
) -> tuple[ImageSet, ImageSet]:
    """(train, test) as ``[N, 3, 32, 32]`` uint8 with digit labels 0-9.

    Always read into memory (``storage`` is not used): MATLAB files cannot be mapped, and these
    sets are small (under 250 MB).
    """
    folder = root / entry.folder
    splits = []
    for split in ("train", "test"):
        path = folder / f"{split}_32x32.mat"
        try:
            if not path.exists() and config.download:
                torchvision_download(entry, folder, split=split)
            from scipy.io import loadmat

            mat = loadmat(str(path), variable_names=["X", "y"])
            # X is [32, 32, 3, N]; label 10 stands for the digit 0.
            images = torch.from_numpy(mat["X"]).permute(3, 2, 0, 1).contiguous()
            labels = torch.from_numpy(mat["y"].astype("int64")).flatten() % 10
            if images.dtype != torch.uint8 or tuple(images.shape[1:]) != (3, 32, 32):
                raise ValueError(f"unexpected image array {tuple(images.shape)} {images.dtype}")
        except Exception as error:  # noqa: BLE001 - scipy and torchvision raise many types
            raise dataset_error(entry, root, config.download, error) from None
        splits.append(ImageSet(images, labels))
    return splits[0], splits[1]
