"""Variational autoencoders for images: training, safetensors checkpoints, pictures and numbers.

The Python API (docs/python.md)::

    import vae

    model = vae.load("pretrained/checkpoint_best.safetensors")
    images = model.sample(16, seed=0)
    run = vae.train(data=images_uint8, run_dir="runs/mine", epochs=5, latent_dim=16)

Importing the package is cheap on purpose: it does not import torch (the names below are
looked up on first use), so that ``info`` can read a checkpoint header in a fraction of a second.
Every error the API raises is a :class:`VAEError` with a one-line message.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from vae.errors import VAEError

if TYPE_CHECKING:
    from vae.api import Elbo, Model, Posterior, Run, load, train

__version__ = "0.1.0"

# The API's names, imported from vae.api (which imports torch) when first used.
__all__ = ["Elbo", "Model", "Posterior", "Run", "VAEError", "__version__", "load", "train"]
_API = frozenset(__all__) - {"VAEError", "__version__"}


def __getattr__(name: str) -> Any:
    """``vae.load``, ``vae.train``, ...: imported from vae.api on first use, then kept here."""
    if name not in _API:
        raise AttributeError(f"module 'vae' has no attribute '{name}'")
    value = getattr(importlib.import_module("vae.api"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
