"""Model families behind one interface (:class:`~vae.models.family.Family`), keyed by the
checkpoint's ``model_type``: ``vae`` (:mod:`vae.models.gaussian`), ``ae``
(:mod:`vae.models.autoencoder`), ``cvae`` (:mod:`vae.models.conditional`) and ``hvae``
(:mod:`vae.models.hierarchical`); their priors in :mod:`vae.models.priors`.

Adding a family is one module with a ``FAMILY`` and one line in ``FAMILIES``. Importing this
package imports no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vae.errors import ConfigError, shown
from vae.models import autoencoder, conditional, gaussian, hierarchical
from vae.models.family import Family
from vae.models.priors import PRIORS, LatentPrior

if TYPE_CHECKING:
    from vae.model_spec import ModelSpec

FAMILIES: dict[str, Family] = {
    family.name: family
    for family in (gaussian.FAMILY, autoencoder.FAMILY, conditional.FAMILY, hierarchical.FAMILY)
}
MODEL_TYPES = tuple(FAMILIES)
PRIOR_NAMES = tuple(PRIORS)


def known_family(model_type: object) -> Family | None:
    """The family a ``model_type`` names, None for any other value (metadata or a
    configuration read back from a file may hold anything)."""
    return FAMILIES.get(model_type) if isinstance(model_type, str) else None


def family_named(model_type: object) -> Family:
    """The family a ``model_type`` names; ConfigError for any other value."""
    family = known_family(model_type)
    if family is None:
        raise ConfigError(f"unknown model type {shown(model_type)}")
    return family


def family_of(spec: ModelSpec) -> Family:
    """The family of the model ``spec`` describes."""
    return family_named(spec.model_type)


def prior_of(spec: ModelSpec) -> LatentPrior:
    """The latent distribution the model ``spec`` describes samples from."""
    return family_of(spec).prior(spec)


__all__ = [
    "FAMILIES",
    "MODEL_TYPES",
    "PRIOR_NAMES",
    "Family",
    "family_named",
    "family_of",
    "known_family",
    "prior_of",
]
