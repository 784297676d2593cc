"""What a model is, as stored in every checkpoint's metadata: the ``ModelSpec`` dataclass.

Apart from ``vae.spec`` (its rules and the tensors it implies) and ``vae.plan`` (its layers) so
that both, and the model families, can name it without importing each other: it imports nothing
of vae but its errors, and no torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from vae.errors import CheckpointError


@dataclass
class ModelSpec:
    """Everything needed to rebuild a model; stored in every checkpoint's metadata."""

    architecture: str
    latent_dim: int
    channels: int
    height: int
    width: int
    likelihood: str
    hidden_sizes: list[int] = field(default_factory=list)
    conv_widths: list[int] = field(default_factory=list)
    # None mirrors the encoder; a cheaper decoder makes importance-weighted evaluation faster.
    decoder_hidden_sizes: list[int] | None = None
    decoder_conv_widths: list[int] | None = None
    # "vae", or "ae": a deterministic autoencoder with the same layers, for comparison.
    model_type: str = "vae"
    # mse only: the Gaussian's sigma is a learned parameter (one per channel), not a constant.
    learned_sigma: bool = False
    # "standard" N(0, I), "mog": a learned mixture of prior_components diagonal Gaussians, or
    # "vamp": the mixture of the encoder's posteriors at pseudo_inputs learned images.
    prior: str = "standard"
    prior_components: int = 0
    pseudo_inputs: int = 0
    # A conditional family (cvae): the names of its classes, in label order (label i is
    # classes[i]); their number sizes the one-hot its encoder and decoder take. Empty for others.
    classes: list[str] = field(default_factory=list)
    # A hierarchical VAE (hvae): latent_dim split into latent_groups equal groups, and the hidden
    # channels of its residual cells; 0 for the other families.
    latent_groups: int = 0
    cell_channels: int = 0

    @property
    def decoder_hidden(self) -> list[int]:
        return self.hidden_sizes if self.decoder_hidden_sizes is None else self.decoder_hidden_sizes

    @property
    def decoder_widths(self) -> list[int]:
        return self.conv_widths if self.decoder_conv_widths is None else self.decoder_conv_widths

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ModelSpec:
        names = {f.name for f in dataclasses.fields(cls)}
        optional = {
            "hidden_sizes",
            "conv_widths",
            "decoder_hidden_sizes",
            "decoder_conv_widths",
            "model_type",
            "learned_sigma",
            "prior",
            "prior_components",
            "pseudo_inputs",
            "classes",
            "latent_groups",
            "cell_channels",
        }
        missing = sorted(names - set(raw) - optional)
        if missing:
            raise CheckpointError(f"model metadata lacks {', '.join(missing)}")
        return cls(**{k: v for k, v in raw.items() if k in names})
