"""The hierarchical VAE's torch module: a bottom-up pass of residual cells over the image, then a
top-down pass that draws each group from its prior or its posterior and grows the state the
transposed convolutions turn into an image.

Group i's prior p(z_i | z_<i) is read off the top-down state (the top group's is the prior
setting's); its posterior q(z_i | z_<i, x) from that state and the bottom-up features of its
level, as a shift of the prior's mean and log-variance (NVAE's residual parameterisation: q
starts at p, so a group that is not needed costs no KL). Every residual cell starts as the
identity (its last convolution zero), so a deep hierarchy starts as a shallow one.

Its code (what sampling draws, ``decode`` takes and ``encode`` gives) is the whole hierarchy in
standard-normal coordinates: the top group's latent, then for each lower group i the c_i with
z_i = mu_i + sigma_i * c_i under its conditional prior. ``encode`` walks the posterior means
(z_i = the posterior mean of group i given the means above) and gives each lower group's
posterior in those coordinates, N((mu_q - mu_p) / sigma_p, sigma_q^2 / sigma_p^2), whose KL to
N(0, I) is the group's conditional KL: so the pictures and the explorer, which rank dimensions
by KL, see every group, and ``decode(encode(x).mean)`` is the reconstruction from the posterior
means.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vae.model import VAE
from vae.models import family_of
from vae.models.hierarchical.densities import log_densities
from vae.models.hierarchical.layout import (
    CELL_KERNEL,
    HEAD_CHANNELS,
    LOGVAR_BOUND,
    MEAN_BOUND,
    Layout,
    layout_of,
)
from vae.network import Network
from vae.spec import ModelSpec, check_spec


def soft_bound(x: torch.Tensor, bound: float) -> torch.Tensor:
    """``bound * tanh(x / bound)``: x where it is small, never beyond +-bound (NVAE's soft
    clamp): a group's statistics cannot run away while the KL's weight is still near 0."""
    return bound * torch.tanh(x / bound)


@dataclass
class Gaussian:
    """A group's diagonal Gaussian: means and log-variances [N, group_size], float32."""

    mu: torch.Tensor
    logvar: torch.Tensor


def _gaussian(parameters: torch.Tensor, base: Gaussian | None = None) -> Gaussian:
    """The Gaussian a head's output [N, 2 * group_size] gives, as a shift of ``base``, its
    mean and log standard deviation softly bounded (``soft_bound``)."""
    mu, logvar = parameters.float().chunk(2, 1)
    if base is not None:
        mu, logvar = base.mu + mu, base.logvar + logvar
    return Gaussian(soft_bound(mu, MEAN_BOUND), soft_bound(logvar, LOGVAR_BOUND))


class ResidualCell(nn.Module):
    """x + conv_b(silu(conv_a(silu(x)))): ``channels`` -> ``hidden`` -> ``channels``, 3x3."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        padding = CELL_KERNEL // 2
        self.conv_a = nn.Conv2d(channels, hidden, CELL_KERNEL, padding=padding)
        self.conv_b = nn.Conv2d(hidden, channels, CELL_KERNEL, padding=padding)
        # The identity at first: a stack of cells trains from a shallow network's start.
        nn.init.zeros_(self.conv_b.weight)
        nn.init.zeros_(self.conv_b.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Channels-last: oneDNN's bf16 3x3 convolutions on small maps run about 1.4x faster so
        # (the cells are most of a step's time); a no-op when x already is.
        x = x.contiguous(memory_format=torch.channels_last)
        return x + self.conv_b(F.silu(self.conv_a(F.silu(x))))


class Head(nn.Module):
    """Maps -> a group's Gaussian parameters [N, 2 * group_size]: linear(flatten(silu(
    squeeze(silu(maps))))), ``squeeze`` a 1x1 convolution to HEAD_CHANNELS."""

    def __init__(self, channels: int, layout: Layout) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(channels, HEAD_CHANNELS, 1)
        self.linear = nn.Linear(layout.head_inputs, 2 * layout.group_size)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        return self.linear(F.silu(self.squeeze(F.silu(maps))).flatten(1))


class BottomUpGroup(nn.Module):
    """A group's part of the bottom-up pass: its residual cell and its posterior head."""

    def __init__(self, layout: Layout) -> None:
        super().__init__()
        self.cell = ResidualCell(layout.features, layout.cell_channels)
        self.posterior = Head(layout.features + layout.state[0], layout)

    def posterior_of(
        self, state: torch.Tensor, features: torch.Tensor | FeaturePart, prior: Gaussian | None
    ) -> Gaussian:
        """q(z_i | z_<i, x) from the top-down ``state`` and this level's bottom-up
        ``features`` (or their ``feature_part``): a shift of the ``prior`` (the top group's is
        absolute)."""
        if isinstance(features, FeaturePart):
            squeeze = self.posterior.squeeze
            own = squeeze.weight[:, features.channels :]
            squeezed = features.values + F.conv2d(F.silu(state).to(own.dtype), own)
            parameters = self.posterior.linear(F.silu(squeezed).flatten(1))
            return _gaussian(parameters, prior)
        return _gaussian(self.posterior(torch.cat([features, state.to(features.dtype)], 1)), prior)

    def feature_part(self, features: torch.Tensor, copies: int) -> FeaturePart:
        """The features' share of the posterior head's first (1x1, linear) layer, computed once
        for ``copies`` samples of each image: importance sampling runs the top-down pass
        hundreds of times per image, and this share is the same in every one."""
        squeeze = self.posterior.squeeze
        channels = features.shape[1]
        values = F.conv2d(F.silu(features), squeeze.weight[:, :channels], squeeze.bias)
        return FeaturePart(values.repeat(copies, 1, 1, 1), channels)


@dataclass
class FeaturePart:
    """A level's features after the posterior head's 1x1 layer (their channels' share of it,
    with its bias), repeated for each sample: ``channels`` is how many input channels they were."""

    values: torch.Tensor
    channels: int


class TopDownGroup(nn.Module):
    """A group's part of the top-down pass: its prior head (none for the top group), the
    projection of its latent into the state, and its residual cell."""

    def __init__(self, layout: Layout, top: bool) -> None:
        super().__init__()
        self.state_shape = layout.state
        self.prior: Head | None = None
        if not top:
            self.prior = Head(layout.state[0], layout)
        self.latent = nn.Linear(layout.group_size, layout.state_values)
        self.cell = ResidualCell(layout.state[0], layout.cell_channels)

    def prior_of(self, state: torch.Tensor) -> Gaussian | None:
        """p(z_i | z_<i) from the state (None for the top group: the model's prior)."""
        if self.prior is None:
            return None
        return _gaussian(self.prior(state))

    def forward(self, state: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The state after this group's latent ``z`` joined it."""
        return self.cell(state + self.latent(z).view(-1, *self.state_shape))


# What the top-down pass asks for each group: its latent, from the group's index, prior (None
# for the top group) and posterior (None when generating).
Pick = Callable[[int, Gaussian | None, Gaussian | None], torch.Tensor]


class HierarchicalModule(VAE):
    """The torch module of a hierarchical VAE (``model_type`` "hvae"): a :class:`VAE` whose
    latent is a hierarchy of ``latent_groups`` groups; every method the rest of vae calls means
    what it means for a single-level VAE, on the code described in this module's docstring."""

    def __init__(self, spec: ModelSpec) -> None:
        nn.Module.__init__(self)
        check_spec(spec)
        self.spec = spec
        self.family = family_of(spec)
        self.latent_prior = self.family.prior(spec)
        self.layout = layout = layout_of(spec)
        self.encoder = nn.Module()
        self.encoder.stem = Network(layout.stem)
        self.encoder.groups = nn.ModuleList(BottomUpGroup(layout) for _ in range(layout.groups))
        self.decoder = nn.Module()
        self.decoder.start = nn.Parameter(torch.zeros(layout.state))
        self.decoder.groups = nn.ModuleList(
            TopDownGroup(layout, index == 0) for index in range(layout.groups)
        )
        self.decoder.tail = Network(layout.tail)
        if spec.learned_sigma:
            self.log_sigma = nn.Parameter(torch.full((spec.channels,), math.log(0.1)))
        self.prior: nn.Module | None = None  # a mixture prior's parameters, on the top group
        self.latent_prior.attach(self, spec)

    # --- the two passes -----------------------------------------------------------------------

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The bottom-up feature maps, by group (index 0: the top group's, computed last)."""
        h = self.encoder.stem(x)
        features: list[torch.Tensor] = []
        for group in reversed(self.encoder.groups):
            h = group.cell(h)
            features.append(h)
        return features[::-1]

    def _top_down(
        self, batch: int, features: list[torch.Tensor] | list[FeaturePart] | None, pick: Pick
    ) -> torch.Tensor:
        """The top-down state after every group, each group's latent chosen by ``pick``
        (posteriors are computed only given the bottom-up ``features``)."""
        state = self.decoder.start.expand(batch, *self.layout.state)
        for index, group in enumerate(self.decoder.groups):
            prior = group.prior_of(state)
            posterior = None
            if features is not None:
                posterior = self.encoder.groups[index].posterior_of(state, features[index], prior)
            state = group(state, pick(index, prior, posterior))
        return state

    def _output(self, state: torch.Tensor, fast: bool) -> torch.Tensor:
        """Logits (bce) or means in [0, 1] from the final state; ``fast``: the tail's
        evaluation arrangement (``Network.forward_for_evaluation``)."""
        x = F.silu(state)
        out = self.decoder.tail.forward_for_evaluation(x) if fast else self.decoder.tail(x)
        return out if self.spec.likelihood == "bce" else torch.sigmoid(out)

    def _posterior_pass(
        self, features: list[torch.Tensor] | list[FeaturePart], noise: torch.Tensor, fast: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(decoded, posterior statistics, prior statistics) for z_i = mu_q + sigma_q * noise_i
        in every group; the statistics [N, 2 * latent_dim] are every group's means, then every
        group's log-variances (the top group's prior: zeros, N(0, I)'s, which the family does
        not read: it asks the prior setting's density)."""
        posteriors: list[Gaussian] = []
        priors: list[Gaussian] = []

        def pick(index: int, prior: Gaussian | None, posterior: Gaussian | None) -> torch.Tensor:
            assert posterior is not None
            posteriors.append(posterior)
            priors.append(
                prior or Gaussian(torch.zeros_like(posterior.mu), torch.zeros_like(posterior.mu))
            )
            eps = noise[:, self.layout.group_slice(index)].float()
            return posterior.mu + torch.exp(0.5 * posterior.logvar) * eps

        decoded = self._output(self._top_down(noise.shape[0], features, pick), fast)
        return decoded, _packed(posteriors), _packed(priors)

    # --- what the rest of vae calls -----------------------------------------------------------

    def encode(
        self, x: torch.Tensor, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The posterior of each image's code (module docstring): means and log-variances
        [N, latent_dim], each lower group's in its prior's standard-normal coordinates, given
        the posterior means of the groups above."""
        return self._code(self._features(x))

    def _code(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        means: list[torch.Tensor] = []
        logvars: list[torch.Tensor] = []

        def pick(index: int, prior: Gaussian | None, posterior: Gaussian | None) -> torch.Tensor:
            assert posterior is not None
            if prior is None:
                means.append(posterior.mu)
                logvars.append(posterior.logvar)
            else:
                means.append((posterior.mu - prior.mu) * torch.exp(-0.5 * prior.logvar))
                logvars.append(posterior.logvar - prior.logvar)
            return posterior.mu

        self._top_down(features[0].shape[0], features, pick)
        return torch.cat(means, 1), torch.cat(logvars, 1)

    def _decode(self, code: torch.Tensor, fast: bool) -> torch.Tensor:
        def pick(index: int, prior: Gaussian | None, posterior: Gaussian | None) -> torch.Tensor:
            part = code[:, self.layout.group_slice(index)].float()
            return part if prior is None else prior.mu + torch.exp(0.5 * prior.logvar) * part

        return self._output(self._top_down(code.shape[0], None, pick), fast)

    def decode(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (bce) or means in [0, 1] (mse, ssim, ms-ssim) of codes ``z`` [N,
        latent_dim]: the top-down pass with each group drawn at its code."""
        return self._decode(z, fast=False)

    def decode_fast(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """``decode`` with the tail's evaluation arrangement (the same values to rounding)."""
        return self._decode(z, fast=True)

    def forward(
        self,
        x: torch.Tensor,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(decoded, posterior statistics, prior statistics) for one posterior sample of every
        group per image (``noise`` [batch, latent_dim]: group i's standard-normal noise at its
        slice; drawn from ``generator`` when None). The statistics are what the family's KL
        term reads (:meth:`_posterior_pass`). ``noise`` [batch, K, latent_dim]: K samples of
        each image (the IWAE bound), everything then [batch, K, ...]; the bottom-up pass runs
        once per image."""
        batch = x.shape[0]
        if noise is None:
            noise = torch.randn((batch, self.latent_dim), generator=generator, device=x.device)
        features = self._features(x)
        if noise.dim() == 2:
            return self._posterior_pass(features, noise, fast=False)
        samples = noise.shape[1]
        features = [f.repeat_interleave(samples, 0) for f in features]
        decoded, posterior, prior = self._posterior_pass(features, noise.flatten(0, 1), False)
        return (
            decoded.view(batch, samples, *decoded.shape[1:]),
            posterior.view(batch, samples, -1),
            prior.view(batch, samples, -1),
        )

    def evaluation_pass(
        self, x: torch.Tensor, noise: torch.Tensor | None, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``forward``'s values for ``noise`` [batch, latent_dim] (None: every group at its
        posterior mean), decoded by the tail's evaluation arrangement."""
        if noise is None:
            noise = torch.zeros((x.shape[0], self.latent_dim), device=x.device)
        return self._posterior_pass(self._features(x), noise, fast=True)

    def importance_posterior(
        self, x: torch.Tensor, labels: torch.Tensor | None = None
    ) -> HierarchicalPosterior:
        """The whole top-down posterior of images ``x`` as importance-weighted evaluation
        draws from it (:class:`HierarchicalPosterior`)."""
        return HierarchicalPosterior(self, x)


def _packed(gaussians: list[Gaussian]) -> torch.Tensor:
    """Every group's means, then every group's log-variances, [N, 2 * latent_dim]."""
    return torch.cat([*(g.mu for g in gaussians), *(g.logvar for g in gaussians)], 1)


class HierarchicalPosterior:
    """q(z_1..z_G | x) of a batch for importance sampling: the bottom-up pass runs once; each
    sample is a top-down pass. Its KL has no closed form (as a mixture prior's): ``evaluate``
    averages log q - log p over its samples."""

    closed_form_kl = None

    def __init__(self, model: HierarchicalModule, x: torch.Tensor) -> None:
        self.model = model
        self.features = model._features(x)
        # The code's posterior means, as ``encode`` gives them (active units are counted on them).
        self.means = model._code(self.features)[0]
        self._parts: tuple[int, list[FeaturePart]] | None = None

    def _feature_parts(self, count: int) -> list[FeaturePart]:
        """Each level's ``feature_part`` for ``count`` samples of the batch (kept for the next
        chunk of the same size)."""
        if self._parts is None or self._parts[0] != count:
            groups = self.model.encoder.groups
            parts = [
                group.feature_part(f, count) for group, f in zip(groups, self.features, strict=True)
            ]
            self._parts = (count, parts)
        return self._parts[1]

    def samples(self, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """For noise ``eps`` [count, batch, latent_dim]: the decoded samples [count * batch,
        ...] (sample-major), log p(z) and log q(z|x) [count, batch]."""
        count, batch, latent = eps.shape
        noise = eps.reshape(count * batch, latent)
        parts = self._feature_parts(count)
        decoded, posterior, prior = self.model._posterior_pass(parts, noise, fast=True)
        log_p, log_q = log_densities(self.model, posterior, prior, noise)
        return decoded, log_p.view(count, batch), log_q.view(count, batch)
