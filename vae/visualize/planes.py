"""The latent plane (the code itself when it is 2-D, else its two leading principal
directions): the test images' codes drawn on it, and a grid over it decoded."""

from __future__ import annotations

from pathlib import Path

import torch

from vae.classes import class_index
from vae.errors import ConfigError, Setting
from vae.images import save_grid
from vae.latent import manifold_codes, plane_of
from vae.plots import save_latent_maps
from vae.visualize.inputs import Inputs


def latent_map(panels: list[Inputs], path: Path) -> Path:
    """The posterior means of each input set in 2-D (the latent itself when it is 2-D,
    otherwise a PCA projection, said in the title), coloured by label; one panel per model."""
    drawn = []
    for inputs in panels:
        means = inputs.codes().means
        plane = plane_of(means)
        title = f"{inputs.name}, {inputs.source} ({means.shape[0]:,} images)\n{plane.label}"
        if plane.explained is not None:
            title += f" ({100 * plane.explained:.0f}% of variance)"
        axes = ("z1", "z2") if plane.explained is None else ("PC1", "PC2")
        drawn.append(
            {
                "points": plane.project(means).numpy(),
                "labels": None if inputs.labels is None else inputs.labels.numpy(),
                "title": title,
                "axes": axes,
            }
        )
    return save_latent_maps(drawn, path)


def manifold(
    inputs: Inputs, path: Path, *, size: int = 20, span: float = 2.0, label: str | int | None = None
) -> Path:
    """Decode a ``size`` x ``size`` grid over the 2-D latent (or the plane of the two leading
    principal directions of the posterior means), ``span`` standard deviations each way; a
    conditional model's as the class ``label`` (default: its first class)."""
    if size < 2:
        raise ConfigError("invalid value for ", Setting("size"), f": {size} (expected at least 2)")
    if not span > 0:
        raise ConfigError("invalid value for ", Setting("span"), f": {span} (expected positive)")
    means = inputs.codes().means
    plane = plane_of(means)
    classes = None
    if inputs.model.family.conditional:
        chosen = 0 if label is None else class_index(inputs.model.spec, label)
        classes = torch.full((size * size,), chosen, dtype=torch.long)
    decoded = inputs.decode(manifold_codes(plane, plane.project(means), size, span), classes)
    return save_grid(decoded, path, columns=size)
