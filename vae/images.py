"""Image grids as PNG files, with a fixed value range: pixel value v in [0, 1] -> round(255 v).

Works on NumPy arrays and accepts torch tensors without importing torch, so that ``generate``'s
torch-free path writes exactly the bytes the torch path writes.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np

from vae.errors import ConfigError, VAEError
from vae.fileio import PICTURE, atomic_write_bytes

if TYPE_CHECKING:
    import torch

Images: TypeAlias = "torch.Tensor | np.ndarray"

PADDING = 2
PADDING_VALUE = 1.0  # white lines separate the (mostly black) images


def as_array(images: Images) -> np.ndarray:
    """float32 NumPy values of a torch tensor (on any device) or an array."""
    if hasattr(images, "detach"):
        images = images.detach().float().cpu().numpy()
    return np.asarray(images, dtype=np.float32)


def _finite(values: np.ndarray) -> np.ndarray:
    """``values``, unless some are NaN or infinite: a picture of them would be silently black."""
    if not np.isfinite(values).all():
        raise VAEError(
            "the decoded images hold NaN or infinite values (the model's outputs overflow: "
            "weights or temperature too large); no picture written"
        )
    return values


def tile(images: Images, columns: int) -> np.ndarray:
    """[N, C, H, W] in [0, 1] -> one [C, H', W'] grid, ``columns`` images per row.

    Values are clamped to [0, 1], never rescaled per grid: a grey pixel stays grey.
    """
    images = _finite(as_array(images))
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(f"expected a non-empty [N, C, H, W] batch, got {tuple(images.shape)}")
    count, channels, height, width = images.shape
    columns = max(1, min(columns, count))
    rows = math.ceil(count / columns)
    grid = np.full(
        (channels, rows * (height + PADDING) + PADDING, columns * (width + PADDING) + PADDING),
        PADDING_VALUE,
        dtype=np.float32,
    )
    images = np.clip(images, 0.0, 1.0)
    for index in range(count):
        row, column = divmod(index, columns)
        top = PADDING + row * (height + PADDING)
        left = PADDING + column * (width + PADDING)
        grid[:, top : top + height, left : left + width] = images[index]
    return grid


# The still-picture formats written, by file suffix (GIFs are written by save_gif).
PICTURE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}
JPEG_QUALITY = 95


def picture_format(path: str | Path) -> str:
    """The format a picture named ``path`` is written in, from its suffix; ConfigError for a
    suffix vae cannot write (the file would otherwise hold bytes its name does not say)."""
    suffix = Path(path).suffix.lower()
    if suffix not in PICTURE_FORMATS:
        raise ConfigError(
            f"cannot write a picture to {path}: name it .png or .jpg "
            f"(got {repr(suffix) if suffix else 'no suffix'})"
        )
    return PICTURE_FORMATS[suffix]


def check_gif_name(path: str | Path) -> None:
    """ConfigError unless ``path`` ends in .gif."""
    if Path(path).suffix.lower() != ".gif":
        raise ConfigError(f"cannot write an animation to {path}: name it .gif")


def _encoded(picture: Any, path: str | Path) -> bytes:
    """``picture`` (PIL) encoded in the format ``path``'s suffix names; deterministic bytes."""
    buffer = io.BytesIO()
    if picture_format(path) == "JPEG":
        picture.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    else:
        picture.save(buffer, format="PNG")
    return buffer.getvalue()


def image_png_bytes(image: Images) -> bytes:
    """PNG bytes of one [C, H, W] image in [0, 1], unpadded (the explorer's pictures)."""
    return _encoded(_to_pil(image), "image.png")


def save_grid(images: Images, path: str | Path, columns: int = 8) -> Path:
    """Write a grid picture atomically (PNG, or JPEG for .jpg / .jpeg); returns the path."""
    path = Path(path)
    atomic_write_bytes(path, _encoded(_to_pil(tile(images, columns)), path), replaces=PICTURE)
    return path


def save_reconstruction_grid(
    originals: Images, reconstructions: Images, path: str | Path, columns: int = 8
) -> Path:
    """Rows of originals, each directly above the row of their reconstructions."""
    originals, reconstructions = as_array(originals), as_array(reconstructions)
    if originals.shape != reconstructions.shape:
        raise ValueError("originals and reconstructions must have the same shape")
    count = originals.shape[0]
    columns = max(1, min(columns, count))
    rows = []
    for begin in range(0, count, columns):
        chunk_originals = originals[begin : begin + columns]
        chunk_reconstructions = reconstructions[begin : begin + columns]
        missing = columns - chunk_originals.shape[0]
        if missing:
            blank = np.zeros((missing, *originals.shape[1:]), dtype=np.float32)
            chunk_originals = np.concatenate([chunk_originals, blank])
            chunk_reconstructions = np.concatenate([chunk_reconstructions, blank])
        rows += [chunk_originals, chunk_reconstructions]
    return save_grid(np.concatenate(rows), path, columns)


def _to_pil(image: Images, scale: int = 1) -> Any:
    """[C, H, W] in [0, 1] -> a PIL image ('L' or 'RGB'), enlarged ``scale`` times (nearest)."""
    from PIL import Image

    # float32 multiply and round-half-to-even: the same pixel values torch's mul/round gave.
    pixels = np.round(np.clip(_finite(as_array(image)), 0.0, 1.0) * np.float32(255.0))
    pixels = pixels.astype(np.uint8)
    if pixels.shape[0] == 1:
        picture = Image.fromarray(pixels[0])
    else:
        picture = Image.fromarray(np.ascontiguousarray(pixels.transpose(1, 2, 0)))
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    return picture


def gif_bytes(frames: list[Images], scale: int = 3, frame_ms: int = 80) -> bytes:
    """An endlessly looping GIF of [C, H, W] frames in [0, 1]; the same frames give the same
    bytes. Identical neighbouring frames are kept as separate frames."""
    if not frames:
        raise ValueError("a GIF needs at least one frame")
    pictures = [_to_pil(frame, scale) for frame in frames]
    if pictures[0].mode == "RGB":
        pictures = [p.quantize(colors=256, method=2, dither=0) for p in pictures]
    buffer = io.BytesIO()
    pictures[0].save(
        buffer,
        format="GIF",
        save_all=True,
        append_images=pictures[1:],
        duration=frame_ms,
        loop=0,
        optimize=False,
        disposal=1,
    )
    return buffer.getvalue()


def save_gif(frames: list[Images], path: str | Path, scale: int = 3, frame_ms: int = 80) -> Path:
    """Write an animated GIF atomically; returns the path."""
    path = Path(path)
    check_gif_name(path)
    atomic_write_bytes(path, gif_bytes(frames, scale, frame_ms), replaces=PICTURE)
    return path


LABEL_WIDTH = 84  # pixels of the text margin left of labelled rows


def save_labelled_rows(images: Images, labels: list[str], path: str | Path, columns: int) -> Path:
    """A grid with ``columns`` images per row and a text label left of each row."""
    from PIL import Image, ImageDraw, ImageFont

    grid = _to_pil(tile(images, columns))
    height = images.shape[2]
    canvas = Image.new(
        grid.mode,
        (grid.width + LABEL_WIDTH, grid.height),
        color=255 if grid.mode == "L" else (255, 255, 255),
    )
    canvas.paste(grid, (LABEL_WIDTH, 0))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    black = 0 if grid.mode == "L" else (0, 0, 0)
    for row, text in enumerate(labels):
        top = PADDING + row * (height + PADDING) + max(0, height // 2 - 6)
        draw.text((4, top), text, fill=black, font=font)
    path = Path(path)
    atomic_write_bytes(path, _encoded(canvas, path), replaces=PICTURE)
    return path
