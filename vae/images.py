"""Image grids as PNG files, with a fixed value range: pixel value v in [0, 1] -> round(255 v)."""

from __future__ import annotations

import io
import math
from pathlib import Path

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
    from PIL import Image

    grid = tile(images, columns)
    pixels = grid.mul(255.0).round().to(torch.uint8)
    if pixels.shape[0] == 1:
        picture = Image.fromarray(pixels[0].numpy())
    else:
        picture = Image.fromarray(pixels.permute(1, 2, 0).contiguous().numpy())
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
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
