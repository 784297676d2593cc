"""The explorer's torch-free half: the checkpoint's decoder and prior, in NumPy.

What the page needs at once (sliders, sample, reset) runs on ``vae.numpy_sampling``, the path
``generate`` takes on the CPU, so that the page is usable before ``import torch`` (seconds on a
small machine) has finished in the background (``vae.explore.encoder``).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vae import numpy_sampling
from vae.images import image_png_bytes
from vae.sampling import draw_latents
from vae.spec import LOGVAR_MAX, LOGVAR_MIN, ModelSpec

# Sliders cover the prior's mean +- this many standard deviations, per dimension.
SLIDER_SPAN = 4.0


@dataclass(frozen=True)
class PriorMoments:
    """Per-dimension mean and standard deviation of the model's prior (for an autoencoder, of
    the Gaussian fitted to its training codes): the sliders' centre, reset value and range."""

    mean: np.ndarray  # [D] float64
    std: np.ndarray  # [D] float64


def prior_moments(spec: ModelSpec, weights: dict[str, np.ndarray]) -> PriorMoments:
    """Exact moments of the prior ``vae.sampling.prior_latents`` draws from: N(0, I); a
    mixture's by the law of total variance; an autoencoder's fitted mean and the square root
    of the diagonal of its covariance."""
    latent = spec.latent_dim
    if spec.prior == "mog":
        logits = weights["prior.logits"].astype(np.float64)
        probabilities = np.exp(logits - logits.max())
        probabilities /= probabilities.sum()
        means = weights["prior.means"].astype(np.float64)
        variances = np.exp(
            np.clip(weights["prior.logvars"].astype(np.float64), LOGVAR_MIN, LOGVAR_MAX)
        )
        mean = probabilities @ means
        variance = probabilities @ (variances + means**2) - mean**2
        return PriorMoments(mean, np.sqrt(np.maximum(variance, 0.0)))
    if spec.model_type == "ae":
        tril = weights["fitted_scale_tril"].astype(np.float64)
        return PriorMoments(
            weights["fitted_mean"].astype(np.float64), np.sqrt((tril**2).sum(axis=1))
        )
    return PriorMoments(np.zeros(latent), np.ones(latent))


def png_data_url(image: np.ndarray) -> str:
    """A [C, H, W] image in [0, 1] as a ``data:image/png`` URL, for an ``<img>`` on the page."""
    return "data:image/png;base64," + base64.b64encode(image_png_bytes(image)).decode("ascii")


class Decoder:
    """A checkpoint's decoder and prior, read once (the encoder is not read)."""

    def __init__(self, checkpoint: str | Path) -> None:
        self.checkpoint = Path(checkpoint)
        self.spec, self.weights = numpy_sampling.load_decoder(checkpoint)
        self.moments = prior_moments(self.spec, self.weights)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Images [N, C, H, W] in [0, 1] of latents [N, D]."""
        # Overflow (a huge latent) shows as non-finite pixels, which png_data_url refuses in
        # one line (vae.images), instead of NumPy warnings on the server's terminal.
        with np.errstate(over="ignore", invalid="ignore"):
            return numpy_sampling.decode(self.spec, self.weights, codes)

    def pictures(self, codes: np.ndarray) -> list[str]:
        """Data URLs of the images decoded from latents [N, D]."""
        return [png_data_url(image) for image in self.decode(codes)]

    def sample(self, seed: int, temperature: float) -> np.ndarray:
        """One latent [D] from the prior, drawn as ``generate --seed --temperature`` draws."""
        return draw_latents(self.spec, self.weights, 1, seed, temperature)[0]
