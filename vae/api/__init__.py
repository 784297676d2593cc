"""vae's public Python API, re-exported by the package itself (``vae.load``, ``vae.train``):

- :mod:`~vae.api.model`: :func:`load` a checkpoint of any family as a :class:`Model`, which
  samples (as ``generate``), encodes, decodes, scores (as ``evaluate``) and saves;
- :mod:`~vae.api.run`: :func:`train` from Python, on images in memory or any dataset vae reads,
  returning a :class:`Run`;
- :mod:`~vae.api.arguments`: the checks of what the API is given.

Errors are :class:`vae.errors.VAEError` and its subclasses, with the commands' one-line messages.
docs/python.md shows every call.
"""

from vae.api.model import Elbo, Model, Posterior, load
from vae.api.run import Run, train

__all__ = ["Elbo", "Model", "Posterior", "Run", "load", "train"]
