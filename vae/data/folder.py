"""``--dataset folder:PATH``: every image file under a folder of the user's, centre-cropped,
resized, decoded once into the cache's shards, and split with a fixed tenth as the test set.

A folder with one sub-folder per class (every image inside a sub-folder of PATH, at any depth)
is labelled by them: an image's class is the name of the sub-folder of PATH it sits in, the
classes numbered in sorted order (as torchvision's ImageFolder numbers them). An image straight
in PATH leaves the whole folder unlabelled. The labels are read from the paths at each load,
never from the cache, which holds the decoded images alone (keyed by the files' paths, sizes and
times, as before): a cache written before folders had labels is read as it was.
"""

from __future__ import annotations

from pathlib import Path

import torch

from vae.config import DataConfig
from vae.data import decoding
from vae.data.cache import EncodedSplit, decoded_split
from vae.data.imageset import ImageSet
from vae.data.registry import FOLDER_IMAGE_SIZE, FOLDER_PREFIX
from vae.data.source import fixed_tenth_split
from vae.data.storage import Storage
from vae.errors import DataError, Setting

DEFAULT_FOLDER_IMAGE_SIZE = FOLDER_IMAGE_SIZE


def load_folder(folder: Path, config: DataConfig, storage: Storage) -> tuple[ImageSet, ImageSet]:
    """(train, test) of the images under ``folder`` (at least 2), labelled by their
    sub-folders when every image is in one (see the module's docstring)."""
    if not folder.is_dir():
        what = (
            f"{folder} is not a folder" if folder.exists() else f"image folder not found: {folder}"
        )
        raise DataError(
            f"{what} (from ",
            Setting("dataset"),
            f" {FOLDER_PREFIX}{folder})",
        )
    files = decoding.collect_image_files(folder)
    if len(files) < 2:
        raise DataError(
            f"image folder {folder} holds {len(files)} image file(s); at least 2 are needed "
            f"({', '.join(decoding.IMAGE_EXTENSIONS)})"
        )
    size = config.image_size or FOLDER_IMAGE_SIZE
    key = ["folder", str(folder.resolve())]
    labels, classes = _sub_folder_labels(files, folder)
    images = ImageSet(
        decoded_split(
            storage,
            "folder",
            key,
            "all",
            EncodedSplit.of_files(files, folder),
            size,
            config.channels,
        ),
        labels,
        classes=classes,
    )
    train, test = fixed_tenth_split(len(files))
    return images.subset(train), images.subset(test)


def _sub_folder_labels(
    files: list[Path], folder: Path
) -> tuple[torch.Tensor | None, tuple[str, ...] | None]:
    """(labels, class names) of ``files``: each file's class is the sub-folder of ``folder`` it
    sits in; (None, None) when a file is straight in ``folder``."""
    parts = [file.relative_to(folder).parts for file in files]
    if any(len(part) < 2 for part in parts):
        return None, None
    classes = sorted({part[0] for part in parts})
    number = {name: index for index, name in enumerate(classes)}
    return torch.tensor([number[part[0]] for part in parts]), tuple(classes)
