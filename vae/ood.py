"""Out-of-distribution detection: scores, the input-complexity correction, and detection metrics.

Convention: a higher score means "more likely out-of-distribution", and the OOD set is the
positive class. The raw score is the model's negative log-likelihood (or -ELBO); the corrected
score is Serra et al. (2020)'s S(x) = -log2 p(x) - L(x), with L(x) the length in bits of the image
compressed losslessly as PNG: it discounts how simple an image is, which raw likelihoods mistake for
how typical it is.

Two compressors are reported: PNG, the paper's default, and bz2 (on bit-packed pixels for binarized
images, raw bytes otherwise). bz2 was chosen among PNG, zlib, bz2 and CCITT Group 4 by the worst
AUROC over the pairs MNIST/Fashion-MNIST and Fashion-MNIST/MNIST measured on validation images,
never on the test images that the reported figures use.
"""

from __future__ import annotations

import bz2
import io
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch


def png_bits(images: torch.Tensor) -> np.ndarray:
    """Length in bits of each uint8 [C, H, W] image saved as PNG at maximum compression."""
    from PIL import Image

    lengths = np.empty(images.shape[0], dtype=np.float64)
    array = images.cpu().numpy()
    for index in range(array.shape[0]):
        image = array[index]
        picture = Image.fromarray(image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0))
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG", compress_level=9)
        lengths[index] = 8 * len(buffer.getvalue())
    return lengths


def bz2_bits(images: torch.Tensor) -> np.ndarray:
    """Length in bits of each uint8 image compressed with bz2 (level 9); binarized images
    (only 0 and 255) are bit-packed first, so that the codec sees one bit per pixel."""
    array = images.cpu().numpy()
    binary = bool(np.isin(array, (0, 255)).all())
    lengths = np.empty(array.shape[0], dtype=np.float64)
    for index in range(array.shape[0]):
        payload = np.packbits(array[index] > 0).tobytes() if binary else array[index].tobytes()
        lengths[index] = 8 * len(bz2.compress(payload, 9))
    return lengths


COMPRESSORS: dict[str, Callable[[torch.Tensor], np.ndarray]] = {"png": png_bits, "bz2": bz2_bits}


def auroc(in_scores: np.ndarray, out_scores: np.ndarray) -> float:
    """P(score_out > score_in) + P(tie) / 2 (the Mann-Whitney U statistic, normalised)."""
    from scipy.stats import rankdata

    in_scores, out_scores = np.asarray(in_scores, float), np.asarray(out_scores, float)
    # Average ranks give ties half a win each, as the definition above counts them.
    ranks = rankdata(np.concatenate([in_scores, out_scores]), method="average")
    n_in, n_out = len(in_scores), len(out_scores)
    rank_sum = ranks[n_in:].sum()
    return float((rank_sum - n_out * (n_out + 1) / 2.0) / (n_in * n_out))


def auprc(in_scores: np.ndarray, out_scores: np.ndarray) -> float:
    """Average precision with OOD as the positive class (tied scores share one threshold)."""
    scores = np.concatenate([np.asarray(in_scores, float), np.asarray(out_scores, float)])
    labels = np.concatenate([np.zeros(len(in_scores)), np.ones(len(out_scores))])
    order = np.argsort(-scores, kind="mergesort")
    scores, labels = scores[order], labels[order]
    last_of_threshold = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    true_positives = np.cumsum(labels)[last_of_threshold]
    predicted = last_of_threshold + 1
    precision = true_positives / predicted
    recall = true_positives / labels.sum()
    previous_recall = np.r_[0.0, recall[:-1]]
    return float(np.sum((recall - previous_recall) * precision))


def fpr_at_tpr(in_scores: np.ndarray, out_scores: np.ndarray, tpr: float = 0.95) -> float:
    """Fraction of in-distribution images flagged when the threshold catches ``tpr`` of the OOD."""
    out_sorted = np.sort(np.asarray(out_scores, float))[::-1]
    needed = max(1, math.ceil(tpr * len(out_sorted)))
    threshold = out_sorted[needed - 1]
    return float(np.mean(np.asarray(in_scores, float) >= threshold))


def detection_metrics(in_scores: np.ndarray, out_scores: np.ndarray) -> dict[str, float]:
    """AUROC, AUPRC (OOD positive) and FPR at 95% TPR."""
    return {
        "auroc": auroc(in_scores, out_scores),
        "auprc": auprc(in_scores, out_scores),
        "fpr_at_95_tpr": fpr_at_tpr(in_scores, out_scores, 0.95),
    }


def ood_report(
    raw_in_nats: np.ndarray,
    raw_out_nats: np.ndarray,
    images_in: torch.Tensor,
    images_out: torch.Tensor,
    raw_name: str,
    raw_unit: str | None = "nats",
) -> dict[str, Any]:
    """Detection metrics for the raw score and for the complexity-corrected score with each
    compressor; ``scores`` holds the per-image values (for histograms). A raw score that is no
    log-likelihood (``raw_unit`` None: a reconstruction error) gets no complexity correction,
    which subtracts bits from bits."""
    label = f"{raw_name} ({raw_unit})" if raw_unit else raw_name
    metrics: dict[str, Any] = {
        "raw": {"score": label, **detection_metrics(raw_in_nats, raw_out_nats)}
    }
    scores: dict[str, tuple[np.ndarray, np.ndarray]] = {"raw": (raw_in_nats, raw_out_nats)}
    if raw_unit is None:
        return {"metrics": metrics, "scores": scores}
    for name, compressed_bits in COMPRESSORS.items():
        corrected_in = raw_in_nats / math.log(2) - compressed_bits(images_in)
        corrected_out = raw_out_nats / math.log(2) - compressed_bits(images_out)
        key = f"complexity_{name}"
        metrics[key] = {
            "score": f"{raw_name} in bits minus {name} length in bits (Serra et al. 2020)",
            **detection_metrics(corrected_in, corrected_out),
        }
        scores[key] = (corrected_in, corrected_out)
    return {"metrics": metrics, "scores": scores}


# Per-image outlier scores, beside each evaluation JSON, so that the histograms can be redrawn
# (visualize gallery) without scoring 20,000 images again.
SCORES_HEADER = "set"


def scores_path(evaluation_json: Path) -> Path:
    """Where the per-image scores of an outlier evaluation written to ``evaluation_json`` go."""
    return evaluation_json.with_name(f"{evaluation_json.stem}_scores.csv")


def scores_csv(scores: dict[str, tuple[np.ndarray, np.ndarray]]) -> str:
    """CSV text: a header (set, then one column per score) and one row per image, in-distribution
    images first (set "in"), then the outliers ("out"); floats written exactly (repr)."""
    names = list(scores)
    lines = [",".join([SCORES_HEADER, *names])]
    for column, label in ((0, "in"), (1, "out")):
        columns = [np.asarray(scores[name][column], dtype=np.float64) for name in names]
        for row in zip(*columns, strict=True):
            lines.append(",".join([label, *(repr(float(value)) for value in row)]))
    return "\n".join(lines) + "\n"


def read_scores_csv(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The per-image scores written by :func:`scores_csv`; DataError for a file that is not one."""
    from vae.errors import DataError

    try:
        lines = path.read_text(encoding="utf-8").splitlines()
        header = lines[0].split(",")
        if header[0] != SCORES_HEADER or len(header) < 2:
            raise ValueError("no header")
        rows: dict[str, list[list[float]]] = {"in": [], "out": []}
        for line in lines[1:]:
            label, *values = line.split(",")
            if label not in rows or len(values) != len(header) - 1:
                raise ValueError("a malformed row")
            rows[label].append([float(value) for value in values])
        if not rows["in"] or not rows["out"]:
            raise ValueError("no rows for one of the sets")
    except (OSError, UnicodeDecodeError, IndexError, ValueError) as error:
        raise DataError(f"cannot read outlier scores {path}: {error}") from None
    inside, outside = np.array(rows["in"]), np.array(rows["out"])
    if not (np.isfinite(inside).all() and np.isfinite(outside).all()):
        raise DataError(f"cannot read outlier scores {path}: a score is not a finite number")
    return {name: (inside[:, i], outside[:, i]) for i, name in enumerate(header[1:])}
