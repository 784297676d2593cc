"""What every source module shares: its interface, the one-line errors, the torchvision
helpers and the fixed tenth split (``vae.data.raw`` picks the module for a dataset).

A source module (``idx``, ``cifar``, ``svhn``, ``medmnist``, ``trees``, ``celeba``) defines
``load(entry, root, config, storage) -> (train, test)`` returning :class:`ImageSet` pairs at the
data's own size (in memory, or mapped from files as ``storage`` decides, for the sources that can
be), and reports any failure to read or fetch its files with :func:`dataset_error`, so that every
dataset fails with the same one line. A dataset without a test split of its own holds out
:func:`fixed_tenth_split`.
"""

from __future__ import annotations

import contextlib
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from vae.config import DATA_DIR_ENV, DataConfig
from vae.data.imageset import ImageSet
from vae.data.registry import DatasetEntry
from vae.data.seeds import SPLIT_SEED
from vae.data.storage import Storage
from vae.errors import DataError, Setting, all_lines

if TYPE_CHECKING:
    import torch


class Loader(Protocol):
    """The ``load`` function of a source module."""

    def __call__(
        self, entry: DatasetEntry, root: Path, config: DataConfig, storage: Storage
    ) -> tuple[ImageSet, ImageSet]: ...


@contextlib.contextmanager
def removed_if_failed(folder: Path) -> Iterator[None]:
    """Folders that a failed load created on the way to ``folder`` (a download that could not
    connect leaves an empty ``data/MNIST/raw``) are removed again, with what they hold: none of
    it existed before the load began."""
    first_missing = None
    while not folder.exists() and folder != folder.parent:
        first_missing, folder = folder, folder.parent
    try:
        yield
    except BaseException:
        if first_missing is not None and first_missing.exists():
            shutil.rmtree(first_missing, ignore_errors=True)
        raise


# The advice torchvision adds to "Dataset not found": its own download argument.
TORCHVISION_ADVICE = re.compile(r"[.,;]?\s*You can use download=True to download it\.?", re.I)


def dataset_error(
    entry: DatasetEntry, root: Path, download: bool, error: BaseException
) -> DataError:
    """The one-line error for a named dataset that cannot be loaded."""
    # A download error's reason is below its first line ("Error downloading X:\nTried ...").
    reason = all_lines(error)
    if not download:
        # torchvision's own advice ("You can use download=True ...") speaks of its API.
        reason = TORCHVISION_ADVICE.sub("", reason).strip().rstrip(".") or "files not found"
        return DataError(
            f"dataset '{entry.name}' is not in {(root / entry.folder).resolve()} or cannot be "
            f"read ({reason}): point ",
            Setting("data_dir"),
            f" (or {DATA_DIR_ENV}) at a folder holding {entry.folder}, or fetch it with ",
            Setting("download"),
        )
    action = (
        ("download failed or files are missing or corrupt",)
        if download
        else ("files are missing or corrupt and downloads are off",)
    )
    return DataError(
        f"cannot load dataset '{entry.name}' from {(root / entry.folder).resolve()} (",
        *action,
        f": {reason}); put the files there or point ",
        Setting("data_dir"),
        f" / {DATA_DIR_ENV} at a folder holding {entry.folder}",
    )


def missing_files_error(entry: DatasetEntry, root: Path, missing: list[str]) -> DataError:
    """The one-line error for a named dataset whose files are missing while downloads are off."""
    shown = ", ".join(missing[:2]) + (f" and {len(missing) - 2} more" if len(missing) > 2 else "")
    return DataError(
        f"dataset '{entry.name}' is not in {(root / entry.folder).resolve()} (missing {shown}): "
        "point ",
        Setting("data_dir"),
        f" (or {DATA_DIR_ENV}) at a folder holding {entry.folder}, or fetch it with ",
        Setting("download"),
    )


def torchvision_download(entry: DatasetEntry, root: Path, **kwargs: Any) -> None:
    """Fetch a named dataset with its torchvision class (which checks the archive's checksum)."""
    import torchvision.datasets as tv

    getattr(tv, str(entry.torchvision))(root=str(root), download=True, **kwargs)


def torchvision_splits(
    entry: DatasetEntry,
    root: Path,
    download: bool,
    layout: Callable[[torch.Tensor], torch.Tensor],
) -> tuple[ImageSet, ImageSet]:
    """(train, test) read (and downloaded) by the torchvision class ``entry`` names; ``layout``
    turns the class's ``data`` array into ``[N, C, H, W]``. Any failure is the dataset's one-line
    error: torchvision raises many types, and all mean the same to the user."""
    import torch
    import torchvision.datasets as tv

    dataset_class = getattr(tv, str(entry.torchvision))
    splits = []
    for train in (True, False):
        try:
            dataset = dataset_class(root=str(root), train=train, download=download)
            images = layout(torch.as_tensor(dataset.data))
            labels = torch.as_tensor(dataset.targets)
            if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[0] == 0:
                raise ValueError(f"unexpected image array {tuple(images.shape)} {images.dtype}")
        except Exception as error:  # noqa: BLE001 - see the docstring
            raise dataset_error(entry, root, download, error) from None
        # The class names torchvision reads with the data (CIFAR-100's from its meta file).
        names = tuple(str(name) for name in getattr(dataset, "classes", ())) or None
        splits.append(ImageSet(images.contiguous(), labels.long(), classes=names))
    return splits[0], splits[1]


def fixed_tenth_split(count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, test) indices, each sorted: a fixed tenth of ``count`` items (seed SPLIT_SEED) is
    the test split of datasets that have none of their own (photo folders, DTD)."""
    import torch

    order = torch.randperm(count, generator=torch.Generator().manual_seed(SPLIT_SEED))
    test_count = count // 10
    return order[test_count:].sort().values, order[:test_count].sort().values
