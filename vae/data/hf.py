"""``--dataset hf:NAME_OR_PATH``: a Hugging Face dataset through the ``datasets`` library (the
optional extra ``hf``): a hub name (downloaded, or from the local cache alone when downloads
are off: the ``download`` setting, or ``HF_DATASETS_OFFLINE=1``), a folder written by
``save_to_disk``, or a folder of parquet files. Its encoded images are decoded once into the
cache's shards, like a folder of image files.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from vae.config import DataConfig
from vae.data.cache import EncodedSplit, decoded_split
from vae.data.decoding import Encoded
from vae.data.imageset import ImageSet
from vae.data.registry import FOLDER_IMAGE_SIZE, HF_PREFIX
from vae.data.source import fixed_tenth_split
from vae.data.storage import Storage
from vae.errors import DataError, Setting, first_line

# The test split, when the dataset has one: the first of these names it holds.
TEST_SPLITS = ("test", "validation", "valid", "val")
# Label columns recognised by name when no column is a ClassLabel.
LABEL_NAMES = ("label", "labels")
# The offline switches of datasets (both spellings across its versions) and huggingface_hub,
# read by the libraries at each request.
_OFFLINE_SWITCHES = (
    ("datasets.config", "HF_HUB_OFFLINE"),
    ("datasets.config", "HF_DATASETS_OFFLINE"),
    ("huggingface_hub.constants", "HF_HUB_OFFLINE"),
)
_HUB_LOCK = threading.Lock()


def load_hf(name: str, config: DataConfig, storage: Storage) -> tuple[ImageSet, ImageSet]:
    """(train, test) of the Hugging Face dataset ``name``: the ``hf_split`` split (default
    ``train``, else the only one), and its test split (``test``, else ``validation``, else a
    fixed tenth of the training split)."""
    splits = _open(name, config.download)
    train_name = _training_split(splits, config.hf_split, name)
    train = splits[train_name]
    image_column = _image_column(train, config.hf_image_column, name)
    label_column = _label_column(train, config.hf_label_column, name)
    size = config.image_size or FOLDER_IMAGE_SIZE
    test_name = next((s for s in TEST_SPLITS if s in splits and s != train_name), None)
    key = ["hf", _identity(name), image_column]
    names = _class_names(train, label_column)
    if test_name is None:
        whole = _decoded(storage, key, train_name, train, image_column, size, config.channels)
        train_index, test_index = fixed_tenth_split(len(whole))
        whole = ImageSet(whole.images, _labels(train, label_column), classes=names)
        return whole.subset(train_index), whole.subset(test_index)
    train_set = _decoded(storage, key, train_name, train, image_column, size, config.channels)
    channels = int(train_set.images.shape[1])
    test = splits[test_name]
    if image_column not in test.column_names:
        raise DataError(
            f"Hugging Face dataset '{name}': split '{test_name}' has no column '{image_column}'"
        )
    test_set = _decoded(storage, key, test_name, test, image_column, size, channels)
    test_labels = _labels(test, label_column) if label_column in test.column_names else None
    return (
        ImageSet(train_set.images, _labels(train, label_column), classes=names),
        ImageSet(test_set.images, test_labels, classes=names),
    )


def _open(name: str, download: bool) -> dict[str, Any]:
    """The dataset's splits by name (without ``download``, from local files only: a hub name
    from the local cache); every failure is one line."""
    try:
        import datasets
    except ImportError:
        raise DataError(
            f"{HF_PREFIX}{name} needs the datasets library: poetry install --extras hf "
            "(or pip install datasets)"
        ) from None
    path = Path(name).expanduser()
    try:
        with _hub_access(download):
            if path.is_dir() and (
                (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()
            ):
                loaded = datasets.load_from_disk(str(path))
            else:
                loaded = datasets.load_dataset(str(path) if path.is_dir() else name)
    except Exception as error:  # noqa: BLE001 - datasets and its file systems raise many types
        need = (
            "the network or its local cache" if download else "its local cache, downloads being off"
        )
        raise DataError(
            f"cannot load Hugging Face dataset '{name}': {first_line(error)} (a hub name needs "
            f"{need}; a folder must hold save_to_disk's files or parquet files)"
        ) from None
    if isinstance(loaded, datasets.Dataset):
        return {"train": loaded}
    return dict(loaded)


@contextlib.contextmanager
def _hub_access(allowed: bool) -> Iterator[None]:
    """One load, with the Hub reachable or not: without ``allowed``, datasets and huggingface_hub
    are in offline mode for its duration, and every request to the Hub is refused before it is
    sent. HF_DATASETS_OFFLINE is read once, at import, so the switches themselves are set and
    put back afterwards; the lock keeps a load in another thread from running inside that window
    (or from restoring the switches in the middle of it)."""
    import importlib

    with _HUB_LOCK:
        saved = []
        if not allowed:
            for module_name, attribute in _OFFLINE_SWITCHES:
                module = importlib.import_module(module_name)
                if hasattr(module, attribute):
                    saved.append((module, attribute, getattr(module, attribute)))
                    setattr(module, attribute, True)
        try:
            yield
        finally:
            for module, attribute, value in saved:
                setattr(module, attribute, value)


def _training_split(splits: dict[str, Any], chosen: str | None, name: str) -> str:
    if chosen is not None:
        if chosen not in splits:
            raise DataError(
                f"Hugging Face dataset '{name}' has no split '{chosen}' (it has "
                f"{', '.join(splits)}): choose one with ",
                Setting("hf_split"),
            )
        return chosen
    if "train" in splits:
        return "train"
    if len(splits) == 1:
        return next(iter(splits))
    raise DataError(
        f"Hugging Face dataset '{name}' has splits {', '.join(splits)} and none is 'train': "
        "choose one with ",
        Setting("hf_split"),
    )


def _image_column(dataset: Any, chosen: str | None, name: str) -> str:
    """The column of images: the one given, else the only column of the Image type."""
    import datasets

    if chosen is not None:
        if chosen not in dataset.column_names:
            raise DataError(
                f"Hugging Face dataset '{name}' has no column '{chosen}' (it has "
                f"{', '.join(dataset.column_names)}): fix ",
                Setting("hf_image_column"),
            )
        return chosen
    images = [c for c, f in dataset.features.items() if isinstance(f, datasets.Image)]
    if len(images) == 1:
        return images[0]
    found = f"image columns {', '.join(images)}" if images else "no column of images"
    raise DataError(
        f"Hugging Face dataset '{name}' has {found}: name the column with ",
        Setting("hf_image_column"),
    )


def _label_column(dataset: Any, chosen: str | None, name: str) -> str | None:
    """The column of labels: the one given, else the only ClassLabel column, else one named
    label or labels holding integers, else none (unlabelled)."""
    import datasets

    if chosen is not None:
        if chosen not in dataset.column_names:
            raise DataError(
                f"Hugging Face dataset '{name}' has no column '{chosen}': fix ",
                Setting("hf_label_column"),
            )
        return chosen
    features = dataset.features
    classes = [c for c, f in features.items() if isinstance(f, datasets.ClassLabel)]
    if len(classes) == 1:
        return classes[0]
    for column in LABEL_NAMES:
        feature = features.get(column)
        if isinstance(feature, datasets.Value) and feature.dtype.startswith(("int", "uint")):
            return column
    return None


def _class_names(dataset: Any, column: str | None) -> tuple[str, ...] | None:
    """The names a ClassLabel column gives its values (None for another column: numbered)."""
    import datasets

    feature = dataset.features.get(column) if column is not None else None
    if isinstance(feature, datasets.ClassLabel) and feature.names:
        return tuple(str(name) for name in feature.names)
    return None


def _labels(dataset: Any, column: str | None) -> torch.Tensor | None:
    """The integer labels of ``column`` (None without one)."""
    if column is None:
        return None
    values = dataset.with_format("numpy")[column]
    try:
        return torch.as_tensor(values).long().reshape(-1)
    except (TypeError, ValueError, RuntimeError):
        raise DataError(
            f"Hugging Face column '{column}' does not hold integer labels: choose another with ",
            Setting("hf_label_column"),
        ) from None


def _decoded(
    storage: Storage,
    key: list[Any],
    split: str,
    dataset: Any,
    column: str,
    size: int,
    channels: int | None,
) -> ImageSet:
    """The images of one split, decoded into the cache (their encoded bytes are fetched a shard
    at a time, never all at once)."""
    import datasets

    encoded = dataset.cast_column(column, datasets.Image(decode=False)).select_columns([column])
    fingerprint = getattr(dataset, "_fingerprint", None)

    def fetch(begin: int, end: int) -> list[Encoded]:
        rows = encoded[begin:end][column]
        return [_encoded(row, begin + offset) for offset, row in enumerate(rows)]

    sources = EncodedSplit(len(dataset), fetch, lambda b, e: [fingerprint, b, e])
    return ImageSet(decoded_split(storage, "hf", key, split, sources, size, channels))


def _encoded(row: Any, index: int) -> Encoded:
    """One image cell, undecoded: its bytes, else the file it names."""
    if isinstance(row, dict):
        if row.get("bytes"):
            return bytes(row["bytes"])
        if row.get("path"):
            return Path(row["path"])
    raise DataError(f"Hugging Face dataset row {index} holds no image")


def _identity(name: str) -> str:
    """A local dataset by its resolved folder, a hub dataset by its name."""
    path = Path(name).expanduser()
    return str(path.resolve()) if path.exists() else name
