"""Split policy: the fixed validation split carved from the training set, ``limit``, the resize
and channel conversion done once at load time, the fixed-seed binarization of evaluation sets, and
the fingerprint a resume checks."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F

from vae.config import DataConfig
from vae.data.imageset import ImageSet
from vae.data.mapped import MappedImages
from vae.data.raw import load_raw
from vae.data.seeds import (
    SPLIT_SEED,
    TEST_BINARIZATION_SEED,
    TRAINING_BINARIZATION_SEED,
    VALIDATION_BINARIZATION_SEED,
)
from vae.errors import DataError, Setting
from vae.reporting import Reporter

DEFAULT_VAL_SIZE = 5000

# Validation images shown (grey, as a person knows them) in training's reconstruction grids.
PREVIEW_IMAGES = 32


@dataclass
class DataSplits:
    """Train, validation and test splits plus a description for checkpoint metadata.

    ``preview``: the first PREVIEW_IMAGES validation images before any binarization (uint8).
    """

    train: ImageSet
    val: ImageSet
    test: ImageSet
    info: dict[str, Any]
    preview: torch.Tensor
    # The names of the labels' values (None for unlabelled data): what a conditional model's
    # spec records. The preview images' labels, which a conditional model reconstructs with.
    classes: tuple[str, ...] | None = None
    preview_labels: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> DataSplits:
        """The same splits on ``device``."""
        return DataSplits(
            self.train.to(device),
            self.val.to(device),
            self.test.to(device),
            self.info,
            self.preview.to(device),
            self.classes,
            None if self.preview_labels is None else self.preview_labels.to(device),
        )


def effective_binarize(config: DataConfig, likelihood: str) -> str:
    """Binarization only applies to the Bernoulli likelihood."""
    return config.binarize if likelihood == "bce" else "none"


def default_val_size(available: int, limit: int | None) -> int:
    """Validation images when none are asked for: min(5000, 10 %) of the ``available`` training
    images, and with ``limit`` the same share of the images trained on (a 2,000-image smoke run
    validates 182 MNIST images, not 5,000: validation is no longer most of its time)."""
    full = min(DEFAULT_VAL_SIZE, max(1, available // 10))
    if limit is None or limit >= available - full:
        return full
    return max(1, round(full * limit / (available - full)))


def load_splits(
    config: DataConfig,
    likelihood: str,
    reporter: Reporter | None = None,
    given: ImageSet | None = None,
) -> DataSplits:
    """Load train/validation/test splits as described by ``config``, binarized as ``config``
    asks when ``likelihood`` is the Bernoulli one (see :func:`carve_splits`); ``given``: the
    images of a ``memory:`` dataset (vae.data.in_memory)."""
    return carve_splits(config, effective_binarize(config, likelihood), reporter, given)


def load_grey_splits(config: DataConfig, reporter: Reporter | None = None) -> DataSplits:
    """The splits of ``config`` as stored (grey, never binarized, whatever ``config`` asks): the
    images a model is shown rather than trained on."""
    return carve_splits(config, "none", reporter)


def carve_splits(
    config: DataConfig,
    binarize: str,
    reporter: Reporter | None = None,
    given: ImageSet | None = None,
) -> DataSplits:
    """Train/validation/test splits of ``config``, binarized as ``binarize`` says (``none``,
    ``static`` or ``dynamic``); ``given``: the images of a ``memory:`` dataset, whose test
    split is a fixed tenth (as a folder's).

    The validation split is carved from the training set with a fixed seed; ``limit`` then keeps
    the first N remaining training images. The official test split is kept for test metrics.
    Mapped images stay mapped: the carve and ``limit`` are views, and no step reads a whole split
    into memory, except a resize or channel change of IDX files (done once, in memory) and the
    binarizations drawn once (the binarized copy must live somewhere).
    """
    train, test = load_raw(config, reporter, given)
    classes = class_names(train, test)
    train = shaped(train, config)
    test = shaped(test, config)
    val_size = config.val_size
    if val_size is None:
        val_size = default_val_size(len(train), config.limit)
    if val_size >= len(train):
        raise DataError(
            Setting("val_size"),
            f" {val_size} leaves no training images out of {len(train)} in "
            f"'{config.dataset}': choose a smaller ",
            Setting("val_size"),
        )
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(SPLIT_SEED))
    val = train.subset(order[:val_size])
    train = train.subset(order[val_size:].sort().values)
    if config.limit is not None:
        train = train.subset(slice(0, config.limit))
    fingerprint = split_fingerprint(train, val)
    preview = val.images[:PREVIEW_IMAGES].clone()
    preview_labels = None if val.labels is None else val.labels[:PREVIEW_IMAGES].clone()
    if binarize != "none":
        val = binarize_once(val, VALIDATION_BINARIZATION_SEED)
        test = binarize_once(test, TEST_BINARIZATION_SEED)
        if binarize == "static":
            train = binarize_once(train, TRAINING_BINARIZATION_SEED)
    _, channels, height, width = train.images.shape  # type: ignore[misc]
    info = {
        "dataset": config.dataset,
        "channels": int(channels),
        "height": int(height),
        "width": int(width),
        "value_range": [0.0, 1.0],
        "binarize": binarize,
        "val_binarization_seed": VALIDATION_BINARIZATION_SEED if binarize != "none" else None,
        "test_binarization_seed": TEST_BINARIZATION_SEED if binarize != "none" else None,
        "num_train": len(train),
        "num_val": len(val),
        "num_test": len(test),
        "fingerprint": fingerprint,
    }
    return DataSplits(train, val, test, info, preview, classes, preview_labels)


def class_names(train: ImageSet, test: ImageSet) -> tuple[str, ...] | None:
    """The names of the labels' values: the source's (``ImageSet.classes``), else the numbers
    0 to the largest label of either split; None when the training images have no labels."""
    if train.labels is None:
        return None
    if train.classes:
        return train.classes
    found = [labels for labels in (train.labels, test.labels) if labels is not None]
    highest = max((int(labels.max()) for labels in found if len(labels)), default=-1)
    return tuple(str(number) for number in range(highest + 1))


def labels_outside(labels: torch.Tensor | None, classes: int) -> int | None:
    """The first label of ``labels`` that is no class index below ``classes`` (None when all
    are, or there are no labels)."""
    if labels is None:
        return None
    wrong = (labels < 0) | (labels >= classes)
    return int(labels[wrong][0]) if bool(wrong.any()) else None


def fingerprint_without_labels(splits: DataSplits) -> str:
    """The fingerprint of ``splits``' images as if they had no labels: what a ``folder:`` run
    recorded before folders gave their sub-folders' labels (a resume of it is then the same
    data)."""
    return split_fingerprint(replace(splits.train, labels=None), replace(splits.val, labels=None))


# What must be equal for two loads to be the same training data (a resume checks them).
FINGERPRINT_FIELDS = ("dataset", "channels", "height", "width", "num_train", "num_val")


def split_fingerprint(train: ImageSet, val: ImageSet) -> str:
    """sha256 of the training and validation images and labels (uint8, before binarization): a
    resume refuses data whose fingerprint differs from the one its checkpoint recorded.

    This pass reads every training and validation image, so mapped cache shards are checked
    against their content hash here, each as its first image is read (a damaged one is decoded
    again first: see ``vae.data.cache``), at the cost of no read of their own."""
    import hashlib

    digest = hashlib.sha256()
    for part in (train.images, train.labels, val.images, val.labels):
        if part is None:
            continue
        digest.update(str(tuple(part.shape)).encode())
        # Mapped images are hashed a chunk at a time: the same bytes, so the same digest.
        chunks = part.checked_chunks(4096) if isinstance(part, MappedImages) else [part]
        for chunk in chunks:
            digest.update(chunk.detach().cpu().contiguous().numpy())
    return digest.hexdigest()


def data_difference(recorded: dict[str, Any], found: dict[str, Any]) -> str | None:
    """How the data a checkpoint was trained on (``recorded``, its metadata's ``data``) differs
    from the data loaded now (``found``), or None when they agree. Checkpoints written before
    fingerprints existed are compared on the other fields only."""
    fields = FINGERPRINT_FIELDS + (("fingerprint",) if "fingerprint" in recorded else ())
    for name in fields:
        if recorded.get(name) != found.get(name):
            if name == "fingerprint":
                return "the images differ (content hash)"
            return f"{name} {found.get(name)!r} where the run had {recorded.get(name)!r}"
    return None


def binarize_once(images: ImageSet, seed: int) -> ImageSet:
    """A Bernoulli draw of every pixel with a fixed seed, stored as 0/255 uint8 in memory (the
    drawn copy must live somewhere)."""
    pixels = images.image_tensor()
    drawn = bernoulli_pixels(pixels.float() / 255.0, seed).to(torch.uint8) * 255
    return ImageSet(drawn, images.labels, binary=True, classes=images.classes)


def bernoulli_pixels(probabilities: torch.Tensor, seed: int) -> torch.Tensor:
    """A Bernoulli draw (0. or 1.) of every value of ``probabilities`` (in [0, 1]), with a
    generator seeded ``seed`` on their device: the one draw of every fixed-seed binarization."""
    generator = torch.Generator(device=probabilities.device).manual_seed(seed)
    return torch.bernoulli(probabilities, generator=generator)


def shaped(images_set: ImageSet, config: DataConfig) -> ImageSet:
    """Convert channels and resize once, at load time (in memory: decoded sources are decoded at
    the size and channels asked for, so only stored arrays such as IDX files come here)."""
    channels_differ = config.channels is not None and images_set.images.shape[1] != config.channels
    size = config.image_size
    size_differs = size is not None and tuple(images_set.images.shape[2:]) != (size, size)
    if not channels_differ and not size_differs:
        return images_set
    images = images_set.image_tensor()
    if channels_differ:
        if config.channels == 3:
            images = images.expand(-1, 3, -1, -1).contiguous()
        else:
            weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            images = (images.float() * weights).sum(1, keepdim=True).round().to(torch.uint8)
    if size is not None and tuple(images.shape[2:]) != (size, size):
        chunks = []
        for begin in range(0, images.shape[0], 4096):
            chunk = images[begin : begin + 4096].float()
            resized = F.interpolate(chunk, size=(size, size), mode="bilinear", antialias=True)
            chunks.append(resized.round().clamp(0, 255).to(torch.uint8))
        images = torch.cat(chunks)
    return replace(images_set, images=images)
