"""Prior samples without torch: the decoder's forward pass in NumPy.

``import torch`` alone takes seconds on a small CPU machine, longer than drawing and decoding 64
samples (benchmarks/README.md). ``generate`` on the CPU therefore decodes with NumPy from the same
checkpoint, read by the same checks (``check_model_tensors``), running the same layer plan
(``vae.plan``) as the torch model, on latents drawn by the same function
(``vae.sampling.draw_latents``). A test holds this path to the torch model for every
architecture; a difference in a pixel's last rounding step is the most it allows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vae.checkpoint import MODEL_PREFIX, check_model_tensors, read_header, read_tensors
from vae.models import family_of, prior_of
from vae.plan import CONDITION, DECONV, LINEAR, UNFLATTEN, Layer, layer_plan
from vae.spec import ModelSpec, decode_batch_size


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


def decode(
    spec: ModelSpec,
    weights: dict[str, np.ndarray],
    z: np.ndarray,
    labels: np.ndarray | None = None,
) -> np.ndarray:
    """Images in [0, 1], shaped [N, C, H, W], that ``VAE.decoded_to_image(VAE.decode(z,
    labels))`` gives for the model ``spec`` describes (``weights``: its state dict, as NumPy
    arrays), running the decoder's layer plan, a bounded number of images at a time
    (``decode_batch_size``). ``labels``: a conditional model's class index per latent [N]
    (or the condition itself, [N, classes]); ignored by any other model."""
    layers = layer_plan(spec).decoder
    # A family with a generative path of its own (a hierarchy's top-down pass) runs that.
    own = family_of(spec).numpy_decoder(spec)
    condition = one_hot(spec, labels)
    images = np.empty((len(z), spec.channels, spec.height, spec.width), dtype=np.float32)
    step = decode_batch_size(spec)
    for start in range(0, len(z), step):
        part = None if condition is None else condition[start : start + step]
        chunk = z[start : start + step]
        x = (
            run_layers(layers, weights, chunk, "decoder", part)
            if own is None
            else own(weights, chunk)
        )
        # Bernoulli logits and the Gaussian's pre-sigmoid means both become pixels through a
        # sigmoid.
        images[start : start + step] = 0.5 * (np.tanh(0.5 * x) + 1.0)
    return images


def one_hot(spec: ModelSpec, labels: np.ndarray | None) -> np.ndarray | None:
    """The condition a conditional model's decoder takes: the one-hot vectors [N, classes]
    (float32) of class indices ``labels`` [N], or ``labels`` itself when it is [N, classes];
    None for a model without classes."""
    if not spec.classes:
        return None
    if labels is None:
        raise ValueError("a conditional model decodes each latent with a class label")
    labels = np.asarray(labels)
    if labels.ndim == 2:
        return labels.astype(np.float32)
    return (labels[:, None] == np.arange(len(spec.classes))).astype(np.float32)


def run_layers(
    layers: tuple[Layer, ...],
    weights: dict[str, np.ndarray],
    x: np.ndarray,
    network: str,
    condition: np.ndarray | None = None,
) -> np.ndarray:
    """``x`` through a network's layers (``vae.plan``) in float32, its weights named
    ``{network}.{layer name}.weight`` and ``.bias`` in ``weights``; what the torch ``Network``
    of the same layers computes (``condition``: a conditional model's one-hot vectors). Runs
    what a decoder holds (no convolutions or flattening)."""
    x = np.asarray(x, dtype=np.float32)
    for layer in layers:
        name = f"{network}.{layer.name}"
        if layer.kind == CONDITION:
            if condition is None:
                raise ValueError("a conditional network needs its labels' one-hot vectors")
            x = np.concatenate([x, condition.astype(np.float32)], axis=1)
        elif layer.kind == LINEAR:
            x = _linear(x, weights, name)
        elif layer.kind == DECONV:
            x = _transposed_conv(
                x, weights[f"{name}.weight"], weights[f"{name}.bias"], layer.output_padding
            )
        elif layer.kind == UNFLATTEN:
            x = x.reshape(x.shape[0], *layer.shape)
        else:
            raise ValueError(f"the NumPy path runs no {layer.kind} layer")
        if layer.relu:
            x = _relu(x)
    return x


def load_decoder(path: str | Path) -> tuple[ModelSpec, dict[str, np.ndarray]]:
    """The checkpoint's spec (checked as ``load_model`` checks it) and the weights sampling uses
    (the decoder's, a mixture prior's, and an autoencoder's fitted Gaussian) as arrays; the
    encoder is not read."""
    spec = check_model_tensors(path, read_header(path))
    only = sampling_prefixes(spec)
    return spec, read_tensors(path, MODEL_PREFIX, framework="numpy", only=only)


def sampling_prefixes(spec: ModelSpec) -> tuple[str, ...]:
    """Names (prefixes) of the weights prior samples are decoded from: the decoder's, and the
    prior's (a mixture's, an autoencoder's fitted Gaussian)."""
    return ("decoder.", *prior_of(spec).tensor_prefixes)
