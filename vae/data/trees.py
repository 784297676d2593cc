"""Datasets kept as folders of image files: ``<root>/<folder>/train/<class>/...`` and ``val/``
(ImageNet's standard layout; Tiny ImageNet's and Places365's own layouts fit it, as every image
under the folder is read; DTD names its own folders in its registry entry). Centre-cropped and
resized (64 px by default), labelled by the folder each image sits in, and decoded once into
the cache's shards like a photo folder.

A dataset in this layout that people supply themselves is one registry entry; one that can be
fetched also needs its download function in ``_DOWNLOADS``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from vae.config import DataConfig
from vae.data import decoding
from vae.data.cache import EncodedSplit, decoded_split
from vae.data.imageset import ImageSet
from vae.data.registry import REGISTRY, DatasetEntry
from vae.data.source import dataset_error, fixed_tenth_split, torchvision_download
from vae.data.storage import Storage

TINY_IMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"


def load(
    entry: DatasetEntry, root: Path, config: DataConfig, storage: Storage
) -> tuple[ImageSet, ImageSet]:
    """(train, test) of an image tree, downloading it first when it can be and is missing."""
    name = entry.name
    base = root / entry.folder
    train_name, test_name = entry.tree_splits
    train_dir = base / train_name
    test_dir = base / test_name if test_name is not None else None
    try:
        if not train_dir.is_dir() and config.download and entry.downloadable:
            _DOWNLOADS[name](root)
        if not train_dir.is_dir():
            raise FileNotFoundError(f"{train_dir}: {_missing_hint(entry)}")
        train_files = decoding.collect_image_files(train_dir)
        test_files = (
            decoding.collect_image_files(test_dir)
            if test_dir is not None and test_dir.is_dir()
            else []
        )
        test_folder = test_dir
        if not train_files:
            raise FileNotFoundError(f"{train_dir} holds no images")
    except Exception as error:  # noqa: BLE001 - downloads and file systems raise many types
        raise dataset_error(entry, root, config.download, error) from None
    if not test_files:  # no (or an empty) test folder, as DTD: a fixed tenth of train/
        train_index, test_index = fixed_tenth_split(len(train_files))
        train_files, test_files = (
            [train_files[i] for i in train_index.tolist()],
            [train_files[i] for i in test_index.tolist()],
        )
        test_folder = train_dir
    size = config.image_size or entry.image_size
    channels = config.channels or entry.channels

    # The class of an image is its folder under train/ (n01440764, n01440764/images for Tiny
    # ImageNet, a/apartment_building/outdoor for Places365); images straight in train/ have none.
    def class_of(path: Path, folder: Path) -> str:
        return path.parent.relative_to(folder).as_posix()

    classes = sorted({class_of(f, train_dir) for f in train_files} - {"."})
    index = {folder_name: number for number, folder_name in enumerate(classes)}

    def labels(files: list[Path], folder: Path) -> torch.Tensor | None:
        found = [index.get(class_of(f, folder)) for f in files]
        return None if any(label is None for label in found) else torch.tensor(found)

    key = [name, str(base.resolve())]
    images = {
        split: decoded_split(
            storage, name, key, split, EncodedSplit.of_files(files, base), size, channels
        )
        for split, files in (("train", train_files), ("test", test_files))
    }
    names = tuple(classes) or None
    return (
        ImageSet(images["train"], labels(train_files, train_dir), classes=names),
        ImageSet(images["test"], labels(test_files, test_folder), classes=names),
    )


def _missing_hint(entry: DatasetEntry) -> str:
    """What to do about a missing train/ folder."""
    if entry.downloadable:
        return "no such folder"
    title = "ImageNet" if entry.name == "imagenet" else f"'{entry.name}'"
    return (
        f"{title} cannot be downloaded automatically: put the standard layout there "
        "(train/<class>/*.JPEG, val/<class>/*.JPEG)"
    )


def _download_tiny_imagenet(root: Path) -> None:
    from torchvision.datasets.utils import download_and_extract_archive

    download_and_extract_archive(TINY_IMAGENET_URL, str(root))


def _download_dtd(root: Path) -> None:
    torchvision_download(REGISTRY["dtd"], root)  # torchvision writes <root>/dtd/dtd/images


def _download_places365(root: Path) -> None:
    """The 256-pixel version, renamed from torchvision's folders into the layout read here."""
    import torchvision.datasets as tv

    folder = root / REGISTRY["places365"].folder
    for split in ("train-standard", "val"):
        tv.Places365(root=str(folder), split=split, small=True, download=True)
    (folder / "data_256_standard").rename(folder / "train")
    (folder / "val_256").rename(folder / "val")


# How each downloadable tree is fetched into the data root.
_DOWNLOADS: dict[str, Callable[[Path], None]] = {
    "tinyimagenet": _download_tiny_imagenet,
    "dtd": _download_dtd,
    "places365": _download_places365,
}
