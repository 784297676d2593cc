"""Evaluation: the true ELBO (beta = 1) and its parts, the importance-weighted NLL, active units,
the reconstruction error of a model without a likelihood, and outlier detection.

One module per job: ``scoring`` (the ELBO and IW-NLL of batches of images), ``summaries`` (active
units, mean and spread over repeats), ``protocols`` (test images binarized as the protocol says,
scored, and summarized with the text that states how), ``outliers`` (the outlier-detection
section of a result) and ``checkpoint`` (``evaluate_checkpoint``: a checkpoint and its images
loaded, scored and assembled into the result). Every public name is importable from
``vae.evaluation``.
"""

from vae.evaluation.checkpoint import evaluate_checkpoint, recorded_gaussian_sigma
from vae.evaluation.outliers import outlier_report, outlier_section
from vae.evaluation.protocols import (
    RECONSTRUCTION_ERRORS,
    evaluate_images,
    evaluate_reconstructions,
    has_likelihood,
    prepare_evaluation_images,
    protocol_text,
    reconstruction_errors,
    sigma_description,
)
from vae.evaluation.scoring import (
    CPU_MAX_DECODES,
    DEFAULT_MAX_DECODES,
    EVALUATION_SEED,
    ImageScores,
    evaluate_elbo,
    evaluate_iwae_bound,
    max_decodes_for,
    score_batch,
    score_images,
)
from vae.evaluation.summaries import (
    ACTIVE_UNIT_THRESHOLD,
    active_dimensions,
    active_units,
    summarize,
)

__all__ = [
    "ACTIVE_UNIT_THRESHOLD",
    "CPU_MAX_DECODES",
    "DEFAULT_MAX_DECODES",
    "EVALUATION_SEED",
    "RECONSTRUCTION_ERRORS",
    "ImageScores",
    "active_dimensions",
    "active_units",
    "evaluate_checkpoint",
    "evaluate_elbo",
    "evaluate_images",
    "evaluate_iwae_bound",
    "max_decodes_for",
    "evaluate_reconstructions",
    "has_likelihood",
    "outlier_report",
    "outlier_section",
    "prepare_evaluation_images",
    "protocol_text",
    "recorded_gaussian_sigma",
    "reconstruction_errors",
    "score_batch",
    "score_images",
    "sigma_description",
    "summarize",
]
