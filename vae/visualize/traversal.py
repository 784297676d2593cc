"""Latent traversals: one row per dimension, ranked by how much the model uses it, each row
moving that dimension alone from a test image's code."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from vae.errors import ConfigError, DataError, Setting
from vae.images import save_labelled_rows
from vae.latent import traversal_codes, traversal_order
from vae.limits import check_picture
from vae.models import family_of
from vae.visualize.inputs import Inputs

if TYPE_CHECKING:
    from vae.model_spec import ModelSpec


@dataclass
class Traversal:
    path: Path
    dims: list[int]  # latent dimension of each row, top to bottom
    importance: list[float]  # average KL in nats (VAE) or code variance (autoencoder) per row
    skipped: list[int]  # inactive dimensions left out
    labels: list[str]  # each row's label, as drawn


def traverse(
    inputs: Inputs,
    path: Path,
    *,
    index: int = 0,
    steps: int = 11,
    span: float = 3.0,
    max_dims: int | None = None,
    include_inactive: bool = False,
) -> Traversal:
    """One row per latent dimension, ordered by average KL (most informative first; the
    variance of the posterior means for a model whose prior is learned); columns
    sweep the dimension from -span to +span standard deviations (of the aggregate posterior)
    around the posterior mean of image ``index``, all other dimensions held. Inactive
    dimensions are skipped (or, with ``include_inactive``, shown and labelled inactive)."""
    count = inputs.images.shape[0]
    if not 0 <= index < count:
        raise ConfigError(
            "invalid value for ", Setting("index"), f": {index} (expected 0 to {count - 1})"
        )
    if steps < 2:
        raise ConfigError(
            "invalid value for ", Setting("steps"), f": {steps} (expected at least 2)"
        )
    if not span > 0:
        raise ConfigError("invalid value for ", Setting("span"), f": {span} (expected positive)")
    codes = inputs.codes()
    dims = traversal_order(codes, include_inactive)
    active = codes.active()
    skipped = [d for d in range(codes.means.shape[1]) if not bool(active[d])]
    if include_inactive:
        skipped = []
    if not dims:
        raise DataError(
            "no active latent dimension to traverse (use ", Setting("include_inactive"), ")"
        )
    if max_dims is not None:
        dims = dims[:max_dims]
    spec = inputs.model.spec
    check_picture("steps x dimensions", steps * len(dims), spec.channels, spec.height, spec.width)
    offsets = torch.linspace(-span, span, steps)
    decoded = inputs.decode(
        traversal_codes(codes.means[index], dims, offsets, codes.aggregate_std()),
        inputs.class_of(index, steps * len(dims)),
    )
    importance = codes.importance()
    unit = "KL" if codes.logvars is not None and codes.per_dimension_kl else "var"
    tags = _group_tags(spec)
    labels = [
        f"z{d}{tags[d]} {unit} {importance[d]:.2f}" + ("" if bool(active[d]) else " inactive")
        for d in dims
    ]
    save_labelled_rows(decoded, labels, path, columns=steps)
    return Traversal(Path(path), dims, [float(importance[d]) for d in dims], skipped, labels)


def _group_tags(spec: ModelSpec) -> list[str]:
    """What each dimension's row label adds after its name: " gN" for group N (1 the top) in a
    hierarchy, as the explorer's sliders say; nothing for other models."""
    groups = family_of(spec).code_groups(spec.latent_dim, spec.latent_groups)
    return [""] * spec.latent_dim if groups is None else [f" g{group}" for group in groups]
