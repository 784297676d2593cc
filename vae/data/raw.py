"""Which source module reads a dataset: ``load_raw`` (both splits) and ``load_raw_test`` (the
test split alone, where the module can), at the data's own size and channels.

No source module imports this one back: the shared parts they need are in ``vae.data.source``.
"""

from __future__ import annotations

import importlib
from dataclasses import replace
from pathlib import Path

from vae.config import DataConfig, resolve_data_dir
from vae.data.imageset import ImageSet
from vae.data.registry import FOLDER_PREFIX, HF_PREFIX, MEMORY_PREFIX, DatasetEntry, lookup
from vae.data.source import Loader, removed_if_failed
from vae.data.storage import Storage
from vae.errors import DataError, Setting
from vae.reporting import Reporter


def load_raw(
    config: DataConfig, reporter: Reporter | None = None, given: ImageSet | None = None
) -> tuple[ImageSet, ImageSet]:
    """(train, test) at the dataset's own size and channels; ``reporter`` hears the progress of
    a first decode and the notes about where the images are kept. ``given``: the images of a
    ``memory:`` dataset (given in Python, see vae.data.in_memory), split as a folder's are."""
    if config.dataset.startswith(MEMORY_PREFIX) or given is not None:
        return _given_splits(config, given)
    storage = Storage.for_config(config, reporter)
    if config.dataset.startswith(FOLDER_PREFIX):
        from vae.data.folder import load_folder

        folder = Path(config.dataset[len(FOLDER_PREFIX) :]).expanduser()
        return load_folder(folder, config, storage)
    if config.dataset.startswith(HF_PREFIX):
        from vae.data.hf import load_hf

        return load_hf(config.dataset[len(HF_PREFIX) :], config, storage)
    entry = lookup(config.dataset)
    root = resolve_data_dir(config.data_dir)
    # Imported only when used: torchvision, SciPy and Pillow cost seconds of start-up.
    load: Loader = importlib.import_module(f"vae.data.{entry.source}").load
    with removed_if_failed(root / entry.folder):
        train, test = load(entry, root, config, storage)
    return _named(entry, train), _named(entry, test)


def _named(entry: DatasetEntry, split: ImageSet) -> ImageSet:
    """``split`` with the class names the registry fixes for its dataset, where it does (the
    same whichever way the files were read: torchvision names MNIST's "0 - zero")."""
    if not entry.classes or split.labels is None:
        return split
    return replace(split, classes=entry.classes)


def _given_splits(config: DataConfig, given: ImageSet | None) -> tuple[ImageSet, ImageSet]:
    """(train, test) of images given in Python for the ``memory:`` dataset of ``config``."""
    from vae.data.in_memory import memory_splits

    if given is None:
        raise DataError(
            Setting("dataset"),
            f" {config.dataset} names images that were given to vae.train in Python; vae has no "
            "files to read them from: give them to vae.train(data=...) again",
        )
    if not config.dataset.startswith(MEMORY_PREFIX):
        raise ValueError(f"images were given for dataset {config.dataset!r}, not a memory: one")
    return memory_splits(given)


def load_raw_test(config: DataConfig, reporter: Reporter | None = None) -> ImageSet | None:
    """The test split of a named dataset alone, read without its training files, when its
    source module can (``load_test``); None when it cannot (the caller loads both splits)."""
    if config.dataset.startswith((FOLDER_PREFIX, HF_PREFIX, MEMORY_PREFIX)):
        return None
    entry = lookup(config.dataset)
    module = importlib.import_module(f"vae.data.{entry.source}")
    load_test = getattr(module, "load_test", None)
    if load_test is None:
        return None
    root = resolve_data_dir(config.data_dir)
    with removed_if_failed(root / entry.folder):
        test = load_test(entry, root, config, Storage.for_config(config, reporter))
    return _named(entry, test)
