"""Image grids as PNG files, with a fixed value range: pixel value v in [0, 1] -> round(255 v)."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import torch

from vae.fileio import atomic_write_bytes

PADDING = 2
PADDING_VALUE = 1.0  # white lines separate the (mostly black) images


def tile(images: torch.Tensor, columns: int) -> torch.Tensor:
    """[N, C, H, W] in [0, 1] -> one [C, H', W'] grid, ``columns`` images per row.

    Values are clamped to [0, 1], never rescaled per grid: a grey pixel stays grey.
    """
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(f"expected a non-empty [N, C, H, W] batch, got {tuple(images.shape)}")
    count, channels, height, width = images.shape
    columns = max(1, min(columns, count))
    rows = math.ceil(count / columns)
    grid = torch.full(
        (channels, rows * (height + PADDING) + PADDING, columns * (width + PADDING) + PADDING),
        PADDING_VALUE,
    )
    images = images.detach().float().cpu().clamp(0.0, 1.0)
    for index in range(count):
        row, column = divmod(index, columns)
        top = PADDING + row * (height + PADDING)
        left = PADDING + column * (width + PADDING)
        grid[:, top : top + height, left : left + width] = images[index]
    return grid


def grid_png_bytes(images: torch.Tensor, columns: int) -> bytes:
    """PNG bytes of a grid; the same tensor always gives the same bytes."""
    buffer = io.BytesIO()
    _to_pil(tile(images, columns)).save(buffer, format="PNG")
    return buffer.getvalue()


def save_grid(images: torch.Tensor, path: str | Path, columns: int = 8) -> Path:
    """Write a grid PNG atomically; returns the path."""
    path = Path(path)
    atomic_write_bytes(path, grid_png_bytes(images, columns))
    return path


def save_reconstruction_grid(
    originals: torch.Tensor, reconstructions: torch.Tensor, path: str | Path, columns: int = 8
) -> Path:
    """Rows of originals, each directly above the row of their reconstructions."""
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
            blank = torch.zeros(missing, *originals.shape[1:])
            chunk_originals = torch.cat([chunk_originals.cpu(), blank])
            chunk_reconstructions = torch.cat([chunk_reconstructions.cpu(), blank])
        rows += [chunk_originals.cpu(), chunk_reconstructions.cpu()]
    return save_grid(torch.cat(rows), path, columns)


def _to_pil(image: torch.Tensor, scale: int = 1) -> Any:
    """[C, H, W] in [0, 1] -> a PIL image ('L' or 'RGB'), enlarged ``scale`` times (nearest)."""
    from PIL import Image

    pixels = image.detach().float().cpu().clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8)
    if pixels.shape[0] == 1:
        picture = Image.fromarray(pixels[0].numpy())
    else:
        picture = Image.fromarray(pixels.permute(1, 2, 0).contiguous().numpy())
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    return picture


def gif_bytes(frames: list[torch.Tensor], scale: int = 3, frame_ms: int = 80) -> bytes:
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


def save_gif(
    frames: list[torch.Tensor], path: str | Path, scale: int = 3, frame_ms: int = 80
) -> Path:
    """Write an animated GIF atomically; returns the path."""
    path = Path(path)
    atomic_write_bytes(path, gif_bytes(frames, scale, frame_ms))
    return path


LABEL_WIDTH = 84  # pixels of the text margin left of labelled rows


def save_labelled_rows(
    images: torch.Tensor, labels: list[str], path: str | Path, columns: int
) -> Path:
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
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    path = Path(path)
    atomic_write_bytes(path, buffer.getvalue())
    return path
