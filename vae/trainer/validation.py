"""The validation ELBO after each epoch (beta = 1): several processes each score a part of the
validation images and sum; a figure that is not finite stops the run without saving."""

from __future__ import annotations

import math

import torch

from vae.data import ImageSet
from vae.distributed import World
from vae.errors import TrainingDiverged
from vae.evaluation import evaluate_elbo
from vae.model import VAE
from vae.run_folder import RunFolder

BATCH_SIZE = 1000


def validate(
    model: VAE,
    images: ImageSet,
    sigma: float,
    world: World,
    device: torch.device,
    epoch: int,
    folder: RunFolder,
) -> dict[str, float]:
    """The validation ELBO's terms of ``model`` on ``images`` after the 1-based ``epoch``
    (``sigma``: the Gaussian likelihood's), refused when not finite."""
    if not world.distributed:
        validation = evaluate_elbo(model, images, sigma, batch_size=BATCH_SIZE)
    else:
        part = images.subset(world.shard(len(images)))
        means = evaluate_elbo(model, part, sigma, batch_size=BATCH_SIZE)
        sums = torch.tensor(
            [value * len(part) for value in means.values()] + [float(len(part))],
            dtype=torch.float64,
            device=device,
        )
        *totals, count = world.all_reduce_sum(sums).tolist()
        validation = {key: total / count for key, total in zip(means, totals, strict=True)}
    if not all(math.isfinite(v) for v in validation.values()):
        raise TrainingDiverged(
            f"validation -ELBO became {validation['neg_elbo']} after epoch {epoch}; stopped "
            f"without saving: the last good checkpoints in {folder.path} are intact"
        )
    return validation
