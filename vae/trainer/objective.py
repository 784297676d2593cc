"""What a run optimises and which validation figure picks its best checkpoint: the ELBO
(beta-weighted, with free bits; the step loop computes it), or the K-sample importance-weighted
bound of Burda et al. (2016), ``objective`` iwae, whose terms are computed here.

An IWAE run's best checkpoint is chosen on the bound it trains, on the validation images with K
samples from a generator of fixed seed (the same function of the weights at every epoch), not
on the -ELBO: training the bound loosens the ELBO on purpose (the posterior need not be good
alone, only as a proposal of K), so an -ELBO choice would pick against the objective. The
validation -ELBO is still reported beside it.
"""

from __future__ import annotations

import torch

from vae.config import RunConfig
from vae.config.choices import IWAE_OBJECTIVE
from vae.distributed import World
from vae.loss_name import LossName
from vae.model import VAE
from vae.objectives import ElboTerms, iwae_terms, log_likelihood
from vae.trainer.metric_sums import BOUND_TERM, SUMMED_TERMS


class RunObjective:
    """The objective of the run ``config`` describes, whose loss is named ``loss_name``."""

    def __init__(self, config: RunConfig, loss_name: LossName) -> None:
        objective = config.objective
        # K posterior samples per image for the IWAE bound; None for the ELBO's one.
        self.samples = objective.iw_samples if objective.objective == IWAE_OBJECTIVE else None
        self.likelihood = objective.likelihood
        self.gaussian_sigma = objective.gaussian_sigma
        self.loss_name = loss_name
        # The validation figure that picks checkpoint_best and drives a plateau schedule: the
        # one the run optimises (neg_elbo, or neg_iwae_kK).
        self.best_key = loss_name.key
        self.summed = SUMMED_TERMS if self.samples is None else (*SUMMED_TERMS, BOUND_TERM)

    def noise(
        self,
        model: VAE,
        generator: torch.Generator,
        batch_images: int,
        device: torch.device,
        world: World,
    ) -> torch.Tensor | None:
        """The reparameterisation noise of this process's images (None for a family whose
        posterior is a point, the autoencoder's): [images, latent_dim] for the ELBO, [images,
        K, latent_dim] for the bound.

        It is drawn for the whole batch from the run's ``generator`` and sliced (images first),
        so several processes use the same noise as one would."""
        if not model.family.stochastic:
            return None
        latent = model.spec.latent_dim
        shape = (
            (batch_images, latent) if self.samples is None else (batch_images, self.samples, latent)
        )
        noise = torch.randn(shape, generator=generator, device=device)
        if world.distributed:
            noise = noise[world.shard(batch_images)]
        return noise

    def bound_terms(
        self,
        model: VAE,
        decoded: torch.Tensor,
        x: torch.Tensor,
        mu: torch.Tensor,
        logvar: torch.Tensor,
        noise: torch.Tensor,
        beta: float,
    ) -> ElboTerms:
        """The IWAE bound's terms (``iwae_terms``) of images ``x`` from the K decodings
        ``decoded`` [batch, K, ...] of the posterior samples ``noise`` [batch, K, D] places,
        through the family's and its prior's log densities."""
        batch, samples = noise.shape[:2]
        targets = x.unsqueeze(1).expand(batch, samples, *x.shape[1:]).flatten(0, 1)
        sigma = model.likelihood_sigma(self.gaussian_sigma)
        log_px = log_likelihood(decoded.flatten(0, 1), targets, self.likelihood, sigma)
        log_ratio = model.family.log_prior_ratio(model, mu.unsqueeze(1), logvar.unsqueeze(1), noise)
        return iwae_terms(log_px.view(batch, samples), log_ratio, beta)
