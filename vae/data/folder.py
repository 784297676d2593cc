"""``--dataset folder:PATH``: every image file under a folder of the user's, centre-cropped,
resized, decoded once into the cache's shards, and split with a fixed tenth as the test set."""

from __future__ import annotations

from pathlib import Path

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
    """(train, test) of the images under ``folder`` (at least 2), unlabelled."""
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
    images = ImageSet(
        decoded_split(
            storage,
            "folder",
            key,
            "all",
            EncodedSplit.of_files(files, folder),
            size,
            config.channels,
        )
    )
    train, test = fixed_tenth_split(len(files))
    return images.subset(train), images.subset(test)
