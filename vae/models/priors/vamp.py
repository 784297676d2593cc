"""The VampPrior (Tomczak & Welling 2018): p(z) = (1/K) sum_k q(z | u_k), the mixture of the
encoder's own posteriors at K learned pseudo-inputs u_k, images shaped like the data. Like the
mog prior it has no closed-form KL: the ELBO takes the one-sample estimate at the posterior
sample the decoder saw, and evaluation scores with its log density.

The pseudo-inputs are free parameters passed through a sigmoid (``prior.pseudo_input_logits``),
so they stay images in [0, 1], the range the encoder is trained on. They start as in the paper's
code: pixels near 0.05 with a spread of 0.01, K nearly alike images that the gradients pull
apart.

Its components are the encoder's output, and the encoder is torch: the torch-free paths
(``generate`` on the CPU, the explorer's NumPy decoder) cannot compute them, and computing them
at load would make those paths import torch. So the checkpoint also stores the components' means
and log-variances (``prior.means``, ``prior.logvars``), brought up to date from the pseudo-inputs
whenever the model's tensors are read (``state_dict``: a save, a sample); the NumPy side samples
them as it samples the mog prior's mixture, with equal weights. Loading a checkpoint into torch
recomputes them and refuses a file whose stored ones differ (the NumPy paths cannot check).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from vae.errors import ConfigError, shown
from vae.limits import MAX_PSEUDO_INPUTS, check_at_most
from vae.models.priors.mog import LOGVARS, MEANS, MixturePrior, component_moments

if TYPE_CHECKING:
    import numpy as np
    import torch

    from vae.model_spec import ModelSpec

PSEUDO_INPUT_LOGITS = "prior.pseudo_input_logits"

# The pseudo-inputs' first pixels: N(0.05, 0.01^2), the paper's code's default for MNIST.
INITIAL_PIXEL_MEAN, INITIAL_PIXEL_STD = 0.05, 0.01
# Stored moments and the ones recomputed at load may differ by another device's rounding
# (CUDA's TF32 convolutions round inputs to 10 bits); a difference beyond
# MOMENT_TOLERANCE * (1 + |value|) is no rounding.
MOMENT_TOLERANCE = 1e-2


class VampPrior(MixturePrior):
    """p(z) = (1/K) sum_k N(z; mu(u_k), diag(exp(logvar(u_k)))), u_k learned with the model."""

    name = "vamp"
    size_setting = "pseudo_inputs"
    # What sampling reads: the components' moments, not the (image-sized) pseudo-inputs.
    tensor_prefixes = (MEANS, LOGVARS)

    def tensor_shapes(self, spec: ModelSpec) -> dict[str, tuple[int, ...]]:
        count, latent = spec.pseudo_inputs, spec.latent_dim
        return {
            PSEUDO_INPUT_LOGITS: (count, spec.channels, spec.height, spec.width),
            MEANS: (count, latent),
            LOGVARS: (count, latent),
        }

    def check(self, spec: ModelSpec) -> None:
        count = spec.pseudo_inputs
        if not (isinstance(count, int) and not isinstance(count, bool) and count > 0):
            raise ConfigError(
                f"a vamp prior needs a positive number of pseudo-inputs, got {shown(count)}"
            )
        check_at_most("model pseudo_inputs", count, MAX_PSEUDO_INPUTS)

    def mixture(self, weights: Mapping[str, np.ndarray]) -> tuple[np.ndarray, ...]:
        """The stored moments of the K components, each of weight 1 / K."""
        import numpy as np

        means, logvars = component_moments(weights)
        return means, logvars, np.full(len(means), 1.0 / len(means))

    def attach(self, model: torch.nn.Module, spec: ModelSpec) -> None:
        model.prior = vamp_module()(spec)
        # Every reader of the model's tensors (a checkpoint, the samplers' arrays) sees moments
        # of the current pseudo-inputs and encoder; every loaded file is checked.
        model.register_state_dict_pre_hook(_refresh_before_reading)
        model.register_load_state_dict_post_hook(_check_after_loading)

    def log_density(
        self, model: torch.nn.Module, z: torch.Tensor, precision: torch.dtype | None = None
    ) -> torch.Tensor:
        """log p(z); where it is differentiated (training), the pseudo-inputs are encoded at
        ``precision`` (a half-precision dtype: under autocast in it, else float32)."""
        from vae.models.priors.mog import mixture_log_density

        means, logvars = model.prior.components(model, precision)
        return mixture_log_density(z, means, logvars, None)

    def kl_term(
        self,
        model: torch.nn.Module,
        mu: torch.Tensor,
        logvar: torch.Tensor,
        noise: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The mog prior's one-sample estimate, the pseudo-inputs encoded at the precision the
        batch was (bf16 under a bf16 run's autocast: the costly part of a step, on the CPU
        about half the time in bf16 that it takes in float32)."""
        from vae.objectives import kl_estimate

        log_prior = functools.partial(self.log_density, model, precision=mu.dtype)
        return kl_estimate(mu, logvar, noise, log_prior), None

    def title(self, model: Mapping[str, Any]) -> str:
        return f"VampPrior with {model.get('pseudo_inputs')} pseudo-inputs"

    def describe(self, spec: ModelSpec) -> dict[str, Any]:
        return {"prior": self.name, "pseudo_inputs": spec.pseudo_inputs}


def _refresh_before_reading(model: torch.nn.Module, prefix: str, keep_vars: bool) -> None:
    model.prior.refresh(model)


def _check_after_loading(model: torch.nn.Module, incompatible: Any) -> None:
    if not (incompatible.missing_keys or incompatible.unexpected_keys):  # else torch says so
        model.prior.check_stored(model)


@functools.cache
def vamp_module() -> type:
    """The torch module of a VampPrior's pseudo-inputs and stored moments. Defined on first use:
    this module's NumPy half serves ``generate`` and the explorer, which must not wait for
    ``import torch``."""
    import torch
    from torch import nn

    class VampParameters(nn.Module):
        """The pseudo-inputs' logits (learned) and the moments of the encoder's posteriors at
        them (``means``, ``logvars``): a copy for the readers of the model's tensors, stored
        beside the parameters but no buffer, so that neither DistributedDataParallel (which
        broadcasts buffers) nor a move to another device replaces it."""

        def __init__(self, spec: ModelSpec) -> None:
            super().__init__()
            shape = (spec.pseudo_inputs, spec.channels, spec.height, spec.width)
            pixels = torch.randn(shape) * INITIAL_PIXEL_STD + INITIAL_PIXEL_MEAN
            self.pseudo_input_logits = nn.Parameter(torch.logit(pixels.clamp(1e-3, 1 - 1e-3)))
            self.spec = spec
            empty = torch.zeros(spec.pseudo_inputs, spec.latent_dim)
            self.stored: dict[str, torch.Tensor] = {"means": empty, "logvars": empty.clone()}
            # The tensors (and their in-place versions) the stored moments were computed from
            # or loaded with, None once they may be stale (see ``refresh``).
            self._fresh_for: tuple[Any, ...] | None = None

        def pseudo_inputs(self) -> torch.Tensor:
            """The K pseudo-input images in [0, 1], ``[K, C, H, W]``."""
            return torch.sigmoid(self.pseudo_input_logits)

        def components(
            self, model: nn.Module, precision: torch.dtype | None = None
        ) -> tuple[torch.Tensor, torch.Tensor]:
            """(means, log-variances) ``[K, D]`` of the components: computed afresh where
            gradients are wanted (training; at ``precision`` when it is a half-precision dtype,
            else in float32), else the stored ones, refreshed when stale."""
            if torch.is_grad_enabled() and self.pseudo_input_logits.requires_grad:
                with _autocast(self.pseudo_input_logits.device, precision):
                    mu, logvar = model.encode(self.pseudo_inputs())
                return mu.float(), logvar.float()
            self.refresh(model)
            device = self.pseudo_input_logits.device
            return self.stored["means"].to(device), self.stored["logvars"].to(device)

        def refresh(self, model: nn.Module) -> None:
            """Recompute the stored moments unless they are known to be current.

            In training mode they are recomputed every time: an optimizer may change the
            weights in place without a trace (a fused Adam step leaves the tensors' version
            counters alone). In evaluation mode, the mode of a loaded model, the weights are
            taken as fixed from the first refresh or load on, as long as their version counters
            say so; putting the model in training mode forgets them."""
            if not self.training and self._fresh_for == _versions(model):
                return
            means, logvars = _posteriors(model, self.pseudo_inputs, self.spec)
            self.stored = {"means": means, "logvars": logvars}
            self._fresh_for = _versions(model)

        def check_stored(self, model: nn.Module) -> None:
            """Raise RuntimeError unless the stored moments are the encoder's posteriors at the
            pseudo-inputs, to rounding; they are then kept as they are, bit for bit."""
            fresh = _posteriors(model, self.pseudo_inputs, self.spec)
            _check_moments(fresh, (self.stored["means"], self.stored["logvars"]))
            self._fresh_for = _versions(model)

        def train(self, mode: bool = True) -> VampParameters:
            if mode:
                self._fresh_for = None
            return super().train(mode)

        def _save_to_state_dict(self, destination: Any, prefix: str, keep_vars: bool) -> None:
            super()._save_to_state_dict(destination, prefix, keep_vars)
            for name, tensor in self.stored.items():
                destination[prefix + name] = tensor

        def _load_from_state_dict(self, state_dict: Any, prefix: str, *args: Any) -> None:
            super()._load_from_state_dict(state_dict, prefix, *args)
            _, _, missing, unexpected, errors = args  # metadata, strict, and the three lists
            _load_stored(self.stored, state_dict, prefix, (missing, unexpected, errors))

    return VampParameters


def _autocast(device: torch.device, precision: torch.dtype | None) -> Any:
    """Autocast in ``precision`` when it is a half-precision dtype, else float32 throughout
    (also inside a bf16 autocast region)."""
    import torch

    if precision in (torch.bfloat16, torch.float16):
        return torch.autocast(device.type, dtype=precision)
    return torch.autocast(device.type, enabled=False)


def _posteriors(
    model: torch.nn.Module, pseudo_inputs: Any, spec: ModelSpec
) -> tuple[torch.Tensor, torch.Tensor]:
    """The posteriors' moments (float32, no gradients) at ``pseudo_inputs()``, a bounded number
    of images at a time (as pictures are decoded: ``vae.spec.decode_batch_size``)."""
    import torch

    from vae.spec import decode_batch_size

    step = decode_batch_size(spec)
    parts = []
    with torch.no_grad():
        images = pseudo_inputs()
        with _autocast(images.device, None):
            for start in range(0, len(images), step):
                parts.append(model.encode(images[start : start + step]))
    means, logvars = zip(*parts, strict=True)
    return torch.cat(means).float(), torch.cat(logvars).float()


def _check_moments(fresh: tuple[Any, Any], stored: tuple[Any, Any]) -> None:
    """Raise RuntimeError where a stored moment differs from the fresh one by more than
    MOMENT_TOLERANCE * (1 + |fresh|)."""
    largest, beyond = 0.0, False
    for computed, kept in zip(fresh, stored, strict=True):
        difference = (computed - kept.to(computed.device)).abs()
        largest = max(largest, float(difference.max()) if difference.numel() else 0.0)
        beyond |= bool((difference > MOMENT_TOLERANCE * (1 + computed.abs())).any())
    if beyond:
        raise RuntimeError(
            f"its VampPrior's stored moments {MEANS}, {LOGVARS} differ from its encoder's "
            f"posteriors at its pseudo-inputs by up to {largest:.3g}"
        )


def _load_stored(
    stored: dict[str, torch.Tensor],
    state_dict: Mapping[str, Any],
    prefix: str,
    lists: tuple[list[str], list[str], list[str]],
) -> None:
    """Replace each ``stored`` moment by a float32 copy of its entry in ``state_dict``, and
    account for it in torch's (missing keys, unexpected keys, error messages): missing when
    absent, an error worded as torch's own when misshapen."""
    import torch

    missing, unexpected, errors = lists
    for name, current in stored.items():
        key = prefix + name
        if key in unexpected:  # torch's own loader knows no such name
            unexpected.remove(key)
        if key not in state_dict:
            missing.append(key)
            continue
        value = state_dict[key]
        if tuple(value.shape) != tuple(current.shape):
            errors.append(
                f"size mismatch for {key}: copying a param with shape {tuple(value.shape)} from "
                f"checkpoint, the shape in current model is {tuple(current.shape)}."
            )
            continue
        stored[name] = value.detach().to(device=current.device, dtype=torch.float32, copy=True)


def _versions(model: torch.nn.Module) -> tuple[Any, ...]:
    """The tensors the moments depend on and their in-place version counters (a load or an
    in-place change bumps them; moving the model to a device does not)."""
    tensors = (*model.encoder.parameters(), model.prior.pseudo_input_logits)
    try:
        return tuple((id(tensor), tensor._version) for tensor in tensors)
    except RuntimeError:  # inference tensors keep no version: never taken as fresh
        return (object(),)


VAMP = VampPrior()
