"""The model: ModelConfig, the run configuration's ``model`` section (family, layers, latent,
prior)."""

from __future__ import annotations

from dataclasses import dataclass

from vae import limits
from vae.config.choices import ARCHITECTURES, MODEL_TYPES, PRIORS
from vae.config.sections.help_text import choices_text, layers_text
from vae.config.settings import setting
from vae.models import known_family


@dataclass
class ModelConfig:
    """The architecture a user chooses; image shape and likelihood come from data and objective."""

    architecture: str = setting(
        "conv",
        help=choices_text(ARCHITECTURES),
        choices=ARCHITECTURES,
        doc="`mlp` or `conv` (stride-2 convolutions, transposed-convolution decoder; any image "
        "size)",
    )
    model_type: str = setting(
        "vae",
        help="vae; ae: a plain autoencoder with the same layers, for comparison; cvae: a "
        "VAE conditioned on the class label (labelled data); hvae: a "
        "hierarchical VAE (--latent-groups groups of latents, top-down inference).",
        flags=("--model",),
        choices=MODEL_TYPES,
        doc="`vae`; `ae`: a deterministic autoencoder with the same layers (no KL, no sampling "
        "noise) to compare latent spaces with; it samples from a Gaussian fitted to its training "
        "codes, and `evaluate` reports its reconstruction error (it has no likelihood); `cvae`: a "
        "conditional VAE, its encoder and decoder given each image's class label (labelled data "
        "only; `generate --label`; [Conditional VAE](../conditional.md)); `hvae`: a "
        "hierarchical VAE, `--latent-groups` groups of latents with top-down inference and "
        "residual cells ([Hierarchical VAE](../hierarchical.md))",
    )
    latent_dim: int = setting(
        32,
        help="Latent dimensions (hvae: of all its groups together).",
        at_least=1,
        at_most=limits.MAX_LATENT_DIM,
        doc="latent dimensions; a hierarchical VAE's, split evenly between its `--latent-groups` "
        "groups",
    )
    hidden_sizes: list[int] = setting(
        factory=lambda: [512],
        help="Comma-separated dense layer sizes (mlp: all layers; conv: after the convolutions).",
        at_least=1,
        low_text="positive integers",
        at_most=limits.MAX_LAYER_WIDTH,
        high_text=layers_text(limits.MAX_LAYER_WIDTH),
        doc="dense layers (mlp: all layers; conv: between the convolutions and the latent)",
    )
    conv_widths: list[int] | None = setting(
        None,
        help="Comma-separated channel widths of the stride-2 conv layers (default: auto, "
        "from the image size: stages until the map is at most 8x8, 32, 64, 128, 256, 256...).",
        aliases={"--hidden-dims": ()},
        at_most=limits.MAX_CONV_WIDTH,
        high_text=layers_text(limits.MAX_CONV_WIDTH),
        none_word="auto",
        doc="channels of each stride-2 conv layer. `auto`: from the image size, stride-2 stages "
        "until the feature map is at most 8x8 (28 and 32 px: two, `32,64`; 64 px: three, "
        "`32,64,128`; 256 px: five, `32,64,128,256,256`), each twice as wide as the one before "
        "up to 256; the widths used are recorded in `config.yaml` and the checkpoint",
        doc_default="`auto`",
    )
    decoder_hidden_sizes: list[int] | None = setting(
        None,
        help="Dense layer sizes of the decoder (default: mirror --hidden-sizes).",
        at_least=1,
        low_text="positive integers",
        at_most=limits.MAX_LAYER_WIDTH,
        high_text=layers_text(limits.MAX_LAYER_WIDTH),
        doc="a different (e.g. cheaper) decoder",
        doc_default="mirror the encoder",
    )
    decoder_conv_widths: list[int] | None = setting(
        None,
        help="Conv widths of the decoder, encoder order (default: mirror --conv-widths).",
        at_most=limits.MAX_CONV_WIDTH,
        high_text=layers_text(limits.MAX_CONV_WIDTH),
        doc="a different (e.g. cheaper) decoder; conv widths in encoder order",
        doc_default="mirror the encoder",
    )
    prior: str = setting(
        "mog",
        help=f"{choices_text(PRIORS)}: N(0, I), a mixture of Gaussians learned with the model "
        "(better likelihoods), or the VampPrior (a mixture of the encoder's posteriors at "
        "--pseudo-inputs learned images).",
        choices=PRIORS,
        doc='`mog`: a mixture of Gaussians learned with the model (the "MoG prior" of Tomczak & '
        "Welling 2018; the KL becomes the one-sample estimate log q(z\\|x) - log p(z), and "
        "`evaluate` averages it over its k samples), `vamp`: the VampPrior of the same paper, a "
        "mixture of the encoder's own posteriors at `--pseudo-inputs` learned images (the same "
        "KL estimate), or `standard`: N(0, I) with the analytic KL. "
        "The mixtures follow the shape the encoder gives the data instead of forcing it into a "
        "ball (what that gains on MNIST: [Results](../results.md)). Autoencoders have no prior "
        "and ignore it",
    )  # an autoencoder (model_type "ae") has no prior and ignores it
    prior_components: int = setting(
        500,
        help="Components of the mog prior.",
        at_least=1,
        at_most=limits.MAX_PRIOR_COMPONENTS,
        doc="components of the `mog` prior (each a mean, a diagonal variance and a weight: 32,500 "
        "parameters at latent 32)",
    )
    pseudo_inputs: int = setting(
        500,
        help="Pseudo-inputs of the vamp prior (learned images; only with --prior vamp).",
        at_least=1,
        at_most=limits.MAX_PSEUDO_INPUTS,
        doc="pseudo-inputs of the `vamp` prior, only with `--prior vamp`: learned images, each a "
        "component (392,000 parameters at 28x28 and 500; every training step encodes all of "
        "them)",
    )
    latent_groups: int = setting(
        2,
        help="hvae: groups of latents; --latent-dim is split evenly between them.",
        at_least=2,
        at_most=limits.MAX_LATENT_GROUPS,
        doc="`hvae` only: groups of latent variables, drawn top-down, each `--latent-dim` / N "
        "dimensions; the top group's prior is `--prior`'s",
    )
    cell_channels: int = setting(
        32,
        help="hvae: hidden channels of each residual cell.",
        at_least=1,
        at_most=limits.MAX_CONV_WIDTH,
        doc="`hvae` only: hidden channels of its residual cells (two per group: one in the "
        "bottom-up pass, one in the top-down pass); their feature maps have the last "
        "`--conv-widths` (bottom-up) and `--decoder-conv-widths` (top-down) channels",
    )

    @property
    def effective_prior(self) -> str:
        """The prior the model gets: an autoencoder has none, whatever ``prior`` says."""
        family = known_family(self.model_type)
        return self.prior if family is None or family.takes_prior_setting else "standard"
