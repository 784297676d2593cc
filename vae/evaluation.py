"""Evaluation of a model on a set of images: the true ELBO (beta = 1) and its parts."""

from __future__ import annotations

import torch

from vae.data import ImageSet, evaluation_batches
from vae.model import VAE
from vae.objectives import elbo_terms

EVALUATION_SEED = 0


@torch.no_grad()
def evaluate_elbo(
    model: VAE,
    images: ImageSet,
    gaussian_sigma: float = 0.1,
    batch_size: int = 1000,
    seed: int = EVALUATION_SEED,
) -> dict[str, float]:
    """Negative ELBO, reconstruction and KL in nats per image, with beta = 1 and one sample.

    The posterior noise comes from its own generator with a fixed seed, so the figure is
    reproducible and evaluating never disturbs the training random stream. For the Gaussian
    likelihood the plain per-pixel MSE of the decoded mean is reported too.
    """
    was_training = model.training
    model.eval()
    device = images.images.device
    generator = torch.Generator(device=device).manual_seed(seed)
    totals = {"neg_elbo": 0.0, "recon": 0.0, "kl": 0.0, "mse": 0.0}
    count = 0
    for x in evaluation_batches(images, batch_size):
        decoded, mu, logvar = model(x, generator)
        terms = elbo_terms(decoded, x, mu, logvar, model.spec.likelihood, 1.0, 0.0, gaussian_sigma)
        n = x.shape[0]
        totals["neg_elbo"] += terms.neg_elbo.item() * n
        totals["recon"] += terms.recon.item() * n
        totals["kl"] += terms.kl.item() * n
        if model.spec.likelihood == "mse":
            totals["mse"] += (model.decoded_to_image(decoded) - x).pow(2).mean().item() * n
        count += n
    model.train(was_training)
    if count == 0:
        raise ValueError("cannot evaluate on an empty set of images")
    results = {key: value / count for key, value in totals.items()}
    if model.spec.likelihood != "mse":
        del results["mse"]
    return results
