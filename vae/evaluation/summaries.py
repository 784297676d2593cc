"""Figures over a whole evaluation: active units (Burda et al. 2016) and the mean and spread of
a figure over repeats."""

from __future__ import annotations

import torch

ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. 2016: Var_x(E_q[z_d | x]) above this counts as active


def active_dimensions(
    posterior_means: torch.Tensor, threshold: float = ACTIVE_UNIT_THRESHOLD
) -> torch.Tensor:
    """Boolean [D]: the latent dimensions whose posterior mean varies over the data by more
    than ``threshold`` (Burda et al. 2016)."""
    return posterior_means.var(dim=0, unbiased=False) > threshold


def active_units(posterior_means: torch.Tensor, threshold: float = ACTIVE_UNIT_THRESHOLD) -> int:
    """How many latent dimensions are active (:func:`active_dimensions`)."""
    return int(active_dimensions(posterior_means, threshold).sum())


def summarize(values: list[float]) -> dict[str, float | None]:
    """Mean and standard deviation over repeats (std is None for a single repeat)."""
    tensor = torch.tensor(values, dtype=torch.float64)
    return {
        "mean": float(tensor.mean()),
        "std": float(tensor.std(unbiased=True)) if len(values) > 1 else None,
        "values": [float(v) for v in values],
    }
