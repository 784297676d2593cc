"""The interface every model family implements (see :mod:`vae.models`).

A family is what a checkpoint's ``model_type`` names: how its encoder's output is read, which
latent distribution it samples from, what loss it trains and what it can be asked for. The rest
of vae (training, evaluation, pictures, the explorer, the commands) asks the family, never the
model type. Importing a family imports no torch; its torch-facing methods import it when called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vae.models.priors import LatentPrior

if TYPE_CHECKING:
    import torch

    from vae.loss_name import LossName
    from vae.model_spec import ModelSpec


class Family:
    """One model family; subclasses set the facts and override what differs."""

    name = ""  # the checkpoint's model_type
    label = ""  # what a person calls it: "VAE", "autoencoder"
    # The posterior is a distribution (training draws reparameterisation noise), not a point.
    stochastic = True
    # Whether the model has a likelihood to score (importance-weighted NLL, bits/dim), given one.
    has_likelihood = True
    # Whether the checkpoint may be "best" only once the beta warm-up is over (a KL to anneal).
    best_after_warmup = True
    # Whether the ``prior`` setting chooses its prior (a family without one ignores it).
    takes_prior_setting = True
    # Whether its encoder and decoder take a class label (``ModelSpec.classes``) beside their
    # inputs: every encode, decode and sample of it then needs one.
    conditional = False
    # Added to the names of the figures its likelihood gives in ``evaluate``'s results (a
    # conditional model's NLL is of x given its label: ``nll_given_label``).
    figure_suffix = ""
    # Said where the commands draw samples, when sampling it needs explaining.
    sampling_note: str | None = None

    # --- without torch ------------------------------------------------------------------------

    def prior(self, spec: ModelSpec) -> LatentPrior:
        """The latent distribution samples are drawn from."""
        raise NotImplementedError

    def encoder_outputs(self, latent_dim: int) -> int:
        """Values the encoder's last layer gives per image."""
        raise NotImplementedError

    def check(self, spec: ModelSpec) -> None:
        """Raise ConfigError unless ``spec``'s family settings go together."""

    def loss_name(self, likelihood: str) -> LossName:
        """What the training loss is called, in what unit (see :mod:`vae.loss_name`)."""
        raise NotImplementedError

    def scores_likelihood(self, likelihood: str) -> bool:
        """Whether ``evaluate`` gives an NLL: the family has a likelihood and the reconstruction
        loss is one (a perceptual loss is not)."""
        from vae.likelihoods import PERCEPTUAL_LOSSES

        return self.has_likelihood and likelihood not in PERCEPTUAL_LOSSES

    def describe(self, spec: ModelSpec) -> dict[str, Any]:
        """Its settings for reports: the prior's name (None for a family without a prior)."""
        return {"prior": spec.prior}

    # --- a family's own network (the defaults: the layer plan's encoder and decoder) ----------

    # Settings only it reads (a hierarchy's ``latent_groups``): its specs record them (others
    # record 0), and asking for one with another family is refused.
    own_settings: tuple[str, ...] = ()
    # Settings it has no use for (a hierarchy's dense layers): asking for one is refused.
    unused_settings: tuple[str, ...] = ()

    def spec_fields(self, model: Any) -> dict[str, Any]:
        """The fields its spec takes from the run's model settings (a ``ModelConfig``) beyond
        every family's: its ``own_settings``, and its ``unused_settings`` left empty."""
        return {}

    def check_config(self, config: Any, given: Any) -> None:
        """Raise ConfigError unless a run's settings (a ``RunConfig``; ``given``: those set
        explicitly) suit it, naming the settings at fault."""

    def tensor_shapes(self, spec: ModelSpec) -> dict[str, tuple[int, ...]]:
        """Every tensor its model holds, by name and shape (``model.state_dict()``'s)."""
        from vae.plan import layer_plan

        return layer_plan(spec).tensor_shapes()

    def activation_sizes(self, spec: ModelSpec) -> list[int]:
        """Values per image in layer outputs that the layer plan's sizes do not count."""
        return []

    def numpy_decoder(self, spec: ModelSpec) -> Any:
        """Its generative path in NumPy, a function (weights, latents) -> the decoder's
        pre-sigmoid output; None: the layer plan's decoder (``vae.numpy_sampling``)."""
        return None

    def code_groups(self, latent_dim: int, latent_groups: int) -> list[int] | None:
        """The group (1, the top, upwards) of each code dimension, z0 first, as every label
        names it (traverse rows, ``info``, the explorer's sliders); None for a latent of one
        group."""
        return None

    def describe_groups(self, model: Any, validation: Any) -> dict[str, Any] | None:
        """Its latent's groups for ``info``, from a checkpoint's recorded model spec and
        validation figures (dicts); None for a latent of one group."""
        return None

    # --- with torch ---------------------------------------------------------------------------

    def build_module(self, spec: ModelSpec) -> torch.nn.Module:
        """Its torch module (``vae.model.build_model`` asks): a ``vae.model.VAE``, or a subclass
        whose methods mean the same on its own network."""
        from vae.model import VAE

        return VAE(spec)

    def kl_parts(
        self,
        model: torch.nn.Module,
        mu: torch.Tensor,
        logvar: torch.Tensor | None,
        noise: torch.Tensor | None,
    ) -> dict[str, torch.Tensor]:
        """The KL's parts per image by name, where it has parts to report (a hierarchy's
        groups: ``kl_group1``...); validation records their means."""
        return {}

    def split_encoding(self, encoded: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(posterior mean, log-variance or None) from the encoder's output."""
        raise NotImplementedError

    def posterior_sample(
        self,
        mu: torch.Tensor,
        logvar: torch.Tensor | None,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The latent the decoder sees for one image."""
        raise NotImplementedError

    def kl_term(
        self,
        model: torch.nn.Module,
        mu: torch.Tensor,
        logvar: torch.Tensor | None,
        noise: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(KL per image, per dimension or None): the ELBO's second term."""
        raise NotImplementedError

    def log_prior_ratio(
        self,
        model: torch.nn.Module,
        mu: torch.Tensor,
        logvar: torch.Tensor | None,
        noise: torch.Tensor,
    ) -> torch.Tensor:
        """log p(z) - log q(z|x) at the posterior samples ``noise`` places (``[..., D]``, one
        value per sample): the latent part of an importance weight, which the IWAE bound
        trains on. Only a family with a likelihood (``has_likelihood``) is asked."""
        raise NotImplementedError

    def after_epoch(self, model: torch.nn.Module, codes: torch.Tensor) -> None:
        """What the family refits from its training codes before each save (``refits_codes``)."""

    # Whether ``after_epoch`` needs the codes of the training images (an encoding pass).
    refits_codes = False
