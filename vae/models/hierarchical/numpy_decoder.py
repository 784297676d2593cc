"""The hierarchical VAE's generative path in NumPy: the top-down pass from a code to the tail's
output, what ``HierarchicalModule.decode`` computes, for the torch-free ``generate`` and the
explorer (``vae.numpy_sampling``). It reads the ``decoder.*`` tensors only; the tail's
transposed convolutions run through ``vae.numpy_sampling.run_layers``, as a conv VAE's do."""

from __future__ import annotations

import numpy as np

from vae.models.hierarchical.layout import CELL_KERNEL, LOGVAR_BOUND, MEAN_BOUND, Layout


def silu(x: np.ndarray) -> np.ndarray:
    """x * sigmoid(x), the sigmoid written with tanh so that no exp overflows."""
    return x * (np.float32(0.5) * (np.tanh(np.float32(0.5) * x) + np.float32(1.0)))


def conv3x3(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Conv2d(kernel 3, stride 1, padding 1) on [N, C, H, W]: one matmul per tap, added at its
    shift (no 9x copy of the input). Channels last inside, so that each tap is a plain matmul
    (an einsum per tap took 2.5 times as long for one image, most of it choosing its path)."""
    n, _, height, width = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1))).transpose(0, 2, 3, 1)
    taps = weight.transpose(2, 3, 1, 0)  # [row, column, in, out]
    out = np.zeros((n, height, width, weight.shape[0]), dtype=np.float32)
    for row in range(CELL_KERNEL):
        for column in range(CELL_KERNEL):
            out += padded[:, row : row + height, column : column + width] @ taps[row, column]
    return out.transpose(0, 3, 1, 2) + bias.reshape(1, -1, 1, 1)


def _soft_bound(x: np.ndarray, bound: float) -> np.ndarray:
    """``module.soft_bound``: bound * tanh(x / bound)."""
    return np.float32(bound) * np.tanh(x / np.float32(bound))


def _linear(x: np.ndarray, weights: dict[str, np.ndarray], name: str) -> np.ndarray:
    return x @ weights[f"{name}.weight"].T + weights[f"{name}.bias"]


def _head(maps: np.ndarray, weights: dict[str, np.ndarray], name: str) -> np.ndarray:
    """``module.Head``: linear(flatten(silu(squeeze(silu(maps))))), squeeze a 1x1 conv."""
    squeeze = weights[f"{name}.squeeze.weight"][:, :, 0, 0]
    squeezed = (silu(maps).transpose(0, 2, 3, 1) @ squeeze.T).transpose(0, 3, 1, 2)
    squeezed = squeezed + weights[f"{name}.squeeze.bias"].reshape(1, -1, 1, 1)
    return _linear(silu(squeezed).reshape(len(maps), -1), weights, f"{name}.linear")


def _cell(x: np.ndarray, weights: dict[str, np.ndarray], name: str) -> np.ndarray:
    hidden = conv3x3(silu(x), weights[f"{name}.conv_a.weight"], weights[f"{name}.conv_a.bias"])
    return x + conv3x3(
        silu(hidden), weights[f"{name}.conv_b.weight"], weights[f"{name}.conv_b.bias"]
    )


class TopDownDecoder:
    """``decoder(weights, codes)``: the pre-sigmoid output [N, C, H, W] (float32) of codes [N,
    latent_dim], ``weights`` the checkpoint's ``decoder.*`` tensors as arrays."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout

    def __call__(self, weights: dict[str, np.ndarray], codes: np.ndarray) -> np.ndarray:
        from vae.numpy_sampling import run_layers

        layout = self.layout
        codes = np.asarray(codes, dtype=np.float32)
        batch = len(codes)
        state = np.broadcast_to(weights["decoder.start"], (batch, *layout.state))
        for index in range(layout.groups):
            group = f"decoder.groups.{index}"
            z = codes[:, layout.group_slice(index)]
            if index > 0:  # z_i = mu + sigma * code under the group's conditional prior
                prior = _head(state, weights, f"{group}.prior")
                mu, logvar = (
                    _soft_bound(part, bound)
                    for part, bound in zip(
                        np.split(prior, 2, axis=1), (MEAN_BOUND, LOGVAR_BOUND), strict=True
                    )
                )
                z = mu + np.exp(np.float32(0.5) * logvar) * z
            joined = _linear(z, weights, f"{group}.latent").reshape(batch, *layout.state)
            state = _cell(state + joined, weights, f"{group}.cell")
        return run_layers(layout.tail, weights, silu(state), "decoder.tail")
