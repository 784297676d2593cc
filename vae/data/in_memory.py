"""Images given in Python (``vae.train(data=...)``): a uint8 or float tensor or NumPy array
``[N, C, H, W]``, or a torch ``Dataset`` of images with optional labels, turned into the data
package's :class:`ImageSet` (uint8), and split as a ``folder:`` dataset is.

Such data has no source vae could read again: a run records it as the dataset
``memory:NAME`` (:data:`~vae.data.registry.MEMORY_PREFIX`) with its fingerprint, and a resume
must be given the same images.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from vae.data.imageset import ImageSet
from vae.data.registry import MEMORY_PREFIX
from vae.data.source import fixed_tenth_split
from vae.errors import DataError
from vae.limits import MAX_IMAGE_SIDE

# A data name is recorded in config.yaml and the checkpoints, and shown in messages.
MAX_NAME_CHARS = 100
# Float images are converted this many at a time (a float copy of a whole set would double it).
_CHUNK = 4096


def memory_dataset(data: Any, name: str | None = None) -> str:
    """The dataset setting a run on ``data`` records: ``memory:NAME``, NAME given or else
    ``tensor``, ``array`` or the Dataset's class name."""
    if name is None:
        if isinstance(data, torch.Tensor):
            name = "tensor"
        elif isinstance(data, np.ndarray):
            name = "array"
        else:
            name = type(data).__name__
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_CHARS:
        raise DataError(
            f"data_name must be a non-empty string of at most {MAX_NAME_CHARS} characters, "
            f"got {str(name)[:40]!r}"
        )
    if not name.isprintable():
        raise DataError(f"data_name must be printable text, got {name[:40]!r}")
    return MEMORY_PREFIX + name


def images_in_memory(data: Any) -> ImageSet:
    """``data`` as uint8 images ``[N, C, H, W]`` (labels from a Dataset's items when they
    carry them): a uint8 tensor or array as it is; integers from 0 to 255 as uint8; floats
    in [0, 1] quantized to 8 bits (``round(255 x)``); ``[N, H, W]`` as one channel. A torch
    ``Dataset`` (anything with ``__len__`` and ``__getitem__``) yields an image or an
    ``(image, label, ...)`` tuple per item: a tensor or array ``[C, H, W]`` or ``[H, W]``, or a
    PIL image. A DataError names what does not fit."""
    if isinstance(data, torch.Tensor | np.ndarray):
        return ImageSet(_as_uint8(torch.as_tensor(data), "data"))
    if hasattr(data, "__getitem__") and hasattr(data, "__len__") and not isinstance(data, str):
        return _dataset_images(data)
    raise DataError(
        "data must be a uint8 or float tensor [N, C, H, W], a NumPy array, or a torch "
        f"Dataset of images, got {type(data).__name__}"
    )


def memory_splits(images: ImageSet) -> tuple[ImageSet, ImageSet]:
    """(train, test) of images given in Python: a fixed tenth is the test split, as for a
    ``folder:`` dataset (validation is then carved from the rest, as for every dataset)."""
    if len(images) < 2:
        raise DataError(f"data holds {len(images)} image(s); at least 2 are needed")
    train, test = fixed_tenth_split(len(images))
    return images.subset(train), images.subset(test)


def _as_uint8(images: torch.Tensor, what: str) -> torch.Tensor:
    """``images`` ([N, C, H, W] or [N, H, W]) as a contiguous uint8 tensor [N, C, H, W] on the CPU."""
    if images.ndim == 3:
        images = images.unsqueeze(1)
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise DataError(
            f"{what} must be images [N, C, H, W] with C 1 or 3 (or [N, H, W]), got shape "
            f"{tuple(images.shape)}"
        )
    if images.shape[0] == 0:
        raise DataError(f"{what} holds no images")
    if max(images.shape[2:]) > MAX_IMAGE_SIDE or min(images.shape[2:]) < 1:
        raise DataError(
            f"{what} images are {images.shape[2]}x{images.shape[3]} pixels; a side must be "
            f"from 1 to {MAX_IMAGE_SIDE}"
        )
    images = images.detach().cpu()
    if images.dtype == torch.uint8:
        return images.contiguous()
    if images.dtype == torch.bool:
        return images.to(torch.uint8).mul_(255).contiguous()
    if images.is_floating_point():
        return _quantized(images, what)
    if images.is_complex() or int(images.min()) < 0 or int(images.max()) > 255:
        raise DataError(f"{what}: integer images must hold values from 0 to 255")
    return images.to(torch.uint8).contiguous()


def _quantized(images: torch.Tensor, what: str) -> torch.Tensor:
    """Float images in [0, 1] as uint8 ``round(255 x)``, a chunk at a time."""
    out = torch.empty(images.shape, dtype=torch.uint8)
    for begin in range(0, images.shape[0], _CHUNK):
        chunk = images[begin : begin + _CHUNK].float()
        if not bool(torch.isfinite(chunk).all()) or chunk.min() < 0 or chunk.max() > 1:
            raise DataError(
                f"{what}: float images must hold finite values in [0, 1] (they are stored as "
                "8-bit values, round(255 x)); scale them first"
            )
        out[begin : begin + _CHUNK] = chunk.mul(255).round_().to(torch.uint8)
    return out


def _dataset_images(dataset: Any) -> ImageSet:
    """Every item of a map-style Dataset, stacked as uint8 images, with their labels when the
    items carry them (all or none)."""
    count = len(dataset)
    if count == 0:
        raise DataError("data holds no images (an empty Dataset)")
    images: torch.Tensor | None = None
    labels: list[int] = []
    for index in range(count):
        image, label = _item_parts(dataset[index], index)
        pixels = _as_uint8(_item_tensor(image, index).unsqueeze(0), f"data item {index}")[0]
        if images is None:
            images = torch.empty((count, *pixels.shape), dtype=torch.uint8)
        elif pixels.shape != images.shape[1:]:
            raise DataError(
                f"data item {index} is an image of shape {tuple(pixels.shape)}, item 0 of "
                f"{tuple(images.shape[1:])}: give images of one size and channel count"
            )
        images[index] = pixels
        if index and (label is not None) != bool(labels):
            which = "has a label, item 0 has none" if label is not None else "has no label"
            raise DataError(f"data item {index} {which}: label every item or none")
        if label is not None:
            labels.append(_label(label, index))
    assert images is not None
    return ImageSet(images, torch.tensor(labels, dtype=torch.long) if labels else None)


def _item_parts(item: Any, index: int) -> tuple[Any, Any]:
    """(image, label or None) of one Dataset item: an image, or a tuple (image, label, ...)."""
    if not isinstance(item, tuple | list):
        return item, None
    if not item:
        raise DataError(f"data item {index} is empty")
    return item[0], item[1] if len(item) > 1 else None


def _item_tensor(image: Any, index: int) -> torch.Tensor:
    """One item's image as a tensor [C, H, W] or [H, W] (a PIL image converted to L or RGB)."""
    if isinstance(image, torch.Tensor | np.ndarray):
        tensor = torch.as_tensor(image)
    elif hasattr(image, "mode") and hasattr(image, "convert"):  # a PIL image
        picture = (
            image
            if image.mode in ("L", "RGB")
            else image.convert("L" if image.mode in ("1", "I", "I;16", "F") else "RGB")
        )
        tensor = torch.from_numpy(np.asarray(picture).copy())
        tensor = tensor.permute(2, 0, 1) if tensor.ndim == 3 else tensor
    else:
        raise DataError(
            f"data item {index} is a {type(image).__name__}: expected a tensor, a NumPy array "
            "or a PIL image"
        )
    if tensor.ndim not in (2, 3):
        raise DataError(
            f"data item {index} must be an image [C, H, W] or [H, W], got shape "
            f"{tuple(tensor.shape)}"
        )
    return tensor


def _label(label: Any, index: int) -> int:
    """An item's label as an int: a Python or NumPy integer, or a one-value integer tensor."""
    value = label
    if isinstance(label, torch.Tensor) and label.numel() == 1:
        value = label.item()
    elif isinstance(label, np.ndarray) and label.size == 1:
        value = label.item()
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise DataError(
            f"data item {index}'s label is {str(label)[:40]!r}: labels must be whole numbers "
            "(class indices)"
        )
    return int(value)
