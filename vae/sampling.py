"""Samples from a checkpoint's prior: the library function behind ``generate``.

The CLI only parses options and writes the picture; which path decodes (NumPy on the CPU, where
``import torch`` would take longer than the whole job, or the torch model elsewhere) is decided
here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def sample_images(
    checkpoint: str | Path, count: int, seed: int, temperature: float = 1.0, device: str = "cpu"
) -> Any:
    """``count`` images in [0, 1], shaped [N, C, H, W], decoded from the prior of the model in
    ``checkpoint`` (a NumPy array on the CPU path, a torch tensor otherwise)."""
    if device == "cpu":
        from vae import numpy_sampling

        spec, weights = numpy_sampling.load_decoder(checkpoint)
        if numpy_sampling.can_sample(spec, count):
            return numpy_sampling.sample(spec, weights, count, seed, temperature)
    import torch

    from vae.checkpoint import load_model
    from vae.device import resolve_device

    model = load_model(checkpoint, resolve_device(device))
    return model.sample(count, torch.Generator().manual_seed(seed), temperature)
