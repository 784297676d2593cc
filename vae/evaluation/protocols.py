"""The evaluation protocols and their summaries: the test images binarized as the protocol says,
scored ``repeats`` times by the likelihood (:func:`evaluate_images`) or, for a model without
one, by its reconstruction error (:func:`evaluate_reconstructions`), with the text that states
how every figure was computed."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import torch

from vae.data import TEST_BINARIZATION_SEED, ImageSet, binarize_once, labelled_batches, to_float
from vae.errors import VAEError
from vae.evaluation.progress import EvaluationProgress
from vae.evaluation.scoring import ImageScores, score_images
from vae.evaluation.summaries import active_units, summarize
from vae.model import VAE
from vae.objectives import log_likelihood, nats_to_bits_per_dim, structural_dissimilarity
from vae.reporting import Reporter


def sigma_description(model: VAE, gaussian_sigma: float) -> float | str:
    """The Gaussian sigma as the protocol states it: the fixed value, or the learned ones."""
    sigma = model.likelihood_sigma(gaussian_sigma)
    if isinstance(sigma, float):
        return sigma
    values = ", ".join(f"{value:.4g}" for value in sigma.flatten().tolist())
    return f"learned per channel: {values}"


def protocol_text(likelihood: str, binarize: str, gaussian_sigma: float | str) -> str:
    """How the figures were computed, printed beside every figure."""
    if likelihood == "mse":
        return (
            f"Gaussian likelihood (sigma {gaussian_sigma}) on continuous pixel values; no likelihood "
            "in nats or bits/dim is reported without a stated dequantization"
        )
    if binarize == "static":
        return f"Bernoulli likelihood; test images binarized once with fixed seed {TEST_BINARIZATION_SEED}"
    if binarize == "dynamic":
        return (
            "Bernoulli likelihood; test images re-binarized for every repeat (as in the IWAE paper)"
        )
    return "Bernoulli cross-entropy on grey values: not a likelihood of the images"


def prepare_evaluation_images(
    images: torch.Tensor, binarize: str, repeat_seed: int
) -> torch.Tensor:
    """uint8 [N, C, H, W] -> the uint8 images the model is scored on under the protocol."""
    if binarize == "static":
        return binarize_once(ImageSet(images), TEST_BINARIZATION_SEED).images
    if binarize == "dynamic":
        return binarize_once(ImageSet(images), repeat_seed).images
    return images


def evaluate_images(
    model: VAE,
    images: torch.Tensor,
    *,
    k: int,
    repeats: int = 1,
    binarize: str = "static",
    seed: int = 0,
    batch_size: int = 100,
    gaussian_sigma: float = 0.1,
    reporter: Reporter | None = None,
    labels: torch.Tensor | None = None,
    progress: EvaluationProgress | None = None,
) -> tuple[dict[str, Any], ImageScores, torch.Tensor]:
    """Evaluate on uint8 images under the stated protocol, ``repeats`` times with seeds
    ``seed .. seed + repeats - 1``. Returns (summary, first repeat's per-image scores, the uint8
    images scored in the first repeat). A conditional model is scored with each image's
    ``labels``: its -ELBO and NLL bound and estimate -log p(x | y), and are named so
    (``nll_given_label``: the family's ``figure_suffix``), never as an NLL of x alone.
    ``progress``: where an interrupted run left off is read from it and this run's progress
    kept in it (vae.evaluation.progress); the figures are an uninterrupted run's."""
    reporter = reporter or Reporter()
    if model.spec.likelihood == "mse":
        binarize = "none"
    dimensions = model.spec.channels * model.spec.height * model.spec.width
    per_repeat: dict[str, list[float]] = {}
    first: ImageScores | None = None
    first_images = images
    started = time.perf_counter()
    resumed = progress.load() if progress is not None else None
    finished: list[dict[str, Any]] = []
    reporter.task_started(f"evaluate (k={k})", images.shape[0] * repeats)
    try:
        for repeat in range(repeats):
            repeat_seed = seed + repeat
            scored = prepare_evaluation_images(images, binarize, repeat_seed)
            if resumed is not None and repeat < len(resumed.finished):
                scores = ImageScores(**resumed.finished[repeat])
                reporter.task_advanced(images.shape[0])
            else:
                scores = score_images(
                    model,
                    to_float(scored),
                    k,
                    repeat_seed,
                    batch_size,
                    gaussian_sigma,
                    reporter=reporter,
                    labels=labels,
                    resumed=resumed if resumed and repeat == len(resumed.finished) else None,
                    on_batch=_progress_keeper(progress, finished),
                )
            finished.append(dataclasses.asdict(scores))
            if progress is not None:
                progress.repeat_done(finished, last=repeat == repeats - 1)
            figures = _figures(scores, dimensions)
            _record(_named(figures, model.family.figure_suffix), per_repeat)
            if first is None:
                first, first_images = scores, scored
    except KeyboardInterrupt:
        if progress is not None:
            progress.flush()  # the last batch boundary reached: the rerun continues from it
        raise
    finally:
        reporter.task_ended()
    assert first is not None
    summary: dict[str, Any] = {
        "protocol": _protocol_of(model, binarize, gaussian_sigma),
        **_run_facts(model, images, binarize, seed, repeats),
        "k": k,
        "metrics": {key: summarize(values) for key, values in per_repeat.items()},
        "active_units": active_units(first.posterior_means),
        "latent_dim": model.spec.latent_dim,
        # The KL is analytic for the standard prior, a k-sample estimate for a learned one.
        "prior": model.spec.prior,
        "seconds": time.perf_counter() - started,
    }
    return summary, first, first_images


def _protocol_of(model: VAE, binarize: str, gaussian_sigma: float) -> str:
    """The protocol line of an evaluation's result: likelihood, binarization, sigma, and for a
    conditional model that each image was scored given its class."""
    protocol = protocol_text(
        model.spec.likelihood, binarize, sigma_description(model, gaussian_sigma)
    )
    if model.family.conditional:
        protocol += "; each image scored given its own class label: -log p(x|y), not -log p(x)"
    return protocol


def _figures(scores: ImageScores, dimensions: int) -> dict[str, float]:
    """One repeat's figures: the means of its per-image scores, the likelihood's also in bits
    per dimension."""
    figures = {
        "neg_elbo": float(scores.neg_elbo.mean()),
        "recon": float(scores.recon.mean()),
        "kl": float(scores.kl.mean()),
    }
    if scores.nll is not None:
        figures["nll"] = float(scores.nll.mean())
        figures["nll_bits_per_dim"] = float(nats_to_bits_per_dim(figures["nll"], dimensions))
        figures["neg_elbo_bits_per_dim"] = float(
            nats_to_bits_per_dim(figures["neg_elbo"], dimensions)
        )
    if scores.squared_error is not None:
        figures["mse"] = float(scores.squared_error.mean())
    return figures


def _progress_keeper(
    progress: EvaluationProgress | None, finished: list[dict[str, Any]]
) -> Callable[[dict[str, list[torch.Tensor]], int, torch.Generator], None] | None:
    """``score_images``'s ``on_batch`` that notes each batch in ``progress`` (None: none)."""
    if progress is None:
        return None
    return lambda parts, done, generator: progress.batch_done(finished, parts, done, generator)


# The figures of a likelihood: of x given its label for a conditional model (their names
# then say so), of x alone for any other.
LIKELIHOOD_FIGURES = ("neg_elbo", "neg_elbo_bits_per_dim", "nll", "nll_bits_per_dim")


def _named(figures: dict[str, float], suffix: str) -> dict[str, float]:
    """``figures`` with ``suffix`` in the names of the likelihood's figures, before their unit
    (``nll_given_label_bits_per_dim``)."""

    def name(key: str) -> str:
        if key not in LIKELIHOOD_FIGURES:
            return key
        figure, unit, rest = key.partition("_bits")
        return figure + suffix + unit + rest

    return {name(key): value for key, value in figures.items()}


def _record(figures: dict[str, float], per_repeat: dict[str, list[float]]) -> None:
    """Add one repeat's figures; a NaN or infinite one is an error, never a reported result
    (it would also make the JSON written invalid)."""
    for key, value in figures.items():
        if not math.isfinite(value):
            raise VAEError(
                f"evaluation gave a {key} of {value}: the model's outputs overflow on these "
                "images, so there is no figure to report"
            )
        per_repeat.setdefault(key, []).append(value)


def _run_facts(
    model: VAE, images: torch.Tensor, binarize: str, seed: int, repeats: int
) -> dict[str, Any]:
    """The protocol facts every evaluation summary states."""
    return {
        "likelihood": model.spec.likelihood,
        "test_binarization": binarize,
        "test_binarization_seed": TEST_BINARIZATION_SEED if binarize == "static" else None,
        "repeats": repeats,
        "seeds": list(range(seed, seed + repeats)),
        "num_images": int(images.shape[0]),
        "dimensions": model.spec.channels * model.spec.height * model.spec.width,
    }


def has_likelihood(model: VAE) -> bool:
    """Whether ``model`` defines a likelihood (and so an ELBO and an NLL): autoencoders and
    models trained with a perceptual loss do not."""
    return model.family.scores_likelihood(model.spec.likelihood)


@torch.no_grad()
def reconstruction_errors(
    model: VAE, images: torch.Tensor, batch_size: int = 100, labels: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per image (float images in [0, 1]): the model's own loss on the decoder's output at the
    posterior mean (the code, for an autoencoder): bce the summed binary cross-entropy, mse the
    summed squared error, ssim / ms-ssim (1 - SSIM) times the values per image; higher means
    worse. Second: the SSIM (MS-SSIM) itself for perceptual models, else None. A conditional
    model encodes and decodes each image with its ``labels``."""
    model.eval()
    device = next(model.parameters()).device
    likelihood = model.spec.likelihood
    errors, similarities = [], []
    for begin in range(0, images.shape[0], batch_size):
        x = images[begin : begin + batch_size].to(device)
        y = None if labels is None else labels[begin : begin + batch_size].to(device)
        decoded = model.decode_fast(model.encode(x, y)[0], y)
        if likelihood == "bce":
            error = -log_likelihood(decoded, x, "bce")
        elif likelihood == "mse":
            error = (decoded.float() - x.float()).pow(2).flatten(1).sum(1)
        else:
            error = structural_dissimilarity(decoded, x, multiscale=likelihood == "ms-ssim")
            similarities.append((1.0 - error / x[0].numel()).double().cpu())
        errors.append(error.double().cpu())
    return torch.cat(errors), torch.cat(similarities) if similarities else None


def evaluate_reconstructions(
    model: VAE,
    images: torch.Tensor,
    *,
    repeats: int = 1,
    binarize: str = "static",
    seed: int = 0,
    batch_size: int = 100,
    gaussian_sigma: float = 0.1,
    reporter: Reporter | None = None,
    labels: torch.Tensor | None = None,
) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor]:
    """The figures of a model without a likelihood, on uint8 images: its reconstruction error
    (see :func:`reconstruction_errors`; and the SSIM for perceptual models), over ``repeats``
    binarizations (a conditional model's with the images' ``labels``). Returns (summary, first
    repeat's per-image errors, the uint8 images scored)."""
    del gaussian_sigma  # a squared error needs no sigma; kept for evaluate_images' signature
    reporter = reporter or Reporter()
    likelihood = model.spec.likelihood
    if likelihood != "bce":
        binarize = "none"
    per_repeat: dict[str, list[float]] = {}
    first: torch.Tensor | None = None
    first_images = images
    started = time.perf_counter()
    device = next(model.parameters()).device
    with torch.no_grad():
        means = [
            model.encode(x.to(device), None if y is None else y.to(device))[0].cpu()
            for x, y in labelled_batches(ImageSet(images, labels), batch_size)
        ]
    reporter.task_started("evaluate (reconstruction)", images.shape[0] * repeats)
    try:
        for repeat in range(repeats):
            scored = prepare_evaluation_images(images, binarize, seed + repeat)
            errors, similarity = reconstruction_errors(model, to_float(scored), batch_size, labels)
            figures = {"reconstruction_error": float(errors.mean())}
            if similarity is not None:
                figures["ssim"] = float(similarity.mean())
            _record(figures, per_repeat)
            reporter.task_advanced(images.shape[0])
            if first is None:
                first, first_images = errors, scored
    finally:
        reporter.task_ended()
    assert first is not None
    what = (
        f"a {likelihood.upper()}-trained model"
        if model.family.has_likelihood
        else f"an {model.family.label}"
    )
    summary: dict[str, Any] = {
        "protocol": (
            f"{what} has no likelihood: reconstruction error at the posterior mean "
            f"({RECONSTRUCTION_ERRORS[likelihood]}); no NLL, ELBO or bits/dim"
            + (
                f"; test images binarized once with fixed seed {TEST_BINARIZATION_SEED}"
                if binarize == "static"
                else ""
            )
        ),
        **_run_facts(model, images, binarize, seed, repeats),
        "score": "reconstruction error",
        "k": None,
        "metrics": {key: summarize(values) for key, values in per_repeat.items()},
        "active_units": active_units(torch.cat(means)),
        "latent_dim": model.spec.latent_dim,
        **model.family.describe(model.spec),
        "seconds": time.perf_counter() - started,
    }
    return summary, first, first_images


# What "reconstruction error" means for each loss (said in the protocol).
RECONSTRUCTION_ERRORS = {
    "bce": "summed binary cross-entropy",
    "mse": "summed squared error",
    "ssim": "(1 - SSIM) x values per image",
    "ms-ssim": "(1 - MS-SSIM) x values per image",
}
