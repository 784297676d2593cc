"""The Python API's checks of what it is given: counts, seeds and scales in range, and images
shaped for a model. Each refusal is a one-line :class:`~vae.errors.VAEError` (a ConfigError
for a bad argument, a DataError for images that do not fit) naming the argument."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from vae.config.settings import check_seed, invalid_value
from vae.data import TEST_BINARIZATION_SEED, bernoulli_pixels
from vae.errors import ConfigError, DataError, Setting
from vae.limits import MAX_IMPORTANCE_SAMPLES, MAX_TEMPERATURE
from vae.model_spec import ModelSpec

# Images scored, encoded or decoded at once by default (evaluate's --batch-size): the noise of
# the scores depends on it, so the default is evaluate's.
DEFAULT_BATCH_SIZE = 100


def whole_number(name: str, value: Any, low: int = 1, high: int | None = None) -> int:
    """``value`` as an int from ``low`` to ``high``, else the ConfigError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        invalid_value(name, value, f"a whole number of at least {low}")
    if value < low or (high is not None and value > high):
        bound = f" and at most {high:,}" if high is not None else ""
        invalid_value(name, value, f"a whole number of at least {low}{bound}")
    return int(value)


def seed_value(seed: Any, name: str = "seed") -> int:
    """``seed`` as a valid generator seed (0 to 2**64 - 1)."""
    whole_number(name, seed, low=0)
    check_seed(int(seed), name)
    return int(seed)


def temperature_value(temperature: Any) -> float:
    """A positive, finite temperature no larger than vae.limits' bound."""
    if isinstance(temperature, bool) or not isinstance(temperature, int | float | np.floating):
        invalid_value("temperature", temperature, "a positive, finite number")
    value = float(temperature)
    if not (value > 0 and math.isfinite(value)):
        invalid_value("temperature", temperature, "a positive, finite number")
    if value > MAX_TEMPERATURE:
        invalid_value("temperature", temperature, f"at most {MAX_TEMPERATURE:g}")
    return value


def samples_value(k: Any) -> int:
    """Importance samples per image, as ``evaluate --k`` allows them."""
    return whole_number("k", k, 1, MAX_IMPORTANCE_SAMPLES)


def model_images(images: Any, spec: ModelSpec, binarize: bool = False) -> torch.Tensor:
    """``images`` as float32 values in [0, 1] on the CPU, shaped [N, C, H, W] for the model
    ``spec`` describes: a uint8 tensor or array is divided by 255, a float one taken as it
    is ([N, H, W] for a one-channel model too). With ``binarize`` every pixel is drawn once
    from a Bernoulli of its value with evaluate's fixed seed (TEST_BINARIZATION_SEED), the
    draw ``evaluate`` makes of its test images."""
    if not isinstance(images, torch.Tensor | np.ndarray):
        raise DataError(
            f"images must be a tensor or NumPy array [N, C, H, W], got {type(images).__name__}"
        )
    tensor = torch.as_tensor(images).detach().cpu()
    if tensor.ndim == 3 and spec.channels == 1:
        tensor = tensor.unsqueeze(1)
    expected = (spec.channels, spec.height, spec.width)
    if tensor.ndim != 4 or tuple(tensor.shape[1:]) != expected:
        raise DataError(
            f"images are shaped {tuple(tensor.shape)}; the model takes [N, {expected[0]}, "
            f"{expected[1]}, {expected[2]}]"
        )
    if tensor.dtype == torch.uint8:
        values = tensor.float().div_(255.0)  # as vae.data.to_float
    elif tensor.is_floating_point():
        values = tensor.float()
        if values.numel() and (
            not bool(torch.isfinite(values).all()) or values.min() < 0 or values.max() > 1
        ):
            raise DataError("float images must hold finite values in [0, 1]")
    else:
        raise DataError(f"images must be uint8 or float, got {str(tensor.dtype)[6:]}")
    if binarize:
        if spec.likelihood != "bce":
            raise ConfigError(
                Setting("binarize"),
                f" draws Bernoulli pixels for a bce model; this one's likelihood is "
                f"{spec.likelihood}, which evaluate scores on its images as they are",
            )
        values = bernoulli_pixels(values, TEST_BINARIZATION_SEED)
    return values


def class_labels(
    labels: Any, spec: ModelSpec, count: int, required: bool = True
) -> torch.Tensor | None:
    """A conditional model's class index of each of ``count`` images or latents: ``labels``
    one class (a name or an index) for all, or a sequence (list, array, tensor) of ``count``
    of them. None without labels, which a conditional model refuses when they are
    ``required``; labels for a model that takes none are refused."""
    from vae.classes import check_conditional, class_index

    if labels is None:
        if required and spec.classes:
            raise ConfigError(
                Setting("labels"),
                " are needed: a conditional VAE encodes and decodes each image with its class "
                "(give one class, or one per image)",
            )
        return None
    check_conditional(spec, "labels")
    if isinstance(labels, str | int | np.integer) and not isinstance(labels, bool):
        return torch.full((count,), class_index(spec, labels, "labels"), dtype=torch.long)
    if isinstance(labels, torch.Tensor | np.ndarray):
        labels = torch.as_tensor(labels).flatten().tolist()
    if not isinstance(labels, list | tuple) or len(labels) != count:
        given = (
            f"{len(labels)} classes" if isinstance(labels, list | tuple) else type(labels).__name__
        )
        raise ConfigError(
            Setting("labels"), f" must be one class or {count} of them (one each), got {given}"
        )
    return torch.tensor([class_index(spec, value, "labels") for value in labels], dtype=torch.long)


def latent_codes(latents: Any, spec: ModelSpec) -> torch.Tensor:
    """``latents`` as a float32 tensor [N, latent_dim] on the CPU (one code [latent_dim] too)."""
    if not isinstance(latents, torch.Tensor | np.ndarray):
        raise DataError(
            f"latents must be a tensor or NumPy array [N, {spec.latent_dim}], got "
            f"{type(latents).__name__}"
        )
    tensor = torch.as_tensor(latents).detach().cpu()
    if tensor.ndim == 1:
        tensor = tensor.unsqueeze(0)
    if tensor.ndim != 2 or tensor.shape[1] != spec.latent_dim or not tensor.is_floating_point():
        raise DataError(
            f"latents are {str(tensor.dtype)[6:]} shaped {tuple(tensor.shape)}; the model "
            f"decodes float [N, {spec.latent_dim}]"
        )
    if not bool(torch.isfinite(tensor).all()):
        raise DataError("latents must be finite")
    return tensor.float()
