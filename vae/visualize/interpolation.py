"""Paths between posterior means, decoded: a grid with one row per pair of images and an
animated GIF, or one walk through a test image of each class in turn."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from vae.errors import ConfigError, DataError, Setting
from vae.images import save_gif, save_grid, tile
from vae.latent import chain_indices, chain_path, interpolation_path, random_pairs
from vae.visualize.inputs import Inputs


@dataclass
class Interpolation:
    grid_path: Path
    gif_path: Path
    indices: list[int]  # images used, in order (pairs flattened, or the chain)
    frames: int


def interpolate(
    inputs: Inputs,
    grid_path: Path,
    gif_path: Path,
    *,
    pairs: int = 6,
    steps: int = 10,
    method: str = "slerp",
    chain: list[int] | None = None,
    seed: int = 0,
) -> Interpolation:
    """Decode paths between posterior means: a grid PNG with one row per pair (originals at
    both ends) and an animated GIF.

    Pairs are drawn with ``seed`` from the test images (consecutive files for ``--input``).
    With ``chain`` (class labels), the walk visits one test image of each class in turn; the
    GIF then shows the whole walk, (len(chain) - 1) * (steps - 1) + 1 frames.
    """
    if steps < 2:
        raise ConfigError(
            "invalid value for ", Setting("steps"), f": {steps} (expected at least 2)"
        )
    count = inputs.images.shape[0]
    if chain is not None:
        if len(chain) < 2:
            raise ConfigError(Setting("chain"), " needs at least two class labels, e.g. 0,1,2")
        if inputs.labels is None:
            raise DataError(
                Setting("chain"), f" needs labelled images; {inputs.source} has no labels"
            )
        indices = chain_indices(inputs.labels, chain, seed)
        legs = [(indices[i], indices[i + 1]) for i in range(len(indices) - 1)]
    elif inputs.labels is None:  # files: consecutive pairs, in sorted file order
        if count < 2:
            raise DataError(f"interpolation needs at least two images; {inputs.source} has {count}")
        legs = [(i, i + 1) for i in range(0, count - 1, 2)][:pairs]
        indices = [i for leg in legs for i in leg]
    else:
        legs = random_pairs(count, pairs, seed)
        indices = [i for leg in legs for i in leg]
    means = inputs.codes().means
    rows, leg_images = [], []
    for first, second in legs:
        path = interpolation_path(means[first], means[second], steps, method)
        decoded = inputs.decode(path, inputs.classes_between([first, second], steps))
        leg_images.append(decoded)
        rows += [inputs.images[first : first + 1], decoded, inputs.images[second : second + 1]]
    save_grid(torch.cat(rows), grid_path, columns=steps + 2)
    if chain is not None:
        walk = inputs.decode(
            chain_path(means[indices], steps, method), inputs.classes_between(indices, steps)
        )
        frames = list(walk)
    else:
        # Every pair moves at once: frame t shows step t of each pair side by side.
        frames = [
            tile(torch.stack([leg[t] for leg in leg_images]), len(leg_images)) for t in range(steps)
        ]
    save_gif(frames, gif_path)
    return Interpolation(Path(grid_path), Path(gif_path), indices, len(frames))
