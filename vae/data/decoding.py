"""Image files: finding them and decoding them with Pillow into uint8 tensors, with the guards that
hostile or damaged files need (a pixel limit checked before decoding, every decoder error turned
into one line naming the file)."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import torch

from vae.errors import DataError, first_line

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
MAX_IMAGE_PIXELS = 40_000_000  # larger files are refused before decoding (decompression bombs)
_GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")


# What Pillow's decoders raise on damaged files besides OSError: a broken PNG chunk gives
# SyntaxError, a short one EOFError or struct.error, odd headers the others.
DECODER_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    struct.error,
    IndexError,
    KeyError,
    TypeError,
    ZeroDivisionError,
)


def read_image_files(
    files: list[Path], size: int, channels: int | None, crop: int | None = None
) -> torch.Tensor:
    """Image files -> uint8 [N, C, size, size]; channels None infers from the first file.

    Each image is centre-cropped to a square (``crop`` pixels a side, else the largest centred
    square) and resized, so faces and objects keep their proportions. 16-bit and float images
    are scaled to 8 bits (not clipped); transparency is composited onto black, the background of
    the datasets these models train on; palettes are expanded.
    """
    import warnings

    import numpy as np
    from PIL import Image, UnidentifiedImageError

    # Filled in place: a list of arrays stacked at the end would need twice the memory, which
    # matters for ImageNet-sized trees (15.7 GB at 64 px).
    images: torch.Tensor | None = None
    for index, path in enumerate(files):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(path) as image:
                    width, height = image.size
                    if width * height > MAX_IMAGE_PIXELS:
                        raise DataError(
                            f"cannot read image {path}: {width}x{height} pixels is over the "
                            f"{MAX_IMAGE_PIXELS:,}-pixel limit (refused before decoding)"
                        )
                    if channels is None:
                        channels = 1 if image.mode in _GREY_MODES else 3
                    converted = _to_8bit(image, channels)
                    side = min(width, height, crop or max(width, height))
                    left, top = (width - side) // 2, (height - side) // 2
                    converted = converted.resize(
                        (size, size),
                        Image.Resampling.BILINEAR,
                        box=(left, top, left + side, top + side),
                    )
                    array = np.asarray(converted, dtype=np.uint8)
        except (*DECODER_ERRORS, UnidentifiedImageError, Image.DecompressionBombError) as error:
            raise DataError(f"cannot read image {path}: {first_line(error)}") from None
        except Image.DecompressionBombWarning as error:
            raise DataError(f"cannot read image {path}: {error}") from None
        if images is None:
            images = torch.empty((len(files), channels or 1, size, size), dtype=torch.uint8)
        images.numpy()[index] = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    if images is None:
        return torch.empty((0, channels or 1, size, size), dtype=torch.uint8)
    return images


def _to_8bit(image: Any, channels: int) -> Any:
    """A PIL image in mode L (channels 1) or RGB (channels 3), from any mode Pillow opens."""
    import numpy as np
    from PIL import Image

    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        values = np.asarray(image, dtype=np.float64)
        if image.mode != "F":
            values = values / 257.0  # integer grey images are 16-bit in practice (PNG, TIFF)
        elif values.max(initial=0.0) <= 1.0:
            values = values * 255.0  # float images in [0, 1]; otherwise already in [0, 255]
        image = Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), mode="L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        image = image.convert("RGBA")
        black = Image.new("RGBA", image.size, (0, 0, 0, 255))
        image = Image.alpha_composite(black, image)
    return image.convert("L" if channels == 1 else "RGB")


def collect_image_files(path: Path) -> list[Path]:
    """An image file, or every image file under a folder (sorted)."""
    if path.is_dir():
        return sorted(
            p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
        )
    if path.is_file():
        return [path]
    raise DataError(f"image file or folder not found: {path}")
