"""The hierarchical VAE family (``model_type`` "hvae"): what it is, its settings and checks, and
the KL and log densities of its groups. No torch at import; the torch module is
:mod:`vae.models.hierarchical.module`, built through :meth:`HierarchicalVAE.build_module`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from vae.errors import ConfigError, Setting, shown
from vae.limits import MAX_CONV_WIDTH, MAX_LATENT_DIM, MAX_LATENT_GROUPS, check_at_most
from vae.models.gaussian import GaussianVAE
from vae.models.hierarchical.layout import activation_sizes, layout_of, network_shapes
from vae.models.hierarchical.prior import TopGroupPrior, top_group_prior

if TYPE_CHECKING:
    from collections.abc import Collection

    import numpy as np
    import torch

    from vae.config.run_config import RunConfig
    from vae.config.sections import ModelConfig
    from vae.model_spec import ModelSpec

# The priors its top group may have: those whose density needs only the latent (the vamp prior
# encodes its pseudo-inputs with a single-level encoder, which this model does not have).
TOP_PRIORS = ("standard", "mog")


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class HierarchicalVAE(GaussianVAE):
    """Groups z_1 (top) .. z_G of diagonal Gaussian latents: p(z_1) the prior setting's,
    p(z_i | z_<i) and q(z_i | z_<i, x) Gaussians computed in a top-down pass, q from it and
    from a bottom-up pass over x (Sønderby et al. 2016; Vahdat & Kautz 2020)."""

    name = "hvae"
    label = "hierarchical VAE"
    own_settings = ("latent_groups", "cell_channels")
    unused_settings = ("hidden_sizes", "decoder_hidden_sizes")

    # --- without torch ------------------------------------------------------------------------

    def prior(self, spec: ModelSpec) -> TopGroupPrior:
        groups = spec.latent_groups if _whole(spec.latent_groups) and spec.latent_groups > 0 else 1
        return top_group_prior(spec.prior if spec.prior in TOP_PRIORS else "standard", groups)

    def spec_fields(self, model: ModelConfig) -> dict[str, Any]:
        return {
            "latent_groups": model.latent_groups,
            "cell_channels": model.cell_channels,
            "hidden_sizes": [],
            "decoder_hidden_sizes": None,
        }

    def check(self, spec: ModelSpec) -> None:
        if spec.prior not in TOP_PRIORS:
            raise ConfigError(
                f"a hierarchical VAE's top group takes the {' or '.join(TOP_PRIORS)} prior, got "
                f"{shown(spec.prior)}"
            )
        if spec.architecture != "conv":
            raise ConfigError(
                f"a hierarchical VAE is convolutional: model architecture must be conv, got "
                f"{shown(spec.architecture)}"
            )
        groups, channels = spec.latent_groups, spec.cell_channels
        if not (_whole(groups) and groups >= 2):
            raise ConfigError(f"model latent_groups must be 2 or more, got {shown(groups)}")
        check_at_most("model latent_groups", groups, MAX_LATENT_GROUPS)
        if not (_whole(channels) and channels > 0):
            raise ConfigError(
                f"model cell_channels must be a positive integer, got {shown(channels)}"
            )
        check_at_most("model cell_channels", channels, MAX_CONV_WIDTH)
        if len(spec.decoder_widths) != len(spec.conv_widths):
            raise ConfigError(
                "a hierarchical VAE's decoder must have as many conv widths as its encoder (its "
                f"posteriors read both passes' maps at one size), got {len(spec.conv_widths)} "
                f"and {len(spec.decoder_widths)}"
            )
        if spec.latent_dim % groups:
            raise ConfigError(
                f"model latent_dim {spec.latent_dim} does not split into {groups} equal groups"
            )
        if spec.hidden_sizes or spec.decoder_hidden_sizes:
            raise ConfigError(
                "a hierarchical VAE has no dense layers: model hidden sizes must be empty"
            )
        self.prior(spec).check(spec)

    def check_config(self, config: RunConfig, given: Collection[str]) -> None:
        """The rules of a run's settings for this family, named as settings."""
        model = config.model
        if model.architecture != "conv":
            raise ConfigError(
                "a hierarchical VAE is convolutional (its residual cells are): use ",
                Setting("architecture"),
                " conv with ",
                Setting("model_type"),
                f" {self.name}",
            )
        widths = model.decoder_conv_widths
        if (
            widths is not None
            and model.conv_widths is not None
            and len(widths) != len(model.conv_widths)
        ):
            raise ConfigError(
                "a hierarchical VAE reads both passes' maps at one size: give ",
                Setting("decoder_conv_widths"),
                f" {len(model.conv_widths)} widths, as many as ",
                Setting("conv_widths"),
            )
        if model.latent_dim % model.latent_groups:
            raise ConfigError(
                Setting("latent_dim"),
                f" {model.latent_dim} does not split into ",
                Setting("latent_groups"),
                f" {model.latent_groups} equal groups: give a multiple of {model.latent_groups}",
            )
        for name in self.unused_settings:
            if name in given:
                raise ConfigError(
                    Setting(name),
                    " sizes dense layers, and a hierarchical VAE has none: leave ",
                    Setting(name),
                    " out (",
                    Setting("cell_channels"),
                    " sizes its residual cells)",
                )
        if model.prior not in TOP_PRIORS:
            raise ConfigError(
                f"the {model.prior} prior encodes its pseudo-inputs with a single-level encoder, "
                "which a hierarchical VAE does not have: give its top group ",
                Setting("prior"),
                f" {' or '.join(TOP_PRIORS)}",
            )

    def describe(self, spec: ModelSpec) -> dict[str, Any]:
        return {
            **self.prior(spec).describe(spec),
            "latent_groups": spec.latent_groups,
            "group_size": spec.latent_dim // spec.latent_groups,
        }

    def code_groups(self, latent_dim: int, latent_groups: int) -> list[int] | None:
        # The code is the groups' codes one after the other, the top group first; figures that
        # no checked spec has (no group, an uneven split) give none.
        if latent_groups < 1 or latent_dim % latent_groups:
            return None
        size = latent_dim // latent_groups
        return [d // size + 1 for d in range(latent_dim)]

    def describe_groups(
        self, model: Mapping[str, Any], validation: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """Each group's size, where it sits in the code, and its validation KL where recorded
        (for ``info``, from a checkpoint's metadata)."""
        groups, latent = model.get("latent_groups"), model.get("latent_dim")
        if not (_whole(groups) and _whole(latent)):
            return None
        if not (0 < groups <= MAX_LATENT_GROUPS and groups <= latent <= MAX_LATENT_DIM):
            return None
        membership = self.code_groups(latent, groups) or []
        described = {}
        for number in range(1, groups + 1):
            place = " (top)" if number == 1 else " (bottom)" if number == groups else ""
            held = [d for d, group in enumerate(membership) if group == number]
            entry: dict[str, Any] = {
                "latent_dim": len(held),
                "code_dimensions": f"z{held[0]} to z{held[-1]}",
            }
            kl = validation.get(f"kl_group{number}")
            if kl is not None:
                entry["validation_kl"] = kl
            described[f"group {number}{place}"] = entry
        return described

    def tensor_shapes(self, spec: ModelSpec) -> dict[str, tuple[int, ...]]:
        shapes = network_shapes(layout_of(spec))
        if spec.learned_sigma:
            shapes["log_sigma"] = (spec.channels,)
        shapes.update(self.prior(spec).tensor_shapes(spec))
        return shapes

    def activation_sizes(self, spec: ModelSpec) -> list[int]:
        return activation_sizes(layout_of(spec))

    def numpy_decoder(
        self, spec: ModelSpec
    ) -> Callable[[dict[str, np.ndarray], np.ndarray], np.ndarray]:
        from vae.models.hierarchical.numpy_decoder import TopDownDecoder

        return TopDownDecoder(layout_of(spec))

    # --- with torch ---------------------------------------------------------------------------

    def build_module(self, spec: ModelSpec) -> torch.nn.Module:
        from vae.models.hierarchical.module import HierarchicalModule

        return HierarchicalModule(spec)

    def kl_term(
        self,
        model: torch.nn.Module,
        mu: torch.Tensor,
        logvar: torch.Tensor | None,
        noise: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Sum over groups of KL(q(z_i | z_<i, x) || p(z_i | z_<i)) at the sampled z_<i: the
        top group's as its prior computes it, the others' analytic (two Gaussians). ``mu`` and
        ``logvar`` are the module's posterior and prior statistics (see
        :meth:`HierarchicalModule.forward`); per dimension where the top prior splits so."""
        import torch

        parts = self._group_kls(model, mu, logvar, noise)
        per_image = parts[0][0]
        for image, _ in parts[1:]:
            per_image = per_image + image
        per_dimension = [dimensions for _, dimensions in parts]
        if any(dimensions is None for dimensions in per_dimension):
            return per_image, None
        return per_image, torch.cat(per_dimension, -1)  # type: ignore[arg-type]

    def kl_parts(
        self,
        model: torch.nn.Module,
        mu: torch.Tensor,
        logvar: torch.Tensor | None,
        noise: torch.Tensor | None,
    ) -> dict[str, torch.Tensor]:
        """Each group's KL per image, as ``kl_group1`` (top) .. ``kl_groupG``."""
        parts = self._group_kls(model, mu, logvar, noise)
        return {f"kl_group{index + 1}": image for index, (image, _) in enumerate(parts)}

    def _group_kls(
        self,
        model: torch.nn.Module,
        posterior: torch.Tensor,
        prior: torch.Tensor | None,
        noise: torch.Tensor | None,
    ) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        from vae.models.hierarchical.densities import gaussian_kl_between

        assert prior is not None  # the module always gives the prior statistics
        q_mu, q_logvar = posterior.float().chunk(2, -1)
        p_mu, p_logvar = prior.float().chunk(2, -1)
        layout = model.layout
        top = layout.group_slice(0)
        parts = [
            model.latent_prior.top_kl_term(
                model,
                q_mu[..., top],
                q_logvar[..., top],
                None if noise is None else noise[..., top],
            )
        ]
        for index in range(1, layout.groups):
            where = layout.group_slice(index)
            dimensions = gaussian_kl_between(
                q_mu[..., where], q_logvar[..., where], p_mu[..., where], p_logvar[..., where]
            )
            parts.append((dimensions.sum(-1), dimensions))
        return parts

    def log_prior_ratio(
        self,
        model: torch.nn.Module,
        mu: torch.Tensor,
        logvar: torch.Tensor | None,
        noise: torch.Tensor,
    ) -> torch.Tensor:
        """log p(z) - log q(z|x) of the whole hierarchy at the posterior samples ``noise``
        places: the module's statistics of those samples, however the caller shaped them (one
        set per sample: [batch, K, ...] with ``noise`` [batch, K, latent_dim])."""
        from vae.models.hierarchical.densities import log_densities

        assert logvar is not None
        shape = (*noise.shape[:-1], -1)
        log_p, log_q = log_densities(model, mu.reshape(shape), logvar.reshape(shape), noise)
        return log_p - log_q


FAMILY = HierarchicalVAE()
