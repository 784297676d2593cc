"""Latent-space geometry for the pictures: codes of a dataset, interpolation paths, traversal
order, PCA and manifold grids. Pure tensor maths; no files, no printing."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vae.errors import DataError, Setting
from vae.evaluation import active_dimensions
from vae.model import VAE
from vae.objectives import gaussian_kl

INTERPOLATIONS = ("slerp", "lerp")


@dataclass
class Codes:
    """Posterior means (an autoencoder's codes) and log-variances (None for an autoencoder)."""

    means: torch.Tensor  # [N, D]
    logvars: torch.Tensor | None  # [N, D]
    # A learned (mixture) prior does not split its KL over dimensions.
    per_dimension_kl: bool = True

    def aggregate_std(self) -> torch.Tensor:
        """Per-dimension standard deviation of the aggregate posterior, by the law of total
        variance: Var(mean) + E[posterior variance] (for an autoencoder, the codes' spread)."""
        variance = self.means.var(0, unbiased=False)
        if self.logvars is not None:
            variance = variance + self.logvars.exp().mean(0)
        return variance.sqrt()

    def active(self) -> torch.Tensor:
        """Boolean [D]: dimensions whose posterior mean varies over the data (Burda et al. 2016).
        Every dimension of an autoencoder counts as active."""
        if self.logvars is None:
            return torch.ones(self.means.shape[1], dtype=torch.bool)
        return active_dimensions(self.means)

    def importance(self) -> torch.Tensor:
        """Per-dimension score used to order traversals: the average KL in nats for a VAE with
        the standard prior, the variance of the codes (posterior means) otherwise."""
        if self.logvars is None or not self.per_dimension_kl:
            return self.means.var(0, unbiased=False)
        return gaussian_kl(self.means, self.logvars).mean(0)


@torch.no_grad()
def encode_images(
    model: VAE, images: torch.Tensor, batch_size: int = 1000, labels: torch.Tensor | None = None
) -> Codes:
    """Codes of float images [N, C, H, W] in [0, 1], on the model's device, returned on CPU (a
    conditional model's given the images' ``labels``)."""
    model.eval()
    device = next(model.parameters()).device
    means, logvars = [], []
    for begin in range(0, images.shape[0], batch_size):
        part = None if labels is None else labels[begin : begin + batch_size].to(device)
        mu, logvar = model.encode(images[begin : begin + batch_size].to(device), part)
        means.append(mu.float().cpu())
        if logvar is not None:
            logvars.append(logvar.float().cpu())
    per_dimension_kl = model.latent_prior.per_dimension_kl
    return Codes(torch.cat(means), torch.cat(logvars) if logvars else None, per_dimension_kl)


def lerp(start: torch.Tensor, end: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Straight-line points [T, D] between two codes [D] at fractions t [T]."""
    return start + t[:, None] * (end - start)


def slerp(start: torch.Tensor, end: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation (White 2016): follows the great circle between the codes, so
    the path keeps the norm typical of Gaussian samples instead of cutting through the origin.
    Falls back to lerp when the codes are (anti)parallel and the circle is undefined."""
    cosine = torch.dot(start, end) / (start.norm() * end.norm()).clamp_min(1e-12)
    omega = torch.arccos(cosine.clamp(-1.0, 1.0))
    sine = torch.sin(omega)
    if sine.abs() < 1e-6:
        return lerp(start, end, t)
    weights_start = torch.sin((1.0 - t) * omega) / sine
    weights_end = torch.sin(t * omega) / sine
    return weights_start[:, None] * start + weights_end[:, None] * end


def interpolation_path(
    start: torch.Tensor, end: torch.Tensor, steps: int, method: str = "slerp"
) -> torch.Tensor:
    """``steps`` codes from ``start`` to ``end`` inclusive."""
    if method not in INTERPOLATIONS:
        raise ValueError(f"unknown interpolation '{method}'")
    t = torch.linspace(0.0, 1.0, steps, dtype=start.dtype)
    return (slerp if method == "slerp" else lerp)(start, end, t)


def chain_path(codes: torch.Tensor, steps: int, method: str = "slerp") -> torch.Tensor:
    """A walk through codes [M, D] in turn, ``steps`` points per leg, joints not repeated:
    (M - 1) * (steps - 1) + 1 codes."""
    legs = [
        interpolation_path(codes[i], codes[i + 1], steps, method) for i in range(len(codes) - 1)
    ]
    return torch.cat([legs[0]] + [leg[1:] for leg in legs[1:]])


def chain_indices(labels: torch.Tensor, classes: list[int], seed: int) -> list[int]:
    """One image index per requested class, drawn with ``seed`` among the images of that class."""
    generator = torch.Generator().manual_seed(seed)
    # Looked up among the labels present first: comparing the tensor with a number too large
    # for its integer type (99999999999999999999) raises OverflowError instead of matching none.
    present = set(labels.unique().tolist())
    chosen = []
    for label in classes:
        candidates = torch.nonzero(labels == label).flatten() if label in present else []
        if len(candidates) == 0:
            raise DataError(f"no test image has class {label} (for ", Setting("chain"), ")")
        pick = torch.randint(len(candidates), (1,), generator=generator).item()
        chosen.append(int(candidates[pick]))
    return chosen


def random_pairs(count: int, pairs: int, seed: int) -> list[tuple[int, int]]:
    """``pairs`` pairs of distinct image indices out of ``count``, drawn with ``seed``."""
    if count < 2:
        raise DataError("interpolation needs at least two images")
    generator = torch.Generator().manual_seed(seed)
    result = []
    for _ in range(pairs):
        first, second = torch.randperm(count, generator=generator)[:2].tolist()
        result.append((first, second))
    return result


def traversal_order(codes: Codes, include_inactive: bool = False) -> list[int]:
    """Dimensions by decreasing importance (average KL), inactive ones dropped unless asked."""
    importance = codes.importance()
    order = torch.argsort(importance, descending=True, stable=True).tolist()
    if include_inactive:
        return order
    active = codes.active()
    return [d for d in order if bool(active[d])]


def traversal_codes(
    base: torch.Tensor, dims: list[int], offsets: torch.Tensor, scale: torch.Tensor
) -> torch.Tensor:
    """Codes [len(dims) * len(offsets), D]: row r moves dimension dims[r] of ``base`` by
    offsets * scale[dims[r]], every other dimension held."""
    rows = []
    for d in dims:
        row = base.repeat(len(offsets), 1)
        row[:, d] = base[d] + offsets * scale[d]
        rows.append(row)
    return torch.cat(rows)


@dataclass
class Projection:
    """A 2-D view of the latent space: ``points = (codes - center) @ axes.T``."""

    center: torch.Tensor  # [D]
    axes: torch.Tensor  # [2, D], orthonormal rows
    label: str  # what the two axes are, for plot titles
    explained: float | None  # fraction of variance the two axes hold (PCA only)

    def project(self, codes: torch.Tensor) -> torch.Tensor:
        return (codes - self.center) @ self.axes.T

    def lift(self, points: torch.Tensor) -> torch.Tensor:
        return self.center + points @ self.axes


def plane_of(means: torch.Tensor) -> Projection:
    """The latent itself when it is 2-D; otherwise the two leading principal directions of the
    centred codes (signs fixed so that the result does not depend on the SVD routine)."""
    means = means.double()
    center = means.mean(0)
    if means.shape[1] == 1:
        raise DataError(
            "a 1-D latent has no plane to map: train with ", Setting("latent_dim"), " 2 or more"
        )
    if means.shape[1] == 2:
        # Not centred: the axes show the latent's own values (the prior is centred at 0 anyway).
        return Projection(torch.zeros(2), torch.eye(2), "latent dimensions z1, z2", None)
    centred = means - center
    # A single code has one singular direction in the reduced SVD (and none of any variance):
    # the full one completes the plane, and is small exactly when there are so few codes.
    _, singular, vh = torch.linalg.svd(centred, full_matrices=means.shape[0] < 2)
    axes = vh[:2]
    # Make each axis point towards the side holding the larger absolute loading.
    signs = torch.sign(axes.gather(1, axes.abs().argmax(1, keepdim=True))).squeeze(1)
    axes = axes * signs[:, None]
    total = (singular**2).sum()
    # Codes that are all the same (one image) have no variance for the plane to miss.
    explained = float((singular[:2] ** 2).sum() / total) if total > 0 else 1.0
    return Projection(
        center.float(), axes.float(), "PCA of the posterior means: PC1, PC2", explained
    )


def manifold_codes(
    projection: Projection, points: torch.Tensor, size: int, span: float = 2.0
) -> torch.Tensor:
    """A ``size`` x ``size`` grid of codes over the plane, ``span`` standard deviations of the
    projected ``points`` each way from the center; row-major, top row = highest second axis."""
    std = points.std(0, unbiased=False).clamp_min(1e-6)
    first = torch.linspace(-span, span, size) * std[0]
    second = torch.linspace(span, -span, size) * std[1]
    grid = torch.stack(torch.meshgrid(second, first, indexing="ij"), dim=-1).reshape(-1, 2)
    return projection.lift(grid[:, [1, 0]])
