"""The conditional VAE family (``model_type`` "cvae", Sohn et al. 2015): the VAE of
:mod:`vae.models.gaussian` whose encoder and decoder also take the image's class label, as a
one-hot vector concatenated to the encoder's flattened features (the pixels of an mlp, the last
convolution's map of a conv network) and to the decoder's latent input (the layer plan's
``condition`` layers, :mod:`vae.plan`). The prior p(z) does not depend on the label, so
q(z | x, y) is trained toward the same N(0, I) (or mixture) as a VAE's posterior and a latent
drawn from it is decoded as whatever class is asked for.

Its ELBO bounds log p(x | y), not log p(x): ``evaluate`` reports its figures under their own
names (``nll_given_label``), never in a VAE's columns. The class names (``ModelSpec.classes``,
in label order) are stored in the checkpoint: their number sizes the one-hot, and ``generate
--label`` takes either.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vae.errors import ConfigError, Setting
from vae.models.gaussian import GaussianVAE

if TYPE_CHECKING:
    from vae.loss_name import LossName
    from vae.model_spec import ModelSpec

# The priors whose density needs no label: the vamp prior encodes its pseudo-inputs, which have
# no class to give a conditional encoder.
UNCONDITIONAL_PRIORS = ("standard", "mog")


class ConditionalVAE(GaussianVAE):
    """z ~ N(mu(x, y), diag(exp(logvar(x, y)))), x ~ p(x | z, y), p(z) the chosen prior."""

    name = "cvae"
    label = "conditional VAE"
    conditional = True
    sampling_note = (
        "a conditional VAE decodes each sample as a class: sample i as class i % (its number "
        "of classes), unless classes are asked for"
    )
    # The figures its likelihood gives are of x given its label: named so in evaluate's results.
    figure_suffix = "_given_label"

    def check(self, spec: ModelSpec) -> None:
        super().check(spec)
        if spec.prior not in UNCONDITIONAL_PRIORS:
            raise ConfigError(
                f"the {spec.prior} prior encodes its pseudo-inputs, which have no class label to "
                "give a conditional VAE's encoder: use ",
                Setting("prior"),
                f" {' or '.join(UNCONDITIONAL_PRIORS)} with ",
                Setting("model_type"),
                f" {self.name}",
            )

    def loss_name(self, likelihood: str) -> LossName:
        from vae.loss_name import LossName

        name = super().loss_name(likelihood)
        # The same figure as a VAE's, of x given its label: -ELBO(x|y).
        return LossName(
            name.total.replace("-ELBO", "-ELBO(x|y)"), name.reconstruction, name.unit, name.has_kl
        )


FAMILY = ConditionalVAE()
