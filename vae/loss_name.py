"""What the loss a model trains is called, and in what unit, wherever it is shown (the training
log, the end-of-run line, ``curves.png``); each family names its own (a VAE's -ELBO in nats, an
autoencoder's reconstruction loss, a perceptual loss without a unit)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vae.json_values import is_count


@dataclass(frozen=True)
class LossName:
    """The name of a model's training loss (``total``), of its reconstruction term, the unit
    both are in ("" when they have none), and whether it has a (beta-weighted) KL term."""

    total: str
    reconstruction: str
    unit: str
    has_kl: bool = True
    # The figure ``total`` names in metrics.jsonl and the validation figures (``train_KEY``,
    # ``val_KEY``): the -ELBO's column unless the run trains another bound.
    key: str = "neg_elbo"

    def figure(self, value: float) -> str:
        """``value`` with the loss's name and unit: "-ELBO 86.920 nats"."""
        return f"{self.total} {value:.3f}" + (f" {self.unit}" if self.unit else "")


ELBO = LossName("-ELBO", "reconstruction", "nats")


def iwae_loss_name(samples: int) -> LossName:
    """The -IWAE bound of ``samples`` samples per image: never in the -ELBO's column."""
    return LossName(
        f"-IWAE bound (k={samples})", "reconstruction", "nats", key=f"neg_iwae_k{samples}"
    )


def training_loss_name(config: dict[str, Any] | None) -> LossName:
    """The name of the loss a run trains, from its configuration as a dict (``config.yaml``, a
    checkpoint's ``config``): the IWAE bound for a run that trains it, else its family's
    (:meth:`vae.models.Family.loss_name`); the -ELBO when the configuration says nothing
    readable."""
    from vae.config.choices import IWAE_OBJECTIVE
    from vae.models import known_family

    model = config.get("model") if isinstance(config, dict) else None
    objective = config.get("objective") if isinstance(config, dict) else None
    model_type = model.get("model_type", "vae") if isinstance(model, dict) else "vae"
    likelihood = objective.get("likelihood") if isinstance(objective, dict) else None
    family = known_family(model_type)
    if family is None or not isinstance(likelihood, str):
        return ELBO
    assert isinstance(objective, dict)  # it holds the likelihood
    samples = objective.get("iw_samples")
    if (
        objective.get("objective") == IWAE_OBJECTIVE
        and is_count(samples)
        and samples > 0
        and family.scores_likelihood(likelihood)
    ):
        return iwae_loss_name(samples)
    return family.loss_name(likelihood)
