"""The validation figures after each epoch (beta = 1: the ELBO, and the bound an IWAE run
trains): several processes each score a part of the validation images and sum; a figure that
is not finite stops the run without saving."""

from __future__ import annotations

import math

import torch

from vae.data import ImageSet
from vae.distributed import World
from vae.errors import TrainingDiverged
from vae.evaluation import evaluate_elbo, evaluate_iwae_bound
from vae.model import VAE
from vae.run_folder import RunFolder
from vae.trainer.objective import RunObjective

BATCH_SIZE = 1000


def validate(
    model: VAE,
    images: ImageSet,
    sigma: float,
    world: World,
    device: torch.device,
    epoch: int,
    folder: RunFolder,
    objective: RunObjective,
) -> dict[str, float]:
    """The validation figures of ``model`` on ``images`` after the 1-based ``epoch``
    (``sigma``: the Gaussian likelihood's; ``objective``: the run's), refused when not
    finite."""
    if not world.distributed:
        validation = _figures(model, images, sigma, objective)
    else:
        part = images.subset(world.shard(len(images)))
        means = _figures(model, part, sigma, objective)
        sums = torch.tensor(
            [value * len(part) for value in means.values()] + [float(len(part))],
            dtype=torch.float64,
            device=device,
        )
        *totals, count = world.all_reduce_sum(sums).tolist()
        validation = {key: total / count for key, total in zip(means, totals, strict=True)}
    if not all(math.isfinite(v) for v in validation.values()):
        # The run's own figure is named when it is the one at fault (an IWAE run's bound).
        elbo_finite = math.isfinite(validation["neg_elbo"])
        loss = objective.loss_name
        key, name = (loss.key, loss.total) if elbo_finite else ("neg_elbo", "-ELBO")
        raise TrainingDiverged(
            f"validation {name} became {validation[key]} after epoch {epoch}; stopped "
            f"without saving: the last good checkpoints in {folder.path} are intact"
        )
    return validation


def _figures(
    model: VAE, images: ImageSet, sigma: float, objective: RunObjective
) -> dict[str, float]:
    """The one-sample -ELBO and its parts, after the K-sample -IWAE bound (with a generator of
    fixed seed, as the -ELBO's) for a run that trains it."""
    figures = evaluate_elbo(model, images, sigma, batch_size=BATCH_SIZE)
    if objective.samples is None:
        return figures
    bound = evaluate_iwae_bound(model, images, objective.samples, sigma, BATCH_SIZE)
    return {objective.best_key: bound, **figures}
