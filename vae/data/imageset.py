"""The common currency of the data package: images held as one uint8 ``[N, C, H, W]`` tensor.

Every source module returns a (train, test) pair of these; batches are slices of them, so no
per-sample PIL conversion happens while training.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ImageSet:
    """Images as uint8 ``[N, C, H, W]``; ``binary`` means values are already 0 or 255."""

    images: torch.Tensor
    labels: torch.Tensor | None = None
    binary: bool = False

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def to(self, device: torch.device | str) -> ImageSet:
        """The same images and labels on ``device``."""
        labels = None if self.labels is None else self.labels.to(device)
        return ImageSet(self.images.to(device), labels, self.binary)

    def subset(self, index: torch.Tensor | slice) -> ImageSet:
        """The images (and labels) at ``index``."""
        labels = None if self.labels is None else self.labels[index]
        return ImageSet(self.images[index], labels, self.binary)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [0, 1]."""
    return images.float().div_(255.0)
