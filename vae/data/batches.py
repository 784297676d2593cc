"""Batches: the shuffled, optionally binarized training batches of an epoch (with DDP sharding)
and the in-order evaluation batches; and their labels, for a model conditioned on them."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from vae.data.imageset import ImageSet, to_float

# torch's generators take seeds that fit 64 bits (a negative one stands for itself plus 2**64).
_SEED_SPACE = 2**64


def batch_seed(seed: int, epoch: int, batch: int) -> int:
    """A distinct, reproducible seed per (run seed, epoch, batch), in [0, 2**64).

    Taken modulo 2**64 so that every run seed up to 2**64 - 1 works; torch reads a seed as its
    value modulo 2**64 anyway (-1 and 2**64 - 1 give the same sequence), so the runs whose seeds
    fitted before keep their shuffle and binarization draws."""
    return ((seed * 1_000_003 + epoch) * 1_000_033 + batch) % _SEED_SPACE


def epoch_order(num_images: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled order of one epoch: a pure function of (seed, epoch), so resumes match."""
    generator = torch.Generator().manual_seed(batch_seed(seed, epoch, -1))
    return torch.randperm(num_images, generator=generator)


def training_batches(
    train: ImageSet,
    batch_size: int,
    seed: int,
    epoch: int,
    dynamic_binarize: bool,
    start_batch: int = 0,
    shard: Callable[[int], slice] | None = None,
) -> Iterator[torch.Tensor]:
    """Float batches in [0, 1] for one epoch, starting at ``start_batch`` (for resume).

    ``shard(n)`` picks this process's part of each batch of ``n`` images in multi-process
    training; the binarization noise is drawn for the whole batch first, so the union of the
    parts equals the single-process batch.
    """
    device = train.images.device
    for batch, indices, part in _epoch_batches(train, batch_size, seed, epoch, start_batch, shard):
        if not dynamic_binarize:
            yield to_float(train.images[indices[part]])
            continue
        x = to_float(train.images[indices])
        generator = torch.Generator(device=device).manual_seed(batch_seed(seed, epoch, batch))
        # U < p is a Bernoulli(p) draw; on CPU it costs half of torch.bernoulli's time, which
        # is a tenth of a small model's step.
        uniform = torch.rand(x.shape, generator=generator, device=device)
        yield uniform.lt_(x)[part]


def training_labels(
    train: ImageSet,
    batch_size: int,
    seed: int,
    epoch: int,
    start_batch: int = 0,
    shard: Callable[[int], slice] | None = None,
) -> Iterator[torch.Tensor]:
    """The labels of the images :func:`training_batches` gives with the same arguments, batch
    for batch (the training images must have labels)."""
    labels = train.labels
    assert labels is not None, "training_labels needs labelled images"
    for _, indices, part in _epoch_batches(train, batch_size, seed, epoch, start_batch, shard):
        yield labels[indices[part]]


def _epoch_batches(
    train: ImageSet,
    batch_size: int,
    seed: int,
    epoch: int,
    start_batch: int,
    shard: Callable[[int], slice] | None,
) -> Iterator[tuple[int, torch.Tensor, slice]]:
    """(batch number, the batch's image indices, this process's part of them) of one epoch's
    batches from ``start_batch`` on."""
    order = epoch_order(len(train), seed, epoch).to(train.images.device)
    for batch, begin in enumerate(range(0, len(train), batch_size)):
        if batch < start_batch:
            continue
        indices = order[begin : begin + batch_size]
        yield batch, indices, shard(len(indices)) if shard is not None else slice(None)


def global_batch_size(num_images: int, batch_size: int, batch: int) -> int:
    """Images in batch number ``batch`` of an epoch (the last one may be short)."""
    return min(batch_size, num_images - batch * batch_size)


def batches_per_epoch(num_images: int, batch_size: int) -> int:
    """Batches in one epoch of ``num_images`` images (the last one may be short)."""
    return (num_images + batch_size - 1) // batch_size


def evaluation_batches(images: ImageSet, batch_size: int) -> Iterator[torch.Tensor]:
    """Float batches in [0, 1], in order (evaluation sets are binarized already when needed)."""
    for begin in range(0, len(images), batch_size):
        yield to_float(images.images[begin : begin + batch_size])


def labelled_batches(
    images: ImageSet, batch_size: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """:func:`evaluation_batches` with each batch's labels (None for unlabelled images)."""
    labels = images.labels
    for number, x in enumerate(evaluation_batches(images, batch_size)):
        begin = number * batch_size
        yield x, None if labels is None else labels[begin : begin + batch_size]
