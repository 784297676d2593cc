"""What every latent distribution of a family provides (see :mod:`vae.models.priors`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import torch

    from vae.model_spec import ModelSpec


@dataclass(frozen=True)
class PriorMoments:
    """Per-dimension mean and standard deviation of a latent distribution: the explorer's
    sliders' centre, reset value and range."""

    mean: np.ndarray  # [D] float64
    std: np.ndarray  # [D] float64


class LatentPrior:
    """A latent distribution: N(0, I) unless a subclass says otherwise.

    The NumPy methods take the checkpoint's tensors as arrays (``weights``: every tensor whose
    name starts with one of ``tensor_prefixes``; anything else is ignored), so that sampling
    needs no torch. The torch methods take the model the distribution is attached to."""

    name = "standard"
    # Whether each latent needs a uniform draw besides its normal noise (a mixture's component).
    needs_uniform = False
    # Whether the KL of a diagonal Gaussian posterior to it splits over latent dimensions in
    # closed form (what free bits clamp and traversals rank dimensions by).
    per_dimension_kl = True
    # The setting that sizes it (``prior_components``, ``pseudo_inputs``), a field of the same
    # name in a model's spec; None for a prior without one.
    size_setting: str | None = None
    # Names (prefixes) of the checkpoint tensors that define it.
    tensor_prefixes: tuple[str, ...] = ()

    # --- without torch ------------------------------------------------------------------------

    def tensor_shapes(self, spec: ModelSpec) -> dict[str, tuple[int, ...]]:
        """The checkpoint tensors it adds to the model ``spec`` describes (name -> shape)."""
        return {}

    def check(self, spec: ModelSpec) -> None:
        """Raise ConfigError unless ``spec``'s settings for it are valid."""

    def latents(
        self,
        weights: Mapping[str, np.ndarray],
        noise: np.ndarray,
        uniform: np.ndarray | None,
        temperature: float,
    ) -> np.ndarray:
        """Latents (float64) from standard-normal ``noise [n, D]`` (and ``uniform [n]`` when
        ``needs_uniform``), the spread scaled by ``temperature``."""
        import numpy as np

        return np.asarray(noise, dtype=np.float64) * temperature

    def moments(self, weights: Mapping[str, np.ndarray], latent_dim: int) -> PriorMoments:
        """Exact per-dimension moments of the distribution ``latents`` draws from."""
        import numpy as np

        return PriorMoments(np.zeros(latent_dim), np.ones(latent_dim))

    # --- with torch ---------------------------------------------------------------------------

    def attach(self, model: torch.nn.Module, spec: ModelSpec) -> None:
        """Add its parameters or buffers to ``model`` under the names ``tensor_shapes`` gives."""

    def log_density(self, model: torch.nn.Module, z: torch.Tensor) -> torch.Tensor:
        """log p(z) of latents ``[..., D]``."""
        from vae.objectives import standard_normal_log_density

        return standard_normal_log_density(z)

    def kl_term(
        self,
        model: torch.nn.Module,
        mu: torch.Tensor,
        logvar: torch.Tensor,
        noise: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(KL(q(z|x) || p(z)) per image, per dimension or None) for a diagonal Gaussian
        posterior: analytic for N(0, I)."""
        from vae.objectives import gaussian_kl

        per_dimension = gaussian_kl(mu.float(), logvar.float())
        return per_dimension.sum(1), per_dimension

    def title(self, model: Mapping[str, Any]) -> str:
        """What a person calls it, for model cards (``model``: a checkpoint's recorded model
        spec, a dict)."""
        return self.name

    def describe(self, spec: ModelSpec) -> dict[str, Any]:
        """Its settings, for reports (``evaluate``'s JSON)."""
        return {"prior": self.name}
