"""Outlier detection: the in- and out-of-distribution passes of one evaluation turned into the
``ood`` section of its result (detection metrics of each score, optional histograms, and the
per-image scores kept for the file beside the JSON)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vae.ood import ood_report
from vae.plots import save_score_histograms

# One evaluation pass as the protocols return it: (summary, per-image scores, images scored).
Run = tuple[Any, Any, Any]


def outlier_section(
    inside: Run,
    outside: Run,
    scored_by_likelihood: bool,
    *,
    names: tuple[str, str],
    histogram: Path | None,
    k: int,
    seed: int,
) -> dict[str, Any]:
    """The ``ood`` section of a result: ``names`` are the in- and out-of-distribution datasets'
    (as the result names them), ``histogram`` where the score histograms go (None: drawn
    nowhere). ``per_image`` holds the scores as arrays, not JSON (see vae.ood.scores_csv)."""
    in_name, out_name = names
    report = outlier_report(inside, outside, scored_by_likelihood)
    histogram_path = None
    if histogram is not None:
        histogram_path = str(save_score_histograms(report, in_name, out_name, histogram))
    return {
        "in_dataset": in_name,
        "out_dataset": out_name,
        "num_in": int(inside[2].shape[0]),
        "num_out": int(outside[2].shape[0]),
        "protocol": f"{outside[0]['protocol']}; k={k}; seed {seed}; OOD is the positive class",
        "scores": report["metrics"],
        "out_metrics": outside[0]["metrics"],
        "histogram": histogram_path,
        # Per-image values, for the scores file beside the JSON (not part of the JSON).
        "per_image": report["scores"],
    }


def outlier_report(inside: Run, outside: Run, scored_by_likelihood: bool) -> dict[str, Any]:
    """``vae.ood.ood_report`` of the in- and out-of-distribution passes (each ``(summary,
    scores, scored)``): scored by NLL (else -ELBO) when the model has a likelihood, else by its
    reconstruction error."""
    _, scores, scored = inside
    _, ood_scores, ood_scored = outside
    if not scored_by_likelihood:
        return ood_report(
            scores.numpy(), ood_scores.numpy(), scored, ood_scored, "reconstruction error", None
        )
    raw_name = "NLL" if scores.nll is not None else "-ELBO"
    raw_in = (scores.nll if scores.nll is not None else scores.neg_elbo).numpy()
    raw_out = (ood_scores.nll if ood_scores.nll is not None else ood_scores.neg_elbo).numpy()
    return ood_report(raw_in, raw_out, scored, ood_scored, raw_name, "nats")
