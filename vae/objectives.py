"""Likelihoods, KL divergence, the ELBO, the IWAE bound, KL-weight (beta) schedules and free bits.

All figures are in nats per image: sums over pixels and latent dimensions, averaged over the
batch (the convention of Kingma & Welling and pytorch/examples).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vae.config import ObjectiveConfig, parse_warmup
from vae.errors import ConfigError, Setting
from vae.likelihoods import PERCEPTUAL_LOSSES

LOG_2PI = math.log(2.0 * math.pi)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag(exp(logvar))) || N(0, I)) per latent dimension, shape like ``mu``."""
    # expm1(v) - v instead of exp(v) - 1 - v: exact near v = 0, so the KL never rounds below 0.
    return 0.5 * (mu.pow(2) + torch.expm1(logvar) - logvar)


def bernoulli_log_likelihood(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log p(x | logits) per image, summed over pixels; ``x`` in [0, 1] (binary or grey)."""
    per_pixel = F.binary_cross_entropy_with_logits(logits.float(), x.float(), reduction="none")
    return -per_pixel.flatten(1).sum(1)


def gaussian_log_likelihood(
    mean: torch.Tensor, x: torch.Tensor, sigma: float | torch.Tensor
) -> torch.Tensor:
    """log N(x; mean, sigma^2 I) per image, summed over pixels, constant included; ``sigma`` a
    number or a tensor that broadcasts against the images (e.g. one per channel).

    Per pixel: -(x - mean)^2 / (2 sigma^2) - log(sigma) - log(2 pi) / 2.
    """
    squared = (x.float() - mean.float()).pow(2)
    log_sigma = torch.log(sigma.float()) if isinstance(sigma, torch.Tensor) else math.log(sigma)
    per_pixel = -0.5 * squared / sigma**2 - log_sigma - 0.5 * LOG_2PI
    return per_pixel.flatten(1).sum(1)


def log_likelihood(
    decoded: torch.Tensor,
    x: torch.Tensor,
    likelihood: str,
    gaussian_sigma: float | torch.Tensor = 0.1,
) -> torch.Tensor:
    """log p(x|z) per image for the decoder output of the given likelihood."""
    if likelihood == "bce":
        return bernoulli_log_likelihood(decoded, x)
    if likelihood == "mse":
        return gaussian_log_likelihood(decoded, x, gaussian_sigma)
    if likelihood in PERCEPTUAL_LOSSES:
        return -structural_dissimilarity(decoded, x, multiscale=likelihood == "ms-ssim")
    raise ConfigError(f"unknown likelihood '{likelihood}' (expected bce or mse)")


SSIM_WINDOW = 11  # the Gaussian window of Wang et al. 2004 (sigma 1.5)


def ssim_window(height: int, width: int, multiscale: bool) -> int:
    """The largest odd window up to 11 pixels that the smallest scale still holds."""
    side = min(height, width) // (16 if multiscale else 1)
    window = min(SSIM_WINDOW, side if side % 2 else side - 1)
    return max(window, 1)


def structural_dissimilarity(
    decoded: torch.Tensor, x: torch.Tensor, multiscale: bool = False
) -> torch.Tensor:
    """(1 - SSIM) per image (MS-SSIM with ``multiscale``), times the number of values per image,
    so that it weighs against the KL as a summed per-pixel loss does. Computed by pytorch-msssim
    (data range 1, Gaussian window); not a log-likelihood: such a model has no NLL."""
    from pytorch_msssim import ms_ssim, ssim

    decoded, x = decoded.float(), x.float()
    height, width = x.shape[-2:]
    window = ssim_window(height, width, multiscale)
    measure = ms_ssim if multiscale else ssim
    similarity = measure(decoded, x, data_range=1.0, size_average=False, win_size=window)
    return (1.0 - similarity) * x[0].numel()


@dataclass
class ElboTerms:
    """Batch-averaged terms of one evaluation of the objective, in nats per image."""

    loss: torch.Tensor  # what is minimised: recon + beta * KL (with free bits if any)
    neg_elbo: torch.Tensor  # recon + KL, the true negative ELBO (beta = 1, no free bits)
    recon: torch.Tensor  # -log p(x|z)
    kl: torch.Tensor  # KL(q(z|x) || p(z))
    per_image_neg_elbo: torch.Tensor  # shape [batch]
    neg_iwae: torch.Tensor | None = None  # -IWAE bound, for a run that trains it (iwae_terms)


def kl_estimate(
    mu: torch.Tensor,
    logvar: torch.Tensor,
    noise: torch.Tensor | None,
    log_prior: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """KL(q(z|x) || p(z)) per image for a prior without a closed-form KL (a mixture): the
    one-sample estimate log q(z|x) - log p(z) at z = mu + sigma * ``noise``, the sample the
    decoder saw: unbiased, and what Tomczak & Welling (2018) train with. Shapes broadcast over
    leading dimensions (several samples per image: ``mu`` [batch, 1, D], ``noise`` [batch, K,
    D] give [batch, K])."""
    if noise is None:
        raise ValueError("a learned prior's KL estimate needs the posterior noise")
    mu, logvar, noise = mu.float(), logvar.float(), noise.float()
    log_posterior = (-0.5 * (noise.pow(2) + logvar + LOG_2PI)).sum(-1)
    return log_posterior - log_prior(mu + torch.exp(0.5 * logvar) * noise)


def elbo_terms(
    decoded: torch.Tensor,
    x: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor | None,
    likelihood: str,
    beta: float = 1.0,
    free_bits: float = 0.0,
    gaussian_sigma: float | torch.Tensor = 0.1,
    log_prior: Callable[[torch.Tensor], torch.Tensor] | None = None,
    noise: torch.Tensor | None = None,
    kl: tuple[torch.Tensor, torch.Tensor | None] | None = None,
) -> ElboTerms:
    """Negative ELBO and its parts, summed per image and averaged over the batch.

    Free bits (Kingma et al. 2016) apply to the training loss only: each latent dimension's
    batch-averaged KL counts as at least ``free_bits`` nats. Reported KL is always the true one.
    An autoencoder (``logvar`` None) has no KL term: its loss is the reconstruction alone.

    ``kl``: (KL per image, per dimension or None) as the model's family computes it with its own
    prior (``VAE.kl_term``), which is how vae calls it. Without it: the KL to N(0, I), analytic,
    or for a given ``log_prior`` the one-sample estimate at ``noise`` (``kl_estimate``).
    """
    recon_per_image = -log_likelihood(decoded, x, likelihood, gaussian_sigma)
    if kl is not None:
        kl_per_image, kl_per_dim = kl
    elif logvar is None:
        kl_per_dim = torch.zeros_like(mu, dtype=torch.float32)
        kl_per_image = kl_per_dim.sum(1)
    elif log_prior is None:
        kl_per_dim = gaussian_kl(mu.float(), logvar.float())
        kl_per_image = kl_per_dim.sum(1)
    else:
        kl_per_image, kl_per_dim = kl_estimate(mu, logvar, noise, log_prior), None
    recon = recon_per_image.mean()
    kl = kl_per_image.mean()
    if free_bits > 0:
        if kl_per_dim is None:
            raise ConfigError(
                "free bits need the standard normal prior (", Setting("prior"), " standard)"
            )
        kl_for_loss = torch.clamp(kl_per_dim.mean(0), min=free_bits).sum()
    else:
        kl_for_loss = kl
    per_image = recon_per_image + kl_per_image
    return ElboTerms(
        loss=recon + beta * kl_for_loss,
        neg_elbo=per_image.mean(),
        recon=recon,
        kl=kl,
        per_image_neg_elbo=per_image,
    )


def iwae_terms(log_px: torch.Tensor, log_ratio: torch.Tensor, beta: float = 1.0) -> ElboTerms:
    """The K-sample importance-weighted bound (Burda et al. 2016) from K posterior samples z_k
    of each image: ``log_px`` = log p(x|z_k) and ``log_ratio`` = log p(z_k) - log q(z_k|x),
    both [batch, K]. Per image, log (1/K) sum_k p(x, z_k) / q(z_k|x) (a logsumexp); averaged
    over the batch. Its negative is ``neg_iwae``; at K = 1 it is the one-sample ELBO.

    ``loss`` (what is minimised) weighs each sample's ``log_ratio`` by ``beta`` inside the
    logsumexp, so a warm-up from 0 to 1 moves from log (1/K) sum_k p(x|z_k) to the bound; at
    beta = 1, the only value it is trained with after warm-up, it is the bound itself.
    ``neg_elbo``, ``recon`` and ``kl`` are the ELBO's terms averaged over the same K samples
    (the KL sampled, whatever the prior)."""
    log_px, log_ratio = log_px.float(), log_ratio.float()
    log_k = math.log(log_px.shape[1])
    neg_bound = -(torch.logsumexp(log_px + log_ratio, dim=1) - log_k)
    if beta == 1.0:
        loss = neg_bound.mean()
    else:
        loss = -(torch.logsumexp(log_px + beta * log_ratio, dim=1) - log_k).mean()
    recon, kl = -log_px.mean(1), -log_ratio.mean(1)
    per_image = recon + kl
    return ElboTerms(
        loss=loss,
        neg_elbo=per_image.mean(),
        recon=recon.mean(),
        kl=kl.mean(),
        per_image_neg_elbo=per_image,
        neg_iwae=neg_bound.mean(),
    )


class BetaSchedule:
    """KL weight as a function of the optimisation step.

    ``warmup_steps`` is the length of the annealing phase; after it beta stays at ``beta_max``.
    For ``cyclical`` (Fu et al. 2019) the warm-up is split into ``cycles`` equal cycles, each
    ramping linearly from 0 to ``beta_max`` over its first ``ramp_ratio`` and then holding.
    """

    SIGMOID_STEEPNESS = 12.0

    def __init__(
        self,
        schedule: str,
        beta_max: float,
        warmup_steps: int,
        cycles: int = 4,
        ramp_ratio: float = 0.5,
    ) -> None:
        self.schedule = schedule
        self.beta_max = beta_max
        self.warmup_steps = max(0, int(warmup_steps))
        self.cycles = cycles
        self.ramp_ratio = ramp_ratio

    @classmethod
    def from_config(cls, objective: ObjectiveConfig, steps_per_epoch: int) -> BetaSchedule:
        """Resolve ``--beta-warmup`` (epochs or steps) against the epoch length."""
        amount, unit = parse_warmup(objective.beta_warmup)
        steps = amount * steps_per_epoch if unit == "epochs" else amount
        if objective.beta_schedule == "constant":
            steps = 0
        return cls(
            objective.beta_schedule,
            objective.beta,
            int(round(steps)),
            objective.beta_cycles,
            objective.beta_ramp_ratio,
        )

    def warmup_done(self, step: int) -> bool:
        """True once annealing is over, which is when a checkpoint may become 'best'."""
        return step >= self.warmup_steps

    def __call__(self, step: int) -> float:
        if self.schedule == "constant" or self.warmup_done(step):
            return self.beta_max
        t = step / self.warmup_steps
        if self.schedule == "linear":
            fraction = t
        elif self.schedule == "cosine":
            fraction = 0.5 * (1.0 - math.cos(math.pi * t))
        elif self.schedule == "sigmoid":
            # Rescaled so that it is exactly 0 at the start and exactly 1 at the end.
            k = self.SIGMOID_STEEPNESS
            low, high = _sigmoid(-k / 2), _sigmoid(k / 2)
            fraction = (_sigmoid(k * (t - 0.5)) - low) / (high - low)
        elif self.schedule == "cyclical":
            position = (t * self.cycles) % 1.0
            fraction = min(1.0, position / self.ramp_ratio)
        else:
            raise ConfigError(f"unknown beta schedule '{self.schedule}'")
        return self.beta_max * fraction


def _sigmoid(value: float) -> float:
    return 1.0 / (1.0 + math.exp(-value))


def diagonal_gaussian_log_density(
    z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor
) -> torch.Tensor:
    """log N(z; mu, diag(exp(logvar))), summed over the last dimension."""
    return (-0.5 * ((z - mu).pow(2) * torch.exp(-logvar) + logvar + LOG_2PI)).sum(-1)


def standard_normal_log_density(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I), summed over the last dimension."""
    return (-0.5 * (z.pow(2) + LOG_2PI)).sum(-1)


def log_importance_weights(
    log_likelihood_values: torch.Tensor,
    z: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    log_prior: Callable[[torch.Tensor], torch.Tensor] = standard_normal_log_density,
) -> torch.Tensor:
    """log w = log p(x|z) + log p(z) - log q(z|x), elementwise over leading sample/batch dims."""
    return log_likelihood_values + log_prior(z) - diagonal_gaussian_log_density(z, mu, logvar)


def nats_to_bits_per_dim(nats: float | torch.Tensor, dimensions: int) -> float | torch.Tensor:
    """Nats per image -> bits per dimension (pixel and channel)."""
    return nats / (dimensions * math.log(2.0))
