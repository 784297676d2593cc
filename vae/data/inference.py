"""Inference inputs: the images a trained model is evaluated or shown on, shaped for it: a named
dataset's test split or the user's own image files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from vae.config import DataConfig
from vae.data.decoding import IMAGE_EXTENSIONS, collect_image_files, read_image_files
from vae.data.imageset import ImageSet
from vae.data.registry import FOLDER_PREFIX
from vae.data.splits import load_splits
from vae.errors import DataError


def load_images_for_model(data_info: dict[str, Any], **options: Any) -> torch.Tensor:
    """Grey (not binarized) uint8 images shaped for a model trained on ``data_info``: the test
    split of ``dataset`` (default: the model's own), or the files at ``input_path``; the
    options are those of :func:`load_test_set`."""
    return load_test_set(data_info, **options).images


def load_test_set(
    data_info: dict[str, Any],
    *,
    dataset: str | None = None,
    input_path: Path | None = None,
    data_dir: str | None = None,
    download: bool = True,
    limit: int | None = None,
) -> ImageSet:
    """The test split of ``dataset`` (default: the model's own) or the image files at
    ``input_path``, as grey uint8 images shaped for a model trained on ``data_info``, with the
    labels when the dataset has them."""
    channels, height, width = data_info["channels"], data_info["height"], data_info["width"]
    dataset = dataset or data_info.get("dataset")
    if input_path is None and not isinstance(dataset, str):
        raise DataError("the checkpoint does not name its dataset: give image files to read")
    if dataset is not None and dataset.startswith(FOLDER_PREFIX):
        input_path = Path(dataset[len(FOLDER_PREFIX) :]).expanduser()  # every image of the folder
    if input_path is not None:
        files = collect_image_files(input_path)
        if not files:
            raise DataError(f"{input_path} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        if height != width:
            raise DataError(f"images from {input_path} need a model trained on square images")
        return ImageSet(read_image_files(files[:limit] if limit else files, height, channels))
    config = DataConfig(
        dataset=dataset,
        data_dir=data_dir,
        download=download,
        image_size=height if height == width else None,
        channels=channels,
        binarize="none",
    )
    splits = load_splits(config, "mse")
    images = splits.test if len(splits.test) else splits.val
    if tuple(images.images.shape[1:]) != (channels, height, width):
        raise DataError(
            f"'{config.dataset}' images are {tuple(images.images.shape[1:])}, the model needs {(channels, height, width)}"
        )
    # The commands that score or draw test images take them as one tensor: a mapped split is
    # read into memory here, only as far as ``limit`` reaches.
    return (images.subset(slice(0, limit)) if limit else images).in_memory()
