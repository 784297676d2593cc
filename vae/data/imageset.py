"""The common currency of the data package: images as one uint8 ``[N, C, H, W]`` array, held in
memory (a tensor) or read from memory-mapped files (:class:`~vae.data.mapped.MappedImages`).

Every source module returns a (train, test) pair of these; batches are slices of them, so no
per-sample PIL conversion happens while training. Both kinds of storage answer the same indexing
with the same tensors, so the batches, and a run's numbers, do not depend on the storage.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vae.data.mapped import MappedImages


@dataclass
class ImageSet:
    """Images as uint8 ``[N, C, H, W]``; ``binary`` means values are already 0 or 255;
    ``classes`` names the labels' values, where the source knows names (label i is
    ``classes[i]``; None: numbered, see :func:`vae.data.splits.class_names`).

    ``images[index]`` (a slice or an index tensor) gives a tensor in both storages; ``subset``
    keeps mapped images mapped (a view, no copy).
    """

    images: torch.Tensor | MappedImages
    labels: torch.Tensor | None = None
    binary: bool = False
    classes: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def mapped(self) -> bool:
        """Whether the images are read from mapped files."""
        return isinstance(self.images, MappedImages)

    def to(self, device: torch.device | str) -> ImageSet:
        """The same images and labels on ``device`` (mapped images stay mapped and deliver each
        batch there)."""
        labels = None if self.labels is None else self.labels.to(device)
        return ImageSet(self.images.to(device), labels, self.binary, self.classes)

    def subset(self, index: torch.Tensor | slice) -> ImageSet:
        """The images (and labels) at ``index``."""
        labels = None if self.labels is None else self.labels[index]
        if isinstance(self.images, MappedImages):
            return ImageSet(self.images.select(index), labels, self.binary, self.classes)
        return ImageSet(self.images[index], labels, self.binary, self.classes)

    def in_memory(self) -> ImageSet:
        """The same set with its images in memory (a copy when they are mapped)."""
        if isinstance(self.images, MappedImages):
            return ImageSet(self.images.in_memory(), self.labels, self.binary, self.classes)
        return self

    def image_tensor(self) -> torch.Tensor:
        """The images as one tensor: the in-memory tensor itself, or a copy of mapped images."""
        images = self.in_memory().images
        assert isinstance(images, torch.Tensor)
        return images


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [0, 1]."""
    return images.float().div_(255.0)
