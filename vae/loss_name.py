"""What the loss a model trains is called, and in what unit, wherever it is shown (the training
log, the end-of-run line, ``curves.png``).

A VAE with a likelihood trains the -ELBO, in nats. An autoencoder has no KL term and no prior: it
trains its reconstruction loss alone. A perceptual loss (SSIM, MS-SSIM) is no likelihood, so its
sum with the KL is a loss without a unit, not an ELBO.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vae.config import PERCEPTUAL_LOSSES


@dataclass(frozen=True)
class LossName:
    """The name of a model's training loss (``total``), of its reconstruction term, the unit
    both are in ("" when they have none), and whether it has a (beta-weighted) KL term."""

    total: str
    reconstruction: str
    unit: str
    has_kl: bool = True

    def figure(self, value: float) -> str:
        """``value`` with the loss's name and unit: "-ELBO 86.920 nats"."""
        return f"{self.total} {value:.3f}" + (f" {self.unit}" if self.unit else "")


ELBO = LossName("-ELBO", "reconstruction", "nats")


def training_loss_name(config: dict[str, Any] | None) -> LossName:
    """The name of the loss a run trains, from its configuration as a dict (``config.yaml``, a
    checkpoint's ``config``); the -ELBO when the configuration says nothing."""
    model = config.get("model") if isinstance(config, dict) else None
    objective = config.get("objective") if isinstance(config, dict) else None
    model_type = model.get("model_type") if isinstance(model, dict) else None
    likelihood = objective.get("likelihood") if isinstance(objective, dict) else None
    perceptual = likelihood.upper() if likelihood in PERCEPTUAL_LOSSES else None
    if model_type == "ae":
        if perceptual:
            return LossName(f"{perceptual} reconstruction loss", "reconstruction", "", False)
        return LossName("reconstruction loss", "reconstruction", "nats", False)
    if perceptual:
        return LossName(f"loss ({perceptual} reconstruction + KL)", f"{perceptual} loss", "")
    return ELBO
