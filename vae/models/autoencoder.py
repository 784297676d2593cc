"""The autoencoder family (``model_type`` "ae"): a deterministic code, the same layers as a VAE,
trained on its reconstruction alone; sampled from a Gaussian fitted to its training codes
(:mod:`vae.models.priors.fitted`). For comparison with the VAE: it has no prior, no KL and no
likelihood to score, and ``evaluate`` reports its reconstruction error."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vae.errors import ConfigError, shown
from vae.models.family import Family
from vae.models.priors import FITTED, PRIORS, STANDARD, LatentPrior

if TYPE_CHECKING:
    import torch

    from vae.loss_name import LossName
    from vae.model_spec import ModelSpec


class Autoencoder(Family):
    """x -> z = f(x) -> g(z)."""

    name = "ae"
    label = "autoencoder"
    stochastic = False
    has_likelihood = False
    best_after_warmup = False  # no KL to anneal: every epoch is eligible
    takes_prior_setting = False
    refits_codes = True
    sampling_note = (
        "this checkpoint is a plain autoencoder, which has no prior to sample from; these "
        "samples are decoded from a Gaussian fitted to its training codes"
    )

    def prior(self, spec: ModelSpec) -> LatentPrior:
        return FITTED

    def encoder_outputs(self, latent_dim: int) -> int:
        return latent_dim  # the code itself

    def check(self, spec: ModelSpec) -> None:
        if not isinstance(spec.prior, str) or spec.prior not in PRIORS:
            raise ConfigError(f"unknown prior {shown(spec.prior)}")
        if spec.prior != STANDARD.name:  # the setting's default: the family ignores it
            raise ConfigError(
                f"an autoencoder has no prior: a {spec.prior} prior needs model type vae"
            )

    def loss_name(self, likelihood: str) -> LossName:
        from vae.likelihoods import PERCEPTUAL_LOSSES
        from vae.loss_name import LossName

        if likelihood in PERCEPTUAL_LOSSES:
            return LossName(
                f"{likelihood.upper()} reconstruction loss", "reconstruction", "", False
            )
        return LossName("reconstruction loss", "reconstruction", "nats", False)

    def describe(self, spec: ModelSpec) -> dict[str, Any]:
        return {"prior": None}

    def split_encoding(self, encoded: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return encoded, None

    def posterior_sample(
        self,
        mu: torch.Tensor,
        logvar: torch.Tensor | None,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return mu

    def kl_term(
        self,
        model: torch.nn.Module,
        mu: torch.Tensor,
        logvar: torch.Tensor | None,
        noise: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """None: the loss is the reconstruction alone."""
        import torch

        per_dimension = torch.zeros_like(mu, dtype=torch.float32)
        return per_dimension.sum(1), per_dimension

    def after_epoch(self, model: torch.nn.Module, codes: torch.Tensor) -> None:
        """Refit the sampling Gaussian to the training codes, so every checkpoint can generate."""
        FITTED.fit(model, codes)


FAMILY = Autoencoder()
