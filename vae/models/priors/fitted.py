"""A Gaussian fitted to an autoencoder's training codes: what a plain autoencoder, which has no
prior, is sampled from. Refitted by training before each save, so every checkpoint can
generate; its tensors keep their names (``fitted_mean``, ``fitted_scale_tril``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from vae.models.priors.base import LatentPrior, PriorMoments

if TYPE_CHECKING:
    import numpy as np
    import torch

    from vae.model_spec import ModelSpec

MEAN, SCALE_TRIL = "fitted_mean", "fitted_scale_tril"


class FittedGaussian(LatentPrior):
    """N(mean, L L^T) with the mean and Cholesky factor of the training codes' covariance."""

    name = "fitted"
    tensor_prefixes = ("fitted_",)

    def tensor_shapes(self, spec: ModelSpec) -> dict[str, tuple[int, ...]]:
        return {MEAN: (spec.latent_dim,), SCALE_TRIL: (spec.latent_dim, spec.latent_dim)}

    def latents(
        self,
        weights: Mapping[str, np.ndarray],
        noise: np.ndarray,
        uniform: np.ndarray | None,
        temperature: float,
    ) -> np.ndarray:
        """``mean + scale_tril @ (noise * temperature)``."""
        import numpy as np

        noise = np.asarray(noise, dtype=np.float64) * temperature
        mean = weights[MEAN].astype(np.float64)
        return mean + noise @ weights[SCALE_TRIL].astype(np.float64).T

    def moments(self, weights: Mapping[str, np.ndarray], latent_dim: int) -> PriorMoments:
        """The fitted mean and the square root of the covariance's diagonal."""
        import numpy as np

        tril = weights[SCALE_TRIL].astype(np.float64)
        return PriorMoments(weights[MEAN].astype(np.float64), np.sqrt((tril**2).sum(axis=1)))

    def attach(self, model: torch.nn.Module, spec: ModelSpec) -> None:
        import torch

        model.register_buffer(MEAN, torch.zeros(spec.latent_dim))
        model.register_buffer(SCALE_TRIL, torch.eye(spec.latent_dim))

    def fit(self, model: torch.nn.Module, codes: torch.Tensor) -> None:
        """Fit it to codes ``[N, D]`` of the training images (mean, Cholesky factor of the
        covariance)."""
        import torch

        codes = codes.double()
        mean = codes.mean(0)
        centred = codes - mean
        covariance = centred.T @ centred / max(codes.shape[0] - 1, 1)
        # A small ridge keeps the factorisation defined when some code dimension is constant.
        ridge = 1e-6 * (covariance.diagonal().mean() + 1e-12)
        covariance = covariance + ridge * torch.eye(
            codes.shape[1], dtype=codes.dtype, device=codes.device
        )
        getattr(model, MEAN).copy_(mean.float())
        getattr(model, SCALE_TRIL).copy_(torch.linalg.cholesky(covariance).float())


FITTED = FittedGaussian()
