"""Plots written as PNG files (matplotlib, headless)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from vae.fileio import atomic_write_bytes


def _figure_png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    # No 'Software' stamp: the same data gives the same bytes.
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    return buffer.getvalue()


def save_score_histograms(
    report: dict[str, Any], in_name: str, out_name: str, raw_name: str, path: str | Path
) -> Path:
    """One panel per score (raw, then each complexity correction), with the in- and
    out-of-distribution histograms overlaid and the AUROC in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores, metrics = report["scores"], report["metrics"]
    figure, axes = plt.subplots(1, len(scores), figsize=(5 * len(scores), 3.6))
    for axis, (key, (inside, outside)) in zip(np.atleast_1d(axes), scores.items(), strict=True):
        both = np.concatenate([inside, outside])
        low, high = np.percentile(both, [0.5, 99.5])
        bins = np.linspace(low, high, 80)
        axis.hist(inside, bins=bins, alpha=0.6, density=True, label=f"{in_name} (in)")
        axis.hist(outside, bins=bins, alpha=0.6, density=True, label=f"{out_name} (out)")
        unit = (
            f"{raw_name} (nats)"
            if key == "raw"
            else f"{raw_name} (bits) - {key.split('_', 1)[1]} bits"
        )
        axis.set_xlabel(unit)
        axis.set_ylabel("density")
        axis.set_title(f"{key.replace('_', ' ')}: AUROC {metrics[key]['auroc']:.3f}")
        axis.legend()
    path = Path(path)
    atomic_write_bytes(path, _figure_png(figure))
    plt.close(figure)
    return path
