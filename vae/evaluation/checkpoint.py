"""``evaluate_checkpoint``: a checkpoint and its test images loaded, scored under the protocol
(and against an outlier set when asked), and assembled into the result ``evaluate`` reports."""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

from vae import interrupts
from vae.classes import check_image_labels
from vae.data import ImageSource, load_outlier_images
from vae.errors import CheckpointError, ConfigError, Interrupted, Setting
from vae.evaluation.outliers import outlier_section
from vae.evaluation.progress import EvaluationProgress, tensor_digest
from vae.evaluation.protocols import evaluate_images, evaluate_reconstructions, has_likelihood
from vae.evaluation.scoring import max_decodes_for
from vae.reporting import Reporter
from vae.trained_model import load_trained_model


def evaluate_checkpoint(
    checkpoint: str | Path,
    source: ImageSource | None = None,
    *,
    k: int = 1000,
    repeats: int = 1,
    binarize_test: str | None = None,
    batch_size: int = 100,
    seed: int = 0,
    device: str = "auto",
    ood_dataset: str | None = None,
    histogram: Path | None = None,
    reporter: Reporter | None = None,
    progress_file: Path | None = None,
) -> dict[str, Any]:
    """Every figure of ``evaluate`` on the images of ``source`` (default: the model's own test
    split): ELBO, its parts, IW NLL, bits/dim, active units, and with ``ood_dataset`` the
    outlier-detection metrics (plus a histogram PNG). JSON-ready except
    ``result["ood"]["per_image"]``, the per-image scores as arrays (see vae.ood.scores_csv).

    ``source.invert`` inverts the evaluated images, not the outlier set; images mostly on light
    backgrounds for a model that draws dark ones are named in one warning (see
    vae.backgrounds).

    ``progress_file``: the likelihood pass over ``source``'s images keeps its progress there and
    continues from what an interrupted run of the same evaluation left in it (see
    vae.evaluation.progress); then ``result["progress_file"]`` names it (not JSON), for the
    caller to remove once the result is saved. A model without a likelihood (scored in
    seconds) neither reads nor writes it."""
    reporter = reporter or Reporter()
    source = source or ImageSource()
    # Weights, metadata and sha256 from one read of the file: the JSON names the bytes scored.
    trained = load_trained_model(checkpoint, device)
    model, data_info = trained.model, trained.data_info
    if binarize_test is None:
        binarize_test = "static" if data_info.get("binarize", "none") != "none" else "none"
    sigma = recorded_gaussian_sigma(checkpoint, trained.metadata)
    if ood_dataset is not None and model.family.conditional:
        raise ConfigError(
            Setting("ood_dataset"),
            f" scores images by their likelihood alone, and a {model.family.label} gives only "
            "the likelihood of an image given its class: leave it out",
        )
    test = trained.test_images(source, reporter)
    images = test.images
    check_image_labels(model.spec, test.labels, source.name(data_info))
    # Loaded before the long in-distribution pass, so that a bad name fails at once.
    ood_images = (
        None
        if ood_dataset is None
        else load_outlier_images(data_info, ood_dataset, source, reporter)
    )
    options = dict(binarize=binarize_test, seed=seed, batch_size=batch_size, gaussian_sigma=sigma)
    # A model without a likelihood (an autoencoder, an SSIM-trained VAE) is scored by its own
    # reconstruction loss, the outlier score such models are compared with elsewhere.
    scored_by_likelihood = has_likelihood(model)
    evaluate = (
        functools.partial(evaluate_images, k=k)
        if scored_by_likelihood
        else evaluate_reconstructions
    )
    labels = test.labels if model.family.conditional else None
    extra: dict[str, Any] = {}
    extra_facts: dict[str, Any] = {}
    if progress_file is not None and scored_by_likelihood:
        identity = {
            "checkpoint_sha256": trained.sha256,
            "dataset": source.name(data_info),
            "images_sha256": tensor_digest(images),
            "labels_sha256": tensor_digest(labels),
            "num_images": int(images.shape[0]),
            **options,
            "k": k,
            "repeats": repeats,
            "max_decodes": max_decodes_for(next(model.parameters()).device),
            "device": next(model.parameters()).device.type,
            "likelihood": model.spec.likelihood,
            "latent_dim": model.spec.latent_dim,
        }
        extra["progress"] = progress = EvaluationProgress(Path(progress_file), identity)
        extra_facts["progress_file"] = progress.path  # not JSON: the caller removes it
        resumed = progress.load()  # another evaluation's file is refused before any work
        if resumed is not None:
            done = len(resumed.finished) * int(images.shape[0]) + resumed.done
            extra_facts["resumed_image_scores"] = done  # "seconds" is this run's alone
            reporter.message(
                f"resuming from {progress_file}: {done:,} of {repeats * int(images.shape[0]):,} "
                "image scores already computed"
            )
    try:
        inside = evaluate(
            model, images, repeats=repeats, reporter=reporter, labels=labels, **options, **extra
        )
    except KeyboardInterrupt:
        kept = extra.get("progress")
        if kept is None or not kept.path.exists():
            raise
        raise Interrupted(
            f"{interrupts.interrupt_line()}; the evaluation's progress is kept in {kept.path}: "
            "the same evaluation, run again, continues from it"
        ) from None
    result: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": trained.sha256,
        "dataset": source.name(data_info),
        "inverted": source.invert,
        **inside[0],
        **extra_facts,
    }
    if ood_images is not None:
        outside = evaluate(model, ood_images, reporter=reporter, **options)
        names = (result["dataset"], ood_dataset)
        result["ood"] = outlier_section(
            inside, outside, scored_by_likelihood, names=names, histogram=histogram, k=k, seed=seed
        )
    return result


def recorded_gaussian_sigma(checkpoint: str | Path, metadata: dict[str, Any]) -> float:
    """The Gaussian likelihood's sigma the checkpoint was trained with (0.1 when it has none),
    from its vae ``metadata``: the sigma its figures are computed with."""
    likelihood = metadata.get("likelihood")
    sigma = (likelihood.get("gaussian_sigma") if isinstance(likelihood, dict) else None) or 0.1
    if not isinstance(sigma, int | float) or isinstance(sigma, bool) or not 0 < sigma < math.inf:
        raise CheckpointError(
            f"{checkpoint} has corrupt vae metadata (likelihood gaussian_sigma is {str(sigma)[:20]})"
        )
    return float(sigma)
