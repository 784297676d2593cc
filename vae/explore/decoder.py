"""The explorer's torch-free half: the checkpoint's decoder and prior, in NumPy.

What the page needs at once (sliders, sample, reset) runs on ``vae.numpy_sampling``, the path
``generate`` takes on the CPU, so that the page is usable before ``import torch`` (seconds on a
small machine) has finished in the background (``vae.explore.encoder``).
"""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np

from vae import numpy_sampling
from vae.images import image_png_bytes
from vae.models import prior_of
from vae.models.priors import PriorMoments
from vae.sampling import draw_latents
from vae.spec import ModelSpec

__all__ = ["Decoder", "PriorMoments", "png_data_url", "prior_moments"]


def prior_moments(spec: ModelSpec, weights: dict[str, np.ndarray]) -> PriorMoments:
    """Exact per-dimension moments of the prior ``vae.sampling.prior_latents`` draws from (for an
    autoencoder, of the Gaussian fitted to its training codes): the sliders' centre, reset
    value and range."""
    return prior_of(spec).moments(weights, spec.latent_dim)


def png_data_url(image: np.ndarray) -> str:
    """A [C, H, W] image in [0, 1] as a ``data:image/png`` URL, for an ``<img>`` on the page."""
    return "data:image/png;base64," + base64.b64encode(image_png_bytes(image)).decode("ascii")


class Decoder:
    """A checkpoint's decoder and prior, read once (the encoder is not read)."""

    def __init__(self, checkpoint: str | Path) -> None:
        self.checkpoint = Path(checkpoint)
        self.spec, self.weights = numpy_sampling.load_decoder(checkpoint)
        self.moments = prior_moments(self.spec, self.weights)

    def decode(self, codes: np.ndarray, label: int | None = None) -> np.ndarray:
        """Images [N, C, H, W] in [0, 1] of latents [N, D]; a conditional model's as the class
        ``label`` (an index)."""
        labels = None if label is None else np.full(len(codes), label)
        # Overflow (a huge latent) shows as non-finite pixels, which png_data_url refuses in
        # one line (vae.images), instead of NumPy warnings on the server's terminal.
        with np.errstate(over="ignore", invalid="ignore"):
            return numpy_sampling.decode(self.spec, self.weights, codes, labels)

    def pictures(self, codes: np.ndarray, label: int | None = None) -> list[str]:
        """Data URLs of the images decoded from latents [N, D] (as the class ``label``)."""
        return [png_data_url(image) for image in self.decode(codes, label)]

    def sample(self, seed: int, temperature: float) -> np.ndarray:
        """One latent [D] from the prior, drawn as ``generate --seed --temperature`` draws."""
        return draw_latents(self.spec, self.weights, 1, seed, temperature)[0]
