"""Prior samples without torch: the decoder's forward pass in NumPy.

``import torch`` alone takes 3-6 s on a small CPU machine, longer than drawing and decoding 64
samples. ``generate`` on the CPU therefore decodes with NumPy from the same checkpoint, read by the
same checks (``check_model_tensors``), and draws the latents exactly as ``torch.randn`` does with
``torch.Generator().manual_seed(seed)`` (the same Mersenne Twister stream and the same Box-Muller
transform), so a seed gives the same picture on either path. A test holds this path to the torch
model for every architecture; a difference in a pixel's last rounding step is the most it allows.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from vae.checkpoint import MODEL_PREFIX, check_model_tensors, read_header, read_tensors
from vae.spec import LOGVAR_MAX, LOGVAR_MIN, ModelSpec, conv_feature_sizes

# torch fills tensors of fewer elements with a different (scalar) algorithm; those fall back.
_BLOCK = 16


def torch_randn(seed: int, count: int) -> np.ndarray:
    """The ``count`` float32 values ``torch.randn(count, generator=Generator().manual_seed(seed))``
    gives on the CPU (to float32 rounding), for ``count >= 16``.

    torch seeds a Mersenne Twister like NumPy's legacy seeding, turns each 32-bit output into a
    uniform from its low 24 bits, and maps blocks of 16 uniforms through Box-Muller (the first 8
    give radii, the last 8 angles); a tail shorter than a block is redone from 16 fresh uniforms
    written over the last 16 values.
    """
    if count < _BLOCK:
        raise ValueError(f"torch_randn reproduces torch only for 16 or more values, got {count}")
    bits = np.random.MT19937(0)
    bits._legacy_seeding(seed & 0xFFFF_FFFF)  # torch seeds its Mersenne Twister with 32 bits

    def uniforms(n: int) -> np.ndarray:
        raw = bits.random_raw(n).astype(np.uint64)
        return (raw & np.uint64((1 << 24) - 1)).astype(np.float64) * 2.0**-24

    def box_muller(block: np.ndarray) -> np.ndarray:
        blocks = block.reshape(-1, 2, _BLOCK // 2)
        radius = np.sqrt(-2.0 * np.log1p(-blocks[:, 0]))
        angle = 2.0 * np.pi * blocks[:, 1]
        return np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1).reshape(-1)

    whole = count - count % _BLOCK
    values = np.empty(count, dtype=np.float64)
    first = uniforms(count)
    values[:whole] = box_muller(first[:whole])
    if whole < count:
        values[count - _BLOCK :] = box_muller(uniforms(_BLOCK))
    return values.astype(np.float32)


def _linear(x: np.ndarray, weights: dict[str, np.ndarray], name: str) -> np.ndarray:
    return x @ weights[f"{name}.weight"].T + weights[f"{name}.bias"]


def _transposed_conv(
    x: np.ndarray, weight: np.ndarray, bias: np.ndarray, output_padding: tuple[int, int]
) -> np.ndarray:
    """ConvTranspose2d(kernel 4, stride 2, padding 1, output_padding) on [N, C, H, W]."""
    n, _, h, w = x.shape
    kernel = weight.shape[2]
    out_channels = weight.shape[1]
    # Every input pixel scatters a kernel-sized patch: one matmul, then 16 strided additions.
    patches = np.tensordot(x.transpose(0, 2, 3, 1), weight, axes=([3], [0]))  # n h w o kh kw
    full = np.zeros((n, out_channels, 2 * h + 2, 2 * w + 2), dtype=np.float32)
    for ki in range(kernel):
        for kj in range(kernel):
            full[:, :, ki : ki + 2 * h : 2, kj : kj + 2 * w : 2] += patches[..., ki, kj].transpose(
                0, 3, 1, 2
            )
    out_h, out_w = 2 * h + output_padding[0], 2 * w + output_padding[1]
    return full[:, :, 1 : 1 + out_h, 1 : 1 + out_w] + bias.reshape(1, -1, 1, 1)


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, np.float32(0.0))


def decode(spec: ModelSpec, weights: dict[str, np.ndarray], z: np.ndarray) -> np.ndarray:
    """Images in [0, 1], shaped [N, C, H, W], that ``VAE.decoded_to_image(VAE.decode(z))`` gives
    for the model ``spec`` describes (``weights``: its state dict, as NumPy arrays)."""
    x = z.astype(np.float32)
    if spec.architecture == "mlp":
        layers = len(spec.decoder_hidden) + 1
        for index in range(layers):
            x = _linear(x, weights, f"decoder.body.{2 * index}")
            if index < layers - 1:
                x = _relu(x)
        x = x.reshape(z.shape[0], spec.channels, spec.height, spec.width)
    else:
        widths = list(spec.decoder_widths)
        sizes = conv_feature_sizes(spec.height, spec.width, len(widths))
        for index in range(len(spec.decoder_hidden) + 1):
            x = _relu(_linear(x, weights, f"decoder.dense.{2 * index}"))
        x = x.reshape(z.shape[0], widths[-1], *sizes[-1])
        for index in range(len(widths)):
            (in_h, in_w), (out_h, out_w) = sizes[-1 - index], sizes[-2 - index]
            name = f"decoder.deconv.{2 * index}"
            x = _transposed_conv(
                x,
                weights[f"{name}.weight"],
                weights[f"{name}.bias"],
                (out_h - 2 * in_h, out_w - 2 * in_w),
            )
            if index < len(widths) - 1:
                x = _relu(x)
    # Bernoulli logits and the Gaussian's pre-sigmoid means both become pixels through a sigmoid.
    return (0.5 * (np.tanh(0.5 * x) + 1.0)).astype(np.float32)


def load_decoder(path: str | Path) -> tuple[ModelSpec, dict[str, np.ndarray]]:
    """The checkpoint's spec (checked as ``load_model`` checks it) and the weights sampling uses
    (the decoder's, a mixture prior's, and an autoencoder's fitted Gaussian) as arrays; the
    encoder is not read."""
    spec = check_model_tensors(path, read_header(path))
    only = ("decoder.", "fitted_", "prior.")
    return spec, read_tensors(path, MODEL_PREFIX, framework="numpy", only=only)


def sample(
    spec: ModelSpec, weights: dict[str, np.ndarray], count: int, seed: int, temperature: float
) -> np.ndarray:
    """``VAE.sample(count, Generator().manual_seed(seed), temperature)`` without torch; needs
    16 or more normal draws: ``count * latent_dim``, plus ``count`` component picks for a mixture
    prior (``can_sample``)."""
    if spec.prior == "mog":
        draws = torch_randn(seed, count * (spec.latent_dim + 1)).reshape(count, -1)
        return decode(spec, weights, mixture_transform(weights, draws, temperature))
    z = torch_randn(seed, count * spec.latent_dim).reshape(count, spec.latent_dim)
    z = z * np.float32(temperature)
    if spec.model_type == "ae":
        z = weights["fitted_mean"] + z @ weights["fitted_scale_tril"].T
    return decode(spec, weights, z)


def mixture_transform(
    weights: dict[str, np.ndarray], draws: np.ndarray, temperature: float
) -> np.ndarray:
    """``MixturePrior.transform`` in float64, as torch computes it."""
    means = weights["prior.means"].astype(np.float64)
    logvars = np.clip(weights["prior.logvars"].astype(np.float64), LOGVAR_MIN, LOGVAR_MAX)
    noise, selector = draws[:, :-1].astype(np.float64), draws[:, -1].astype(np.float64)
    uniform = 0.5 * (1.0 + np.array([math.erf(v / math.sqrt(2.0)) for v in selector]))
    logits = weights["prior.logits"].astype(np.float64)
    probabilities = np.exp(logits - logits.max())
    cumulative = np.cumsum(probabilities / probabilities.sum())
    index = np.minimum(np.searchsorted(cumulative, uniform, side="right"), len(cumulative) - 1)
    z = means[index] + np.exp(0.5 * logvars[index]) * noise * temperature
    return z.astype(np.float32)


def can_sample(spec: ModelSpec, count: int) -> bool:
    """Whether ``sample`` reproduces torch's latents for this many samples."""
    return count * (spec.latent_dim + (spec.prior == "mog")) >= _BLOCK
