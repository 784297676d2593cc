"""CelebA's aligned faces (``<root>/celeba/img_align_celeba/*.jpg`` and
``list_eval_partition.txt``), centre-cropped and resized as in the usual 64-pixel protocol, decoded
once into the cache's uint8 shards."""

from __future__ import annotations

from pathlib import Path

from vae.config import DataConfig
from vae.data.cache import EncodedSplit, decoded_split
from vae.data.imageset import ImageSet
from vae.data.registry import REGISTRY, DatasetEntry
from vae.data.source import dataset_error, torchvision_download
from vae.data.storage import Storage

# The usual protocol (as in PyTorch-VAE and DCGAN work): the centred 148-pixel square of the
# aligned 178 x 218 faces, resized.
CELEBA_CROP = 148
CELEBA_DEFAULT_SIZE = REGISTRY["celeba"].image_size


def load(
    entry: DatasetEntry, root: Path, config: DataConfig, storage: Storage
) -> tuple[ImageSet, ImageSet]:
    """(train, test): the official partitions 0 and 2 (validation, 1, is not used)."""
    folder = root / entry.folder
    partition_file = folder / "list_eval_partition.txt"
    try:
        if not partition_file.exists() and config.download:
            torchvision_download(entry, root, split="all", target_type=[])
        partitions = _read_partitions(partition_file)
    except Exception as error:  # noqa: BLE001 - torchvision and file reads raise many types
        raise dataset_error(entry, root, config.download, error) from None
    size = config.image_size or entry.image_size
    channels = config.channels or entry.channels
    images_folder = folder / "img_align_celeba"
    key = ["celeba", str(partition_file.resolve()), CELEBA_CROP]
    images = []
    for split, code in (("train", 0), ("test", 2)):
        files = [images_folder / n for n, p in partitions if p == code]
        sources = EncodedSplit.of_files(files, images_folder)
        images.append(
            decoded_split(storage, "celeba", key, split, sources, size, channels, CELEBA_CROP)
        )
    return ImageSet(images[0]), ImageSet(images[1])


def _read_partitions(path: Path) -> list[tuple[str, int]]:
    """``list_eval_partition.txt``: lines ``000001.jpg 0`` (0 train, 1 validation, 2 test)."""
    entries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
            raise ValueError(f"{path.name} line {number} is not 'FILE.jpg 0|1|2'")
        entries.append((parts[0], int(parts[1])))
    if not entries:
        raise ValueError(f"{path.name} lists no images")
    return entries
