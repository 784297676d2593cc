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
    """Two panels (raw and complexity-corrected score), each with the in- and out-of-distribution
    histograms overlaid and the AUROC in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores = report["scores"]
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    panels = (
        ("raw", f"{raw_name} (nats)", scores["raw_in"], scores["raw_out"]),
        (
            "complexity_corrected",
            f"{raw_name} (bits) - PNG bits",
            scores["corrected_in"],
            scores["corrected_out"],
        ),
    )
    for axis, (key, label, inside, outside) in zip(axes, panels, strict=True):
        both = np.concatenate([inside, outside])
        low, high = np.percentile(both, [0.5, 99.5])
        bins = np.linspace(low, high, 80)
        axis.hist(inside, bins=bins, alpha=0.6, density=True, label=f"{in_name} (in)")
        axis.hist(outside, bins=bins, alpha=0.6, density=True, label=f"{out_name} (out)")
        axis.set_xlabel(label)
        axis.set_ylabel("density")
        axis.set_title(f"{key.replace('_', ' ')}: AUROC {report[key]['auroc']:.3f}")
        axis.legend()
    path = Path(path)
    atomic_write_bytes(path, _figure_png(figure))
    plt.close(figure)
    return path
