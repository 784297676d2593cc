"""``--dataset folder:PATH``: every image file under a folder of the user's, centre-cropped,
resized, cached, and split with a fixed tenth as the test set."""

from __future__ import annotations

from pathlib import Path

from vae.config import DataConfig, resolve_data_dir
from vae.data import decoding
from vae.data.cache import cached_tensors, file_listing
from vae.data.imageset import ImageSet
from vae.data.registry import FOLDER_IMAGE_SIZE, FOLDER_PREFIX
from vae.data.splits import fixed_tenth_split
from vae.errors import DataError, Setting

DEFAULT_FOLDER_IMAGE_SIZE = FOLDER_IMAGE_SIZE


def load_folder(folder: Path, config: DataConfig) -> tuple[ImageSet, ImageSet]:
    """(train, test) of the images under ``folder`` (at least 2), unlabelled."""
    if not folder.is_dir():
        raise DataError(
            f"image folder not found: {folder} (from ",
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
    key = ["folder", str(folder.resolve()), size, config.channels, file_listing(files, folder)]
    root = resolve_data_dir(config.data_dir)
    # read_image_files is looked up on its module at call time, so that tests can count decodings.
    images = cached_tensors(
        root,
        "folder",
        key,
        lambda: {"images": decoding.read_image_files(files, size, config.channels)},
    )["images"]
    train, test = fixed_tenth_split(len(files))
    return ImageSet(images[train]), ImageSet(images[test])
