"""The VAE family (``model_type`` "vae"): a diagonal Gaussian posterior, a pluggable prior
(:mod:`vae.models.priors`: ``standard`` or ``mog``), trained on the ELBO."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vae.errors import ConfigError, shown
from vae.limits import LOGVAR_MAX, LOGVAR_MIN
from vae.models.family import Family
from vae.models.priors import PRIORS, LatentPrior

if TYPE_CHECKING:
    import torch

    from vae.loss_name import LossName
    from vae.model_spec import ModelSpec


class GaussianVAE(Family):
    """z ~ N(mu(x), diag(exp(logvar(x)))), p(z) the chosen prior."""

    name = "vae"
    label = "VAE"

    def prior(self, spec: ModelSpec) -> LatentPrior:
        return PRIORS[spec.prior]

    def encoder_outputs(self, latent_dim: int) -> int:
        return 2 * latent_dim  # means and log-variances

    def check(self, spec: ModelSpec) -> None:
        prior = PRIORS.get(spec.prior) if isinstance(spec.prior, str) else None
        if prior is None:
            raise ConfigError(f"unknown prior {shown(spec.prior)}")
        prior.check(spec)

    def loss_name(self, likelihood: str) -> LossName:
        from vae.likelihoods import PERCEPTUAL_LOSSES
        from vae.loss_name import ELBO, LossName

        if likelihood in PERCEPTUAL_LOSSES:
            # A perceptual loss is no likelihood: its sum with the KL is a loss, not an ELBO.
            name = likelihood.upper()
            return LossName(f"loss ({name} reconstruction + KL)", f"{name} loss", "")
        return ELBO

    def describe(self, spec: ModelSpec) -> dict[str, Any]:
        return {"prior": spec.prior}

    def split_encoding(self, encoded: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        mu, logvar = encoded.chunk(2, dim=1)
        return mu, logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)

    def posterior_sample(
        self,
        mu: torch.Tensor,
        logvar: torch.Tensor | None,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """z = mu + sigma * eps with eps ~ N(0, I): ``noise`` when given, else drawn from
        ``generator``."""
        import torch

        assert logvar is not None  # split_encoding always gives one
        if noise is None:
            noise = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + torch.exp(0.5 * logvar) * noise

    def kl_term(
        self,
        model: torch.nn.Module,
        mu: torch.Tensor,
        logvar: torch.Tensor | None,
        noise: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        assert logvar is not None
        return self.prior(model.spec).kl_term(model, mu, logvar, noise)

    def log_prior_ratio(
        self,
        model: torch.nn.Module,
        mu: torch.Tensor,
        logvar: torch.Tensor | None,
        noise: torch.Tensor,
    ) -> torch.Tensor:
        """At z = mu + sigma * noise, with the prior's own log density (any prior)."""
        from vae.objectives import kl_estimate

        assert logvar is not None
        return -kl_estimate(mu, logvar, noise, model.log_prior)


FAMILY = GaussianVAE()
