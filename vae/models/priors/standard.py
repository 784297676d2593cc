"""N(0, I): the standard normal prior, whose KL to a diagonal Gaussian posterior is analytic."""

from __future__ import annotations

from vae.models.priors.base import LatentPrior

STANDARD = LatentPrior()
