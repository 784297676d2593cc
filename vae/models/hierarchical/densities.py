"""The densities of a hierarchy's groups at a posterior sample, and the KL between two diagonal
Gaussians: what the ELBO (per-group KL), the IWAE bound and ``evaluate``'s importance weights
are made of. Torch; the statistics are the module's (:class:`HierarchicalModule.forward`)."""

from __future__ import annotations

import torch

from vae.objectives import LOG_2PI, diagonal_gaussian_log_density


def gaussian_kl_between(
    mu_q: torch.Tensor, logvar_q: torch.Tensor, mu_p: torch.Tensor, logvar_p: torch.Tensor
) -> torch.Tensor:
    """KL(N(mu_q, exp(logvar_q)) || N(mu_p, exp(logvar_p))) per dimension.

    0.5 (v - log v - 1 + (mu_q - mu_p)^2 / var_p) with v = var_q / var_p, written with expm1
    as ``vae.objectives.gaussian_kl`` is, so that it is exact (never below 0) near q = p."""
    difference = logvar_q - logvar_p
    squared = (mu_q - mu_p).pow(2) * torch.exp(-logvar_p)
    return 0.5 * (torch.expm1(difference) - difference + squared)


def log_densities(
    model: torch.nn.Module, posterior: torch.Tensor, prior: torch.Tensor, noise: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(log p(z), log q(z|x)) summed over the groups, at z = mu_q + sigma_q * ``noise`` (the
    sample the module drew with that noise), shaped like ``noise`` without its last dimension.

    ``posterior`` and ``prior`` hold (means, log-variances) of every group, concatenated; the
    top group's density is its prior's (a mixture's too), the others' their conditional
    Gaussian's."""
    q_mu, q_logvar = posterior.float().chunk(2, -1)
    p_mu, p_logvar = prior.float().chunk(2, -1)
    noise = noise.float()
    z = q_mu + torch.exp(0.5 * q_logvar) * noise
    log_q = (-0.5 * (noise.pow(2) + q_logvar + LOG_2PI)).sum(-1)
    top = model.layout.group_slice(0).stop
    log_p = model.latent_prior.top_log_density(model, z[..., :top])
    log_p = log_p + diagonal_gaussian_log_density(
        z[..., top:], p_mu[..., top:], p_logvar[..., top:]
    )
    return log_p, log_q
