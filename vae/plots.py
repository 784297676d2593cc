"""Plots written as PNG files (matplotlib, headless)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from vae.fileio import PICTURE, atomic_write_bytes
from vae.images import picture_format
from vae.loss_name import ELBO, LossName


def _figure_bytes(figure: Any, path: Path) -> bytes:
    """The figure in the format ``path``'s suffix names (PNG or JPEG)."""
    buffer = io.BytesIO()
    if picture_format(path) == "JPEG":
        figure.savefig(buffer, format="jpeg", dpi=110, bbox_inches="tight")
        return buffer.getvalue()
    # No 'Software' stamp: the same data gives the same bytes.
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    return buffer.getvalue()


def shown(text: object) -> str:
    """``text`` as matplotlib draws it literally. A name from the file system may hold bytes that
    are not UTF-8 (Python keeps them as lone surrogates, which the font code refuses): each is
    drawn as U+FFFD. A ``$`` is escaped, so that a name holding two is not parsed as mathtext
    (whose errors surface only when the figure is saved)."""
    value = str(text)
    try:
        value = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a lone surrogate that is no escaped byte
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value.replace("$", r"\$")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure: Any, path: str | Path) -> Path:
    path = Path(path)
    atomic_write_bytes(path, _figure_bytes(figure, path), replaces=PICTURE)
    _pyplot().close(figure)
    return path


def save_score_histograms(
    report: dict[str, Any], in_name: str, out_name: str, path: str | Path
) -> Path:
    """One panel per score (raw, then each complexity correction), with the in- and
    out-of-distribution histograms overlaid and the AUROC in the title."""
    plt = _pyplot()
    scores, metrics = report["scores"], report["metrics"]
    figure, axes = plt.subplots(1, len(scores), figsize=(5 * len(scores), 3.6))
    for axis, (key, (inside, outside)) in zip(np.atleast_1d(axes), scores.items(), strict=True):
        both = np.concatenate([inside, outside])
        low, high = np.percentile(both, [0.5, 99.5])
        bins = np.linspace(low, high, 80)
        axis.hist(inside, bins=bins, alpha=0.6, density=True, label=shown(f"{in_name} (in)"))
        axis.hist(outside, bins=bins, alpha=0.6, density=True, label=shown(f"{out_name} (out)"))
        axis.set_xlabel(metrics[key]["score"])
        axis.set_ylabel("density")
        axis.set_title(f"{key.replace('_', ' ')}: AUROC {metrics[key]['auroc']:.3f}")
        axis.legend()
    return _save(figure, path)


def save_latent_maps(panels: list[dict[str, Any]], path: str | Path) -> Path:
    """Scatter plots side by side, one per panel: ``points`` [N, 2], ``labels`` [N] or None,
    ``title`` and ``axes`` (what the two axes are). Points are coloured by label, with a legend."""
    plt = _pyplot()
    figure, axes = plt.subplots(1, len(panels), figsize=(5.6 * len(panels), 5.0), squeeze=False)
    for axis, panel in zip(axes[0], panels, strict=True):
        points = np.asarray(panel["points"])
        labels = panel.get("labels")
        if labels is None:
            axis.scatter(points[:, 0], points[:, 1], s=2, alpha=0.5, color="tab:blue")
        else:
            labels = np.asarray(labels)
            colours = plt.get_cmap("tab10")
            for index, value in enumerate(np.unique(labels)):
                chosen = labels == value
                axis.scatter(
                    points[chosen, 0],
                    points[chosen, 1],
                    s=2,
                    alpha=0.6,
                    color=colours(index % 10),
                    label=shown(value),
                )
            axis.legend(markerscale=5, fontsize=8, loc="best", title="label")
        axis.set_title(shown(panel["title"]), fontsize=10)
        axis.set_xlabel(shown(panel["axes"][0]))
        axis.set_ylabel(shown(panel["axes"][1]))
    figure.tight_layout()
    return _save(figure, path)


def curve_panels(loss: LossName) -> list[tuple[str, list[tuple[str, str]]]]:
    """The panels of ``curves.png`` (title, [(record key, label)]) for a run training ``loss``."""
    per_image = f"{loss.unit} per image" if loss.unit else "per image"
    in_unit = f" ({loss.unit})" if loss.unit else ""
    if not loss.has_kl:  # an autoencoder trains its reconstruction alone: no KL, no beta
        return [
            (
                f"loss ({per_image})",
                [
                    (f"train_{loss.key}", f"train {loss.total}"),
                    (f"val_{loss.key}", f"validation {loss.total}"),
                ],
            )
        ]
    # A run that trains another bound than the ELBO (IWAE) draws the -ELBO beside it.
    elbo = (
        [("train_neg_elbo", f"train {ELBO.total}"), ("val_neg_elbo", f"validation {ELBO.total}")]
        if loss.key != ELBO.key
        else []
    )
    return [
        (
            f"loss ({per_image})",
            [
                ("train_loss", "train loss (beta-weighted)"),
                (f"train_{loss.key}", f"train {loss.total}"),
                (f"val_{loss.key}", f"validation {loss.total}"),
                *elbo,
            ],
        ),
        (
            f"{loss.reconstruction}{in_unit}",
            [("train_recon", "train"), ("val_recon", "validation")],
        ),
        ("KL (nats)", [("train_kl", "train"), ("val_kl", "validation")]),
        ("beta", [("beta", "beta")]),
    ]


def save_training_curves(
    records: list[dict[str, Any]], path: str | Path, title: str = "", loss: LossName = ELBO
) -> Path:
    """Loss, reconstruction, KL and beta against epoch, train and validation, from the records
    of a run's ``metrics.jsonl``, the loss named as the run trains it."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    if not records:
        raise ValueError("no epochs recorded yet")
    epochs = [r["epoch"] for r in records]
    panels = curve_panels(loss)
    figure, axes = plt.subplots(
        1, len(panels), figsize=(4.2 * max(len(panels), 2), 3.4), squeeze=False
    )
    axes = axes[0]
    for axis, (name, series) in zip(axes, panels, strict=True):
        for key, label in series:
            values = [r.get(key) for r in records]
            if all(v is None for v in values):
                continue
            axis.plot(epochs, [np.nan if v is None else v for v in values], marker=".", label=label)
        axis.set_title(name, fontsize=10)
        axis.set_xlabel("epoch")
        # Epochs are whole: a short run gets a tick per epoch (matplotlib's integer locator
        # gives up on a range under two and draws 0.945 ... 1.05), a long one whole ticks.
        if len(epochs) <= 12:
            axis.set_xticks(epochs)
        else:
            axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
        if len(series) > 1:
            axis.legend(fontsize=8)
    best = [r["epoch"] for r in records if r.get("best")]
    if best:
        axes[0].axvline(best[-1], color="grey", linestyle=":", linewidth=1)
    if title:
        figure.suptitle(shown(title), fontsize=11)
    figure.tight_layout()
    return _save(figure, path)
