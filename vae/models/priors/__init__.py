"""Latent distributions a family samples from, one module each: ``standard`` N(0, I), ``mog`` a
learned mixture of Gaussians, ``vamp`` the VampPrior (a mixture of the encoder's posteriors at
learned pseudo-inputs), ``fitted`` a Gaussian fitted to an autoencoder's training codes.

Each module's part is a :class:`~vae.models.priors.base.LatentPrior`: the checkpoint tensors it
adds, how it turns standard-normal noise into latents and its moments (NumPy, for the torch-free
``generate`` and explorer), and its torch side (the parameters it attaches to a model, its log
density and the KL term of the ELBO). Importing this package imports no torch.
"""

from __future__ import annotations

from vae.models.priors.base import LatentPrior, PriorMoments
from vae.models.priors.fitted import FITTED
from vae.models.priors.mog import MOG
from vae.models.priors.standard import STANDARD
from vae.models.priors.vamp import VAMP

# The priors a VAE may be trained with, by their ``prior`` setting's name.
PRIORS: dict[str, LatentPrior] = {prior.name: prior for prior in (STANDARD, MOG, VAMP)}

__all__ = ["FITTED", "MOG", "PRIORS", "STANDARD", "VAMP", "LatentPrior", "PriorMoments"]
