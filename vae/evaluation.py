"""Evaluation: the true ELBO (beta = 1) and its parts, the importance-weighted NLL, active units."""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vae.backgrounds import background_warning
from vae.checkpoint import data_for_model, load_checkpoint
from vae.data import (
    TEST_BINARIZATION_SEED,
    ImageSet,
    binarize_once,
    evaluation_batches,
    load_images_for_model,
    load_outlier_images,
    to_float,
)
from vae.device import resolve_device
from vae.errors import CheckpointError, VAEError
from vae.model import VAE
from vae.objectives import (
    elbo_terms,
    gaussian_kl,
    log_importance_weights,
    log_likelihood,
    nats_to_bits_per_dim,
    structural_dissimilarity,
)
from vae.ood import ood_report
from vae.plots import save_score_histograms
from vae.reporting import Reporter

EVALUATION_SEED = 0


@torch.no_grad()
def evaluate_elbo(
    model: VAE,
    images: ImageSet,
    gaussian_sigma: float = 0.1,
    batch_size: int = 1000,
    seed: int = EVALUATION_SEED,
) -> dict[str, float]:
    """Negative ELBO, reconstruction and KL in nats per image, with beta = 1 and one sample.

    The posterior noise comes from its own generator with a fixed seed, so the figure is
    reproducible and evaluating never disturbs the training random stream. For the Gaussian
    likelihood the plain per-pixel MSE of the decoded mean is reported too.
    """
    was_training = model.training
    model.eval()
    device = images.images.device
    generator = torch.Generator(device=device).manual_seed(seed)
    totals = {"neg_elbo": 0.0, "recon": 0.0, "kl": 0.0, "mse": 0.0}
    count = 0
    for x in evaluation_batches(images, batch_size):
        mu, logvar = model.encode(x)
        noise = None
        if logvar is not None:
            noise = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        z = mu if noise is None else model.reparameterize(mu, logvar, noise=noise)
        decoded = model.decode_fast(z)
        sigma = model.likelihood_sigma(gaussian_sigma)
        kl = model.kl_term(mu, logvar, noise)
        terms = elbo_terms(decoded, x, mu, logvar, model.spec.likelihood, 1.0, 0.0, sigma, kl=kl)
        n = x.shape[0]
        totals["neg_elbo"] += terms.neg_elbo.item() * n
        totals["recon"] += terms.recon.item() * n
        totals["kl"] += terms.kl.item() * n
        if model.spec.likelihood != "bce":
            totals["mse"] += (model.decoded_to_image(decoded) - x).pow(2).mean().item() * n
        count += n
    model.train(was_training)
    if count == 0:
        raise ValueError("cannot evaluate on an empty set of images")
    results = {key: value / count for key, value in totals.items()}
    if model.spec.likelihood == "bce":
        del results["mse"]
    return results


ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. 2016: Var_x(E_q[z_d | x]) above this counts as active
# Images decoded at once: bounds memory whatever k and batch size are. A chunk this small stays
# in the CPU's cache, which a larger one does not (benchmarks/README.md, "Figures behind the code").
DEFAULT_MAX_DECODES = 4_096


@dataclass
class ImageScores:
    """Per-image figures of one evaluation pass, in nats (CPU, float64)."""

    neg_elbo: torch.Tensor
    recon: torch.Tensor
    kl: torch.Tensor
    nll: torch.Tensor | None  # importance-weighted estimate; None for the Gaussian likelihood
    squared_error: torch.Tensor | None  # per-pixel MSE of the reconstruction (Gaussian only)
    posterior_means: torch.Tensor


@torch.no_grad()
def score_batch(
    model: VAE,
    x: torch.Tensor,
    k: int,
    generator: torch.Generator,
    gaussian_sigma: float = 0.1,
    max_decodes: int = DEFAULT_MAX_DECODES,
) -> dict[str, torch.Tensor]:
    """-ELBO (with a k-sample reconstruction term and the analytic KL; a learned prior's KL
    as the average of log q(z|x) - log p(z) over the same k samples) and the k-sample
    importance-weighted NLL of each image in ``x``, streaming over chunks of samples."""
    mu, logvar = model.encode(x)
    batch, latent = mu.shape
    kl = gaussian_kl(mu, logvar).sum(1)
    kl_sum = torch.zeros(batch, device=x.device)
    log_sum = torch.full((batch,), -math.inf, device=x.device)
    recon_sum = torch.zeros(batch, device=x.device)
    chunk = max(1, max_decodes // batch)
    std = torch.exp(0.5 * logvar)
    done = 0
    while done < k:
        count = min(chunk, k - done)
        # One draw per sample index, so the noise (and the figure) does not depend on chunking.
        eps = torch.stack(
            [
                torch.randn((batch, latent), generator=generator, device=x.device)
                for _ in range(count)
            ]
        )
        z = mu + std * eps
        decoded = model.decode_fast(z.reshape(count * batch, latent))
        targets = x.unsqueeze(0).expand(count, *x.shape).reshape(count * batch, *x.shape[1:])
        sigma = model.likelihood_sigma(gaussian_sigma)
        log_px = log_likelihood(decoded, targets, model.spec.likelihood, sigma).view(count, batch)
        log_weights = log_importance_weights(log_px, z, mu, logvar, model.log_prior)
        log_sum = torch.logaddexp(log_sum, torch.logsumexp(log_weights, dim=0))
        recon_sum -= log_px.sum(0)
        kl_sum += (log_px - log_weights).sum(0)
        done += count
    recon = recon_sum / k
    if model.prior is not None:
        kl = kl_sum / k
    return {
        "nll": -(log_sum - math.log(k)),
        "recon": recon,
        "kl": kl,
        "neg_elbo": recon + kl,
        "mu": mu,
    }


@torch.no_grad()
def score_images(
    model: VAE,
    images: torch.Tensor,
    k: int,
    seed: int,
    batch_size: int = 100,
    gaussian_sigma: float = 0.1,
    max_decodes: int = DEFAULT_MAX_DECODES,
    reporter: Reporter | None = None,
) -> ImageScores:
    """Score float images in [0, 1] (already binarized where the protocol says so)."""
    model.eval()
    reporter = reporter or Reporter()
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    parts: dict[str, list[torch.Tensor]] = {
        "nll": [],
        "recon": [],
        "kl": [],
        "neg_elbo": [],
        "mu": [],
        "se": [],
    }
    gaussian = model.spec.likelihood == "mse"
    for begin in range(0, images.shape[0], batch_size):
        x = images[begin : begin + batch_size].to(device)
        scores = score_batch(model, x, k, generator, gaussian_sigma, max_decodes)
        for key in ("nll", "recon", "kl", "neg_elbo", "mu"):
            parts[key].append(scores[key].double().cpu())
        if gaussian:
            parts["se"].append((model.reconstruct(x) - x).pow(2).flatten(1).mean(1).double().cpu())
        reporter.task_advanced(x.shape[0])
    return ImageScores(
        neg_elbo=torch.cat(parts["neg_elbo"]),
        recon=torch.cat(parts["recon"]),
        kl=torch.cat(parts["kl"]),
        nll=None if gaussian else torch.cat(parts["nll"]),
        squared_error=torch.cat(parts["se"]) if gaussian else None,
        posterior_means=torch.cat(parts["mu"]),
    )


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
) -> tuple[dict[str, Any], ImageScores, torch.Tensor]:
    """Evaluate on uint8 images under the stated protocol, ``repeats`` times with seeds
    ``seed .. seed + repeats - 1``. Returns (summary, first repeat's per-image scores, the uint8
    images scored in the first repeat)."""
    reporter = reporter or Reporter()
    likelihood = model.spec.likelihood
    if likelihood == "mse":
        binarize = "none"
    dimensions = model.spec.channels * model.spec.height * model.spec.width
    per_repeat: dict[str, list[float]] = {}
    first: ImageScores | None = None
    first_images = images
    started = time.perf_counter()
    reporter.task_started(f"evaluate (k={k})", images.shape[0] * repeats)
    try:
        for repeat in range(repeats):
            repeat_seed = seed + repeat
            scored = prepare_evaluation_images(images, binarize, repeat_seed)
            scores = score_images(
                model,
                to_float(scored),
                k,
                repeat_seed,
                batch_size,
                gaussian_sigma,
                reporter=reporter,
            )
            figures = {
                "neg_elbo": float(scores.neg_elbo.mean()),
                "recon": float(scores.recon.mean()),
                "kl": float(scores.kl.mean()),
            }
            if scores.nll is not None:
                figures["nll"] = float(scores.nll.mean())
                figures["nll_bits_per_dim"] = float(
                    nats_to_bits_per_dim(figures["nll"], dimensions)
                )
                figures["neg_elbo_bits_per_dim"] = float(
                    nats_to_bits_per_dim(figures["neg_elbo"], dimensions)
                )
            if scores.squared_error is not None:
                figures["mse"] = float(scores.squared_error.mean())
            _record(figures, per_repeat)
            if first is None:
                first, first_images = scores, scored
    finally:
        reporter.task_ended()
    assert first is not None
    summary: dict[str, Any] = {
        "protocol": protocol_text(likelihood, binarize, sigma_description(model, gaussian_sigma)),
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
    model: VAE, images: torch.Tensor, batch_size: int = 100
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per image (float images in [0, 1]): the model's own loss on the decoder's output at the
    posterior mean (the code, for an autoencoder): bce the summed binary cross-entropy, mse the
    summed squared error, ssim / ms-ssim (1 - SSIM) times the values per image; higher means
    worse. Second: the SSIM (MS-SSIM) itself for perceptual models, else None."""
    model.eval()
    device = next(model.parameters()).device
    likelihood = model.spec.likelihood
    errors, similarities = [], []
    for begin in range(0, images.shape[0], batch_size):
        x = images[begin : begin + batch_size].to(device)
        decoded = model.decode_fast(model.encode(x)[0])
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
) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor]:
    """The figures of a model without a likelihood, on uint8 images: its reconstruction error
    (see :func:`reconstruction_errors`; and the SSIM for perceptual models), over ``repeats``
    binarizations. Returns (summary, first repeat's per-image errors, the uint8 images scored)."""
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
            model.encode(x.to(device))[0].cpu()
            for x in evaluation_batches(ImageSet(images), batch_size)
        ]
    reporter.task_started("evaluate (reconstruction)", images.shape[0] * repeats)
    try:
        for repeat in range(repeats):
            scored = prepare_evaluation_images(images, binarize, seed + repeat)
            errors, similarity = reconstruction_errors(model, to_float(scored), batch_size)
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


def evaluate_checkpoint(
    checkpoint: str | Path,
    *,
    k: int = 1000,
    repeats: int = 1,
    binarize_test: str | None = None,
    dataset: str | None = None,
    input_path: Path | None = None,
    data_dir: str | None = None,
    download: bool = True,
    limit: int | None = None,
    batch_size: int = 100,
    seed: int = 0,
    device: str = "auto",
    ood_dataset: str | None = None,
    histogram: Path | None = None,
    reporter: Reporter | None = None,
    invert: bool = False,
) -> dict[str, Any]:
    """Every figure of ``evaluate``: ELBO, its parts, IW NLL, bits/dim, active units, and with
    ``ood_dataset`` the outlier-detection metrics (plus a histogram PNG). JSON-ready except
    ``result["ood"]["per_image"]``, the per-image scores as arrays (see vae.ood.scores_csv).

    ``invert``: the evaluated images (``input_path`` or the test split), not the outlier set,
    have every pixel ``x`` replaced by ``255 - x``; images mostly on light backgrounds for a
    model that draws dark ones are named in one warning (see vae.backgrounds)."""
    reporter = reporter or Reporter()
    # Weights, metadata and sha256 from one read of the file: the JSON names the bytes scored.
    model, loaded = load_checkpoint(checkpoint, resolve_device(device))
    metadata = loaded.header.metadata
    # Images shaped as the model takes them (its spec, checked against the data section).
    data_info = data_for_model(metadata, model.spec)
    if binarize_test is None:
        binarize_test = "static" if data_info.get("binarize", "none") != "none" else "none"
    sigma = _gaussian_sigma(checkpoint, metadata)
    load = dict(data_dir=data_dir, download=download, limit=limit)
    images = load_images_for_model(
        data_info, dataset=dataset, input_path=input_path, invert=invert, **load
    )
    if warning := background_warning(model, images, invert):
        reporter.warning(warning)
    # Loaded before the long in-distribution pass, so that a bad name fails at once.
    ood_images = (
        None if ood_dataset is None else load_outlier_images(data_info, ood_dataset, **load)
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
    summary, scores, scored = evaluate(model, images, repeats=repeats, reporter=reporter, **options)
    result: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": loaded.sha256,
        "dataset": str(input_path) if input_path is not None else (dataset or data_info["dataset"]),
        "inverted": invert,
        **summary,
    }
    if ood_images is not None:
        ood_run = evaluate(model, ood_images, reporter=reporter, **options)
        report = _outlier_report((summary, scores, scored), ood_run, scored_by_likelihood)
        histogram_path = None
        if histogram is not None:
            histogram_path = str(
                save_score_histograms(report, result["dataset"], ood_dataset, histogram)
            )
        result["ood"] = {
            "in_dataset": result["dataset"],
            "out_dataset": ood_dataset,
            "num_in": int(images.shape[0]),
            "num_out": int(ood_images.shape[0]),
            "protocol": f"{ood_run[0]['protocol']}; k={k}; seed {seed}; OOD is the positive class",
            "scores": report["metrics"],
            "out_metrics": ood_run[0]["metrics"],
            "histogram": histogram_path,
            # Per-image values, for the scores file beside the JSON (not part of the JSON).
            "per_image": report["scores"],
        }
    return result


def _gaussian_sigma(checkpoint: str | Path, metadata: dict[str, Any]) -> float:
    """The Gaussian likelihood's sigma the checkpoint was trained with (0.1 when it has none)."""
    likelihood = metadata.get("likelihood")
    sigma = (likelihood.get("gaussian_sigma") if isinstance(likelihood, dict) else None) or 0.1
    if not isinstance(sigma, int | float) or isinstance(sigma, bool) or not 0 < sigma < math.inf:
        raise CheckpointError(
            f"{checkpoint} has corrupt vae metadata (likelihood gaussian_sigma is {str(sigma)[:20]})"
        )
    return float(sigma)


def _outlier_report(
    inside: tuple[Any, Any, Any], outside: tuple[Any, Any, Any], scored_by_likelihood: bool
) -> dict[str, Any]:
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
