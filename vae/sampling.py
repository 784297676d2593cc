"""Samples from a model's prior: one way to draw the latents, for every command and device.

Every command that samples from the prior (``generate``, ``inference``, training's sample grids,
the gallery) draws its latents through ``draw_latents``: NumPy's public ``Generator``
(``numpy.random.default_rng(seed)``), on the CPU, whatever device decodes. The NumPy decoder
(``generate`` on the CPU, where ``import torch`` would take longer than the whole job) and the
torch model therefore decode the same latents, and a seed gives the same picture on either path
and on every device, to float rounding.

A conditional model (``cvae``) decodes each latent as a class: the labels asked for, else
label ``i % classes`` for sample ``i`` (:func:`sample_labels`); ``per_class`` decodes the same
``count`` latents as every class in turn (a picture with one row per class, the columns holding
the latent: the class changes down a column, the rest of the drawing does not).

This module imports no torch at load time; only the functions that take or make torch objects
import it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vae import numpy_sampling
from vae.models import prior_of
from vae.spec import ModelSpec

if TYPE_CHECKING:
    import torch

    from vae.model import VAE


def draw_latents(
    spec: ModelSpec,
    weights: Mapping[str, np.ndarray],
    count: int,
    seed: int,
    temperature: float = 1.0,
) -> np.ndarray:
    """``count`` latents [count, latent_dim] (float32) from the prior of the model ``spec``
    describes, drawn with ``numpy.random.default_rng(seed)``: ``standard_normal((count,
    latent_dim))``, then, for a mixture prior, ``random(count)`` to pick each one's component.

    ``weights`` holds the prior's tensors as NumPy arrays (``prior.*`` for a mixture,
    ``fitted_*`` for an autoencoder; anything else is ignored): ``model.prior_arrays()`` for a
    torch model, the checkpoint's tensors for the NumPy path. ``temperature`` scales the spread.
    """
    generator = np.random.default_rng(seed)
    noise = generator.standard_normal((count, spec.latent_dim))
    uniform = generator.random(count) if prior_of(spec).needs_uniform else None
    return prior_latents(spec, weights, noise, uniform, temperature)


def prior_latents(
    spec: ModelSpec,
    weights: Mapping[str, np.ndarray],
    noise: np.ndarray,
    uniform: np.ndarray | None,
    temperature: float = 1.0,
) -> np.ndarray:
    """Latents (float32) made from standard-normal ``noise [n, latent_dim]``: the prior's one
    transform (:meth:`vae.models.priors.LatentPrior.latents`), which ``draw_latents`` and
    ``VAE.sample`` share. N(0, I): ``noise * temperature``; a mixture: ``uniform [n]`` (in
    [0, 1)) picks each latent's component; an autoencoder: its fitted Gaussian. Computed in
    float64: the figures in float32 would depend on the order of the sums.
    """
    return prior_of(spec).latents(weights, noise, uniform, temperature).astype(np.float32)


def sample_labels(spec: ModelSpec, count: int, labels: Any = None) -> np.ndarray | None:
    """The class index of each of ``count`` samples of a conditional model: ``labels`` (one per
    sample, class indices), else ``i % classes`` for sample ``i``; None for a model that takes
    no label (it was refused earlier if asked: see :func:`vae.classes.labels_for`)."""
    if not spec.classes:
        return None
    if labels is None:
        return np.arange(count) % len(spec.classes)
    return np.asarray(labels, dtype=np.int64).reshape(count)


def generation_draw(
    spec: ModelSpec,
    weights: Mapping[str, np.ndarray],
    count: int,
    seed: int,
    temperature: float = 1.0,
    labels: Any = None,
    per_class: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    """(latents, labels or None) of a draw: ``draw_latents(spec, weights, count, seed,
    temperature)`` with :func:`sample_labels`; with ``per_class``, those latents decoded as each
    class in turn (``classes x count`` of them, class 0's first)."""
    latents = draw_latents(spec, weights, count, seed, temperature)
    if not per_class or not spec.classes:
        return latents, sample_labels(spec, count, labels)
    classes = len(spec.classes)
    return np.tile(latents, (classes, 1)), np.repeat(np.arange(classes), count)


def sample_from_model(
    model: VAE,
    count: int,
    seed: int,
    temperature: float = 1.0,
    labels: Any = None,
    per_class: bool = False,
) -> torch.Tensor:
    """``count`` images in [0, 1] [N, C, H, W], on the model's device, decoded by the torch
    ``model`` from ``draw_latents(..., seed, temperature)`` (a conditional model: as ``labels``,
    or each class with ``per_class``: see :func:`generation_draw`): what ``inference``,
    training's sample grids and the gallery draw."""
    import torch

    latents, classes = generation_draw(
        model.spec, model.prior_arrays(), count, seed, temperature, labels, per_class
    )
    chosen = None if classes is None else torch.from_numpy(classes)
    return model.decode_images(torch.from_numpy(latents), chosen)


def sample_images(
    checkpoint: str | Path,
    count: int,
    seed: int,
    temperature: float = 1.0,
    device: str = "cpu",
    labels: Any = None,
    per_class: bool = False,
) -> Any:
    """``count`` images in [0, 1], shaped [N, C, H, W], decoded from the prior of the model in
    ``checkpoint``: with NumPy on the CPU (no torch imported; a NumPy array), with the torch
    model on any other device (a tensor on it). The latents are the same either way (and a
    conditional model's labels: see :func:`generation_draw`)."""
    if device == "cpu":
        spec, weights = numpy_sampling.load_decoder(checkpoint)
        return sample_arrays(spec, weights, count, seed, temperature, labels, per_class)
    from vae.checkpoint import load_model
    from vae.device import resolve_device

    model = load_model(checkpoint, resolve_device(device))
    return sample_from_model(model, count, seed, temperature, labels, per_class)


def sample_as_generate(
    model: VAE,
    count: int,
    seed: int,
    temperature: float = 1.0,
    labels: Any = None,
    per_class: bool = False,
) -> torch.Tensor:
    """What ``generate`` draws from the checkpoint ``model`` was loaded from, on the model's
    device, bit for bit: decoded by NumPy from the model's own weights on the CPU (as
    :func:`sample_images` there), by the torch model on any other device. A tensor on the
    model's device."""
    import torch

    if next(model.parameters()).device.type != "cpu":
        return sample_from_model(model, count, seed, temperature, labels, per_class)
    weights = {
        name: tensor.detach().numpy()
        for name, tensor in model.state_dict().items()
        if name.startswith(numpy_sampling.sampling_prefixes(model.spec))
    }
    drawn = sample_arrays(model.spec, weights, count, seed, temperature, labels, per_class)
    return torch.from_numpy(drawn)


def sample_arrays(
    spec: ModelSpec,
    weights: dict[str, np.ndarray],
    count: int,
    seed: int,
    temperature: float,
    labels: Any = None,
    per_class: bool = False,
) -> np.ndarray:
    """``count`` images decoded by NumPy (``vae.numpy_sampling.decode``) from ``draw_latents(spec,
    weights, count, seed, temperature)`` (a conditional model's labels as
    :func:`generation_draw` gives them): what ``sample_images`` gives on the CPU."""
    latents, classes = generation_draw(spec, weights, count, seed, temperature, labels, per_class)
    # Overflow (huge weights, a huge temperature) is reported once, as non-finite pixels,
    # by whoever draws the picture, not as NumPy warnings on the way.
    with np.errstate(over="ignore", invalid="ignore"):
        return numpy_sampling.decode(spec, weights, latents, classes)
