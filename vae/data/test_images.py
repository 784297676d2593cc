"""Test images: the images a trained model is evaluated or shown on, shaped for it (a dataset's
test split or the user's own image files), and :class:`ImageSource`, the settings that say which.

A checkpoint is data from whoever wrote it: the ``folder:`` or ``hf:`` source it records is
named in a message but never read or fetched unless the user passes it as the ``dataset``
setting; a registry name (mnist, cifar10, ...) reads only vae's own data folder.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from vae.config import DataConfig
from vae.config.rules import check_dataset
from vae.data.decoding import IMAGE_EXTENSIONS, collect_image_files, read_image_files
from vae.data.imageset import ImageSet
from vae.data.raw import load_raw_test
from vae.data.registry import FOLDER_PREFIX, HF_PREFIX, MEMORY_PREFIX
from vae.data.splits import load_grey_splits, shaped
from vae.errors import ConfigError, DataError, Setting

if TYPE_CHECKING:
    from vae.reporting import Reporter

# A recorded source longer than this is cut short in messages (a checkpoint's strings are
# whatever its writer chose).
SHOWN_SOURCE_CHARS = 300


@dataclass(frozen=True)
class ImageSource:
    """Which images a trained model is shown: every image file at ``input_path``, else the test
    split of ``dataset`` (default: the model's own, when it is a named dataset) under
    ``data_dir``, fetched if missing when ``download``; the first ``limit`` of them, and with
    ``invert`` every pixel ``x`` turned into ``255 - x`` (dark strokes on white paper for a
    model trained on light strokes on black)."""

    dataset: str | None = None
    input_path: Path | None = None
    data_dir: str | None = None
    download: bool = True
    limit: int | None = None
    invert: bool = False

    def name(self, data_info: dict[str, Any]) -> str:
        """What the images are called in results and titles: the path of the files, else the
        dataset (a model's own is named by ``data_info``, its checkpoint's data section)."""
        if self.input_path is not None:
            return str(self.input_path)
        return self.dataset or data_info["dataset"]


def load_test_set(
    data_info: dict[str, Any],
    source: ImageSource | None = None,
    reporter: Reporter | None = None,
) -> ImageSet:
    """The images of ``source`` as grey (not binarized) uint8 images shaped for a model trained
    on ``data_info``, with the labels when the dataset has them.

    Without a dataset or files, the model's own dataset (see :func:`recorded_dataset`). A
    ``folder:`` dataset's test split is its fixed tenth, as training split it; files are every
    image at ``input_path``. ``reporter`` hears what loading a dataset reports (a first decode,
    a damaged cached shard decoded again)."""
    source = source or ImageSource()
    loaded = _test_set(data_info, source, reporter)
    if source.invert:
        from vae.backgrounds import invert as inverted

        return ImageSet(inverted(loaded.image_tensor()), loaded.labels, loaded.binary)
    return loaded


def load_outlier_images(
    data_info: dict[str, Any],
    dataset: str,
    source: ImageSource,
    reporter: Reporter | None = None,
) -> torch.Tensor:
    """The images of an outlier set ``dataset``, shaped as :func:`load_test_set` shapes them,
    read as ``source`` says (its data folder, downloads and limit; never inverted): a
    ``folder:`` dataset is every image under its folder (it is no model's training data, so no
    split is held out), another its test split."""
    check_dataset(dataset, "ood_dataset")
    outliers = replace(source, dataset=None, input_path=None, invert=False)
    if dataset.startswith(FOLDER_PREFIX):
        folder = Path(dataset[len(FOLDER_PREFIX) :]).expanduser()
        outliers = replace(outliers, input_path=folder)
    else:
        outliers = replace(outliers, dataset=dataset)
    return load_test_set(data_info, outliers, reporter).images


def _test_set(
    data_info: dict[str, Any], source: ImageSource, reporter: Reporter | None
) -> ImageSet:
    """:func:`load_test_set` before inversion."""
    channels, height, width = data_info["channels"], data_info["height"], data_info["width"]
    dataset, limit = source.dataset, source.limit
    if dataset is not None and source.input_path is not None:
        raise ConfigError("give ", Setting("dataset"), " or ", Setting("input"), ", not both")
    if source.input_path is not None:
        return _input_images(source.input_path, data_info, limit)
    if dataset is not None:
        check_dataset(dataset)
    config = DataConfig(
        dataset=dataset if dataset is not None else recorded_dataset(data_info),
        data_dir=source.data_dir,
        download=source.download,
        image_size=height if height == width else None,
        channels=channels,
        binarize="none",
    )
    images = _test_split(config, reporter)
    if tuple(images.images.shape[1:]) != (channels, height, width):
        raise DataError(
            f"'{config.dataset}' images are {tuple(images.images.shape[1:])}, the model needs {(channels, height, width)}"
        )
    # The commands that score or draw test images take them as one tensor: a mapped split is
    # read into memory here, only as far as ``limit`` reaches.
    return (images.subset(slice(0, limit)) if limit else images).in_memory()


def _test_split(config: DataConfig, reporter: Reporter | None) -> ImageSet:
    """The dataset's test split, shaped as ``config`` asks: read alone where the source can (a
    model shown MNIST needs only its test files), else from every split (the validation split
    stands in where a dataset has no test split)."""
    test = load_raw_test(config, reporter)
    if test is not None and len(test):
        return shaped(test, config)
    splits = load_grey_splits(config, reporter)
    return splits.test if len(splits.test) else splits.val


def _input_images(path: Path, data_info: dict[str, Any], limit: int | None) -> ImageSet:
    """Every image file at ``path`` (a file or a folder; the first ``limit``), shaped for a
    model trained on ``data_info``."""
    channels, height, width = data_info["channels"], data_info["height"], data_info["width"]
    files = collect_image_files(path)
    if not files:
        raise DataError(f"{path} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    if height != width:
        raise DataError(f"images from {path} need a model trained on square images")
    return ImageSet(read_image_files(files[:limit] if limit else files, height, channels))


def recorded_dataset(data_info: dict[str, Any]) -> str:
    """The dataset a checkpoint's data section names, when vae may load it unasked: a named
    dataset. A ``folder:`` or ``hf:`` source is refused, named, with the settings that use it:
    a checkpoint must not choose which files are read or what is fetched from the network. A
    ``memory:`` one (images given in Python) has nothing to read: images must be given."""
    recorded = data_info.get("dataset")
    if not isinstance(recorded, str):
        raise DataError(
            "the checkpoint does not name its dataset: choose one with ",
            Setting("dataset"),
            " or give images with ",
            Setting("input"),
        )
    shown = recorded
    if len(shown) > SHOWN_SOURCE_CHARS:
        shown = shown[: SHOWN_SOURCE_CHARS - 3] + "..."
    if recorded.startswith(MEMORY_PREFIX):
        raise DataError(
            f"the checkpoint was trained on images given in Python ({shown}), which vae cannot "
            "read again: give images with ",
            Setting("input"),
        )
    if recorded.startswith((FOLDER_PREFIX, HF_PREFIX)):
        raise DataError(
            f"the checkpoint was trained on {shown}, which is read only when you ask: pass ",
            Setting("dataset"),
            f" {shlex.quote(shown)} to use it, or give images with ",
            Setting("input"),
        )
    return recorded
