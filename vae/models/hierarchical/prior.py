"""The prior of a hierarchical VAE's code: the top group's prior (the ``prior`` setting's, on
the first ``latent_dim / latent_groups`` dimensions) times N(0, I) for the other groups' code,
which is standard-normal by construction (:mod:`vae.models.hierarchical`: group i > 1 is drawn as
z_i = mu_i + sigma_i * code_i from its conditional prior N(mu_i, sigma_i^2)).

So every reader of a prior (sampling with a temperature, the explorer's sliders, the checkpoint's
tensors) treats a hierarchy's code as it treats a single-level latent: a temperature scales the
top group's spread as it scales a single-level prior's, and every lower group's prior standard
deviation.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from vae.models.priors import PRIORS
from vae.models.priors.base import LatentPrior, PriorMoments

if TYPE_CHECKING:
    import numpy as np
    import torch

    from vae.model_spec import ModelSpec


class TopGroupPrior(LatentPrior):
    """``top`` on the first of ``groups`` equal groups of the code, N(0, I) on the others."""

    def __init__(self, top: LatentPrior, groups: int) -> None:
        self.top = top
        self.groups = groups
        self.name = top.name
        self.needs_uniform = top.needs_uniform
        self.per_dimension_kl = top.per_dimension_kl
        self.size_setting = top.size_setting
        self.tensor_prefixes = top.tensor_prefixes

    def top_spec(self, spec: ModelSpec) -> ModelSpec:
        """``spec`` as the top prior sees it: a latent of one group's size."""
        return dataclasses.replace(spec, latent_dim=spec.latent_dim // self.groups)

    def _split(self, dimensions: int) -> int:
        """The top group's size in a code of ``dimensions``."""
        return dimensions // self.groups

    # --- without torch ------------------------------------------------------------------------

    def tensor_shapes(self, spec: ModelSpec) -> dict[str, tuple[int, ...]]:
        return self.top.tensor_shapes(self.top_spec(spec))

    def check(self, spec: ModelSpec) -> None:
        self.top.check(self.top_spec(spec))

    def latents(
        self,
        weights: Mapping[str, np.ndarray],
        noise: np.ndarray,
        uniform: np.ndarray | None,
        temperature: float,
    ) -> np.ndarray:
        """The top group from the top prior's transform of its part of ``noise``; the rest is
        the lower groups' code, ``noise * temperature``."""
        import numpy as np

        noise = np.asarray(noise, dtype=np.float64)
        top = self._split(noise.shape[1])
        head = self.top.latents(weights, noise[:, :top], uniform, temperature)
        return np.concatenate([head, noise[:, top:] * temperature], axis=1)

    def moments(self, weights: Mapping[str, np.ndarray], latent_dim: int) -> PriorMoments:
        import numpy as np

        top = self._split(latent_dim)
        head = self.top.moments(weights, top)
        rest = latent_dim - top
        return PriorMoments(
            np.concatenate([head.mean, np.zeros(rest)]), np.concatenate([head.std, np.ones(rest)])
        )

    def title(self, model: Mapping[str, Any]) -> str:
        return f"{self.top.title(model)} on the top group"

    def describe(self, spec: ModelSpec) -> dict[str, Any]:
        return self.top.describe(spec)

    # --- with torch ---------------------------------------------------------------------------

    def attach(self, model: torch.nn.Module, spec: ModelSpec) -> None:
        self.top.attach(model, self.top_spec(spec))

    def log_density(self, model: torch.nn.Module, z: torch.Tensor) -> torch.Tensor:
        """log p(code): the top prior's density of the top group's part, plus N(0, I)'s of the
        rest (the density of the code, not of the z it decodes to)."""
        from vae.objectives import standard_normal_log_density

        top = self._split(z.shape[-1])
        head = self.top.log_density(model, z[..., :top])
        return head + standard_normal_log_density(z[..., top:])

    def top_log_density(self, model: torch.nn.Module, z: torch.Tensor) -> torch.Tensor:
        """log p(z_1) of the top group's latents ``[..., group_size]``."""
        return self.top.log_density(model, z)

    def top_kl_term(
        self,
        model: torch.nn.Module,
        mu: torch.Tensor,
        logvar: torch.Tensor,
        noise: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The top group's KL term, as the top prior computes it for a single-level VAE."""
        return self.top.kl_term(model, mu, logvar, noise)


@functools.cache
def top_group_prior(name: str, groups: int) -> TopGroupPrior:
    """The prior of a hierarchy of ``groups`` groups whose top group has the prior ``name``."""
    return TopGroupPrior(PRIORS[name], groups)
