"""A learned mixture of diagonal Gaussians (Tomczak & Welling 2018, the "MoG prior"), which
follows the aggregate posterior instead of forcing it to N(0, I). It has no closed-form KL: the
ELBO takes the one-sample estimate at the posterior sample the decoder saw."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from vae.errors import ConfigError, shown
from vae.limits import LOGVAR_MAX, LOGVAR_MIN, MAX_PRIOR_COMPONENTS, check_at_most
from vae.models.priors.base import LatentPrior, PriorMoments

if TYPE_CHECKING:
    import numpy as np
    import torch

    from vae.model_spec import ModelSpec

MEANS, LOGVARS, LOGITS = "prior.means", "prior.logvars", "prior.logits"


def _probabilities(weights: Mapping[str, np.ndarray]) -> np.ndarray:
    """The mixture weights, softmax of the stored logits (float64)."""
    import numpy as np

    logits = weights[LOGITS].astype(np.float64)
    probabilities = np.exp(logits - logits.max())
    return probabilities / probabilities.sum()


def component_moments(weights: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The components' means and log-variances (clamped as the torch side clamps them), float64,
    from the stored ``prior.means`` and ``prior.logvars``."""
    import numpy as np

    means = weights[MEANS].astype(np.float64)
    return means, np.clip(weights[LOGVARS].astype(np.float64), LOGVAR_MIN, LOGVAR_MAX)


class MixturePrior(LatentPrior):
    """p(z) = sum_k pi_k N(z; m_k, diag(exp(v_k))), learned with the model."""

    name = "mog"
    needs_uniform = True
    per_dimension_kl = False
    size_setting = "prior_components"
    tensor_prefixes = ("prior.",)

    def tensor_shapes(self, spec: ModelSpec) -> dict[str, tuple[int, ...]]:
        components, latent = spec.prior_components, spec.latent_dim
        return {MEANS: (components, latent), LOGVARS: (components, latent), LOGITS: (components,)}

    def check(self, spec: ModelSpec) -> None:
        components = spec.prior_components
        if not (
            isinstance(components, int) and not isinstance(components, bool) and components > 0
        ):
            raise ConfigError(
                f"a mog prior needs a positive number of components, got {shown(components)}"
            )
        check_at_most("model prior_components", components, MAX_PRIOR_COMPONENTS)

    def mixture(self, weights: Mapping[str, np.ndarray]) -> tuple[np.ndarray, ...]:
        """(means [K, D], log-variances [K, D], weights [K]) of the components, float64, from
        the checkpoint's tensors: what ``latents`` and ``moments`` draw on."""
        return (*component_moments(weights), _probabilities(weights))

    def latents(
        self,
        weights: Mapping[str, np.ndarray],
        noise: np.ndarray,
        uniform: np.ndarray | None,
        temperature: float,
    ) -> np.ndarray:
        """``uniform`` picks each latent's component through the cumulative mixture weights;
        the noise places it within that component, whose spread the temperature scales."""
        import numpy as np

        if uniform is None:
            raise ValueError("a mixture prior needs a uniform draw per latent")
        noise = np.asarray(noise, dtype=np.float64) * temperature
        means, logvars, probabilities = self.mixture(weights)
        cumulative = np.cumsum(probabilities)
        index = np.searchsorted(cumulative, np.asarray(uniform, dtype=np.float64), side="right")
        # Rounding can leave the last cumulative weight just below 1.
        index = np.minimum(index, len(cumulative) - 1)
        return means[index] + np.exp(0.5 * logvars[index]) * noise

    def moments(self, weights: Mapping[str, np.ndarray], latent_dim: int) -> PriorMoments:
        """By the law of total variance."""
        import numpy as np

        means, logvars, probabilities = self.mixture(weights)
        variances = np.exp(logvars)
        mean = probabilities @ means
        variance = probabilities @ (variances + means**2) - mean**2
        return PriorMoments(mean, np.sqrt(np.maximum(variance, 0.0)))

    def attach(self, model: torch.nn.Module, spec: ModelSpec) -> None:
        model.prior = mixture_module()(spec.prior_components, spec.latent_dim)

    def log_density(self, model: torch.nn.Module, z: torch.Tensor) -> torch.Tensor:
        return model.prior.log_density(z)

    def kl_term(
        self,
        model: torch.nn.Module,
        mu: torch.Tensor,
        logvar: torch.Tensor,
        noise: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """No closed form: the one-sample estimate at the posterior sample the decoder saw
        (``vae.objectives.kl_estimate``); it does not split over dimensions."""
        from vae.objectives import kl_estimate

        return kl_estimate(mu, logvar, noise, functools.partial(self.log_density, model)), None

    def title(self, model: Mapping[str, Any]) -> str:
        return f"mixture of {model.get('prior_components')} Gaussians"

    def describe(self, spec: ModelSpec) -> dict[str, Any]:
        return {"prior": self.name, "prior_components": spec.prior_components}


@functools.cache
def mixture_module() -> type:
    """The torch module of a mixture's parameters. Defined on first use: this module's NumPy
    half serves ``generate`` and the explorer, which must not wait for ``import torch``."""
    import torch
    from torch import nn

    class MixtureParameters(nn.Module):
        """Means, log-variances and logits of the components (``prior.*`` in checkpoints)."""

        def __init__(self, components: int, latent_dim: int) -> None:
            super().__init__()
            # Means where standard-normal samples fall, so training starts near the usual prior.
            self.means = nn.Parameter(torch.randn(components, latent_dim))
            self.logvars = nn.Parameter(torch.zeros(components, latent_dim))
            self.logits = nn.Parameter(torch.zeros(components))

        def log_density(self, z: torch.Tensor) -> torch.Tensor:
            """log p(z) for latents ``[..., latent_dim]``, shape ``[...]``."""
            return mixture_log_density(z, self.means, self.logvars, self.logits)

    return MixtureParameters


def mixture_log_density(
    z: torch.Tensor,
    means: torch.Tensor,
    logvars: torch.Tensor,
    logits: torch.Tensor | None,
) -> torch.Tensor:
    """log sum_k pi_k N(z; m_k, diag(exp(v_k))) for latents ``z [..., D]``, shape ``[...]``:
    components ``means``, ``logvars`` ``[K, D]`` (log-variances clamped to the safe range),
    weights softmax(``logits [K]``), equal weights for None."""
    import torch

    from vae.objectives import LOG_2PI

    # Float64 (where the device has it): the expanded squares below cancel, and NLL figures are
    # quoted to 0.01 nats.
    dtype = torch.float32 if z.device.type == "mps" else torch.float64
    means = means.to(dtype)
    logvars = logvars.to(dtype).clamp(LOGVAR_MIN, LOGVAR_MAX)
    latent_dim = z.shape[-1]
    precision = torch.exp(-logvars)
    if logits is None:
        log_weights = torch.full((len(means),), -math.log(len(means)), dtype=dtype, device=z.device)
    else:
        log_weights = torch.log_softmax(logits.to(dtype), 0)
    # log pi_k + log N(z; m_k, s_k) = [z^2, z] . [-p_k / 2, m_k p_k] + c_k: the squares expanded
    # into one matmul, so no [batch, K, D] tensor is formed and the [batch, K] result is written
    # once, which costs less than three matmuls and their sums.
    weight = torch.cat([-0.5 * precision, means * precision], 1)
    constant = log_weights - 0.5 * (
        (means * means * precision).sum(1) + logvars.sum(1) + latent_dim * LOG_2PI
    )
    flat = z.reshape(-1, latent_dim).to(dtype)
    per_component = torch.addmm(constant, torch.cat([flat * flat, flat], 1), weight.T)
    density = torch.logsumexp(per_component, dim=-1)
    return density.reshape(z.shape[:-1]).to(z.dtype)


MOG = MixturePrior()
