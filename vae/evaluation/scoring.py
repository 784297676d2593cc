"""Scoring of batches: the one-sample ELBO that validation reports, and the k-sample figures of
each image that ``evaluate`` reports (-ELBO and its parts, the importance-weighted NLL)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from vae.data import ImageSet, labelled_batches
from vae.evaluation.progress import Resumed, score_keys
from vae.model import VAE
from vae.objectives import elbo_terms, log_likelihood
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
    """Negative ELBO, reconstruction and KL in nats per image, with beta = 1 and one sample (a
    conditional model's with each image's label: of x given it).

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
    for x, labels in labelled_batches(images, batch_size):
        noise = None
        if model.family.stochastic:
            noise = torch.randn(
                (x.shape[0], model.latent_dim), generator=generator, device=x.device
            )
        decoded, mu, logvar = model.evaluation_pass(x, noise, labels)
        sigma = model.likelihood_sigma(gaussian_sigma)
        kl = model.kl_term(mu, logvar, noise)
        terms = elbo_terms(decoded, x, mu, logvar, model.spec.likelihood, 1.0, 0.0, sigma, kl=kl)
        n = x.shape[0]
        totals["neg_elbo"] += terms.neg_elbo.item() * n
        totals["recon"] += terms.recon.item() * n
        totals["kl"] += terms.kl.item() * n
        # The KL's parts where the family has some (a hierarchy's groups: kl_group1...).
        for key, part in model.family.kl_parts(model, mu, logvar, noise).items():
            totals[key] = totals.get(key, 0.0) + part.mean().item() * n
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


# Images decoded at once: bounds memory whatever k and batch size are. On a CPU a small chunk
# stays in cache: 512 ran 1.26x (VAE) and 1.84x (hierarchical VAE) as fast as 4,096 (benchmarks/
# README.md, "Figures behind the code"); an accelerator wants large ones. The figures do not
# depend on it (the noise is drawn per sample index) beyond float rounding.
CPU_MAX_DECODES = 512
DEFAULT_MAX_DECODES = 4_096


def max_decodes_for(device: torch.device) -> int:
    """Decodes per chunk of importance samples on ``device``."""
    return CPU_MAX_DECODES if device.type == "cpu" else DEFAULT_MAX_DECODES


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
    max_decodes: int | None = None,
    labels: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """-ELBO (with a k-sample reconstruction term and the analytic KL; a learned prior's KL
    as the average of log q(z|x) - log p(z) over the same k samples) and the k-sample
    importance-weighted NLL of each image in ``x``, streaming over chunks of samples. A
    conditional model encodes and decodes with ``labels``: its figures are of x given them.
    ``max_decodes``: samples decoded at once, over the batch (None: ``max_decodes_for`` the
    images' device)."""
    posterior = model.importance_posterior(x, labels)
    batch, latent = x.shape[0], model.latent_dim
    kl = posterior.closed_form_kl
    kl_sum = torch.zeros(batch, device=x.device)
    log_sum = torch.full((batch,), -math.inf, device=x.device)
    recon_sum = torch.zeros(batch, device=x.device)
    chunk = max(1, (max_decodes or max_decodes_for(x.device)) // batch)
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
        decoded, log_p, log_q = posterior.samples(eps)
        targets = x.unsqueeze(0).expand(count, *x.shape).reshape(count * batch, *x.shape[1:])
        sigma = model.likelihood_sigma(gaussian_sigma)
        log_px = log_likelihood(decoded, targets, model.spec.likelihood, sigma).view(count, batch)
        log_weights = log_px + log_p - log_q
        log_sum = torch.logaddexp(log_sum, torch.logsumexp(log_weights, dim=0))
        recon_sum -= log_px.sum(0)
        kl_sum += (log_px - log_weights).sum(0)
        done += count
    recon = recon_sum / k
    if kl is None:  # no closed form (a learned prior, a hierarchy): the samples' average
        kl = kl_sum / k
    return {
        "nll": -(log_sum - math.log(k)),
        "recon": recon,
        "kl": kl,
        "neg_elbo": recon + kl,
        "mu": posterior.means,
    }


@torch.no_grad()
def evaluate_iwae_bound(
    model: VAE,
    images: ImageSet,
    k: int,
    gaussian_sigma: float = 0.1,
    batch_size: int = 1000,
    seed: int = EVALUATION_SEED,
) -> float:
    """The k-sample -IWAE bound in nats per image, averaged over ``images``: what validation
    reports for a run that trains it. The figure ``evaluate --k`` estimates the NLL with
    (``score_batch``'s), with noise from its own generator of fixed seed, so that it is the
    same function of the weights at every epoch and disturbs no training random stream."""
    was_training = model.training
    model.eval()
    generator = torch.Generator(device=images.images.device).manual_seed(seed)
    total, count = 0.0, 0
    for x, labels in labelled_batches(images, batch_size):
        scores = score_batch(model, x, k, generator, gaussian_sigma, labels=labels)
        total += scores["nll"].double().sum().item()
        count += x.shape[0]
    model.train(was_training)
    if count == 0:
        raise ValueError("cannot evaluate on an empty set of images")
    return total / count


@torch.no_grad()
def score_images(
    model: VAE,
    images: torch.Tensor,
    k: int,
    seed: int,
    batch_size: int = 100,
    gaussian_sigma: float = 0.1,
    max_decodes: int | None = None,
    reporter: Reporter | None = None,
    labels: torch.Tensor | None = None,
    resumed: Resumed | None = None,
    on_batch: Callable[[dict[str, list[torch.Tensor]], int, torch.Generator], None] | None = None,
) -> ImageScores:
    """Score float images in [0, 1] (already binarized where the protocol says so); a
    conditional model with their ``labels``. ``resumed``: the scores of the first images and
    the noise generator's state after them, from an interrupted run (vae.evaluation.progress),
    so that the rest is scored as an uninterrupted run scores it; ``on_batch`` is told the
    scores so far (a list of batches per key), the images done and the generator after each
    batch."""
    model.eval()
    reporter = reporter or Reporter()
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    gaussian = model.spec.likelihood == "mse"
    keys = score_keys(model.spec.likelihood)
    parts: dict[str, list[torch.Tensor]] = {key: [] for key in keys}
    start = 0
    if resumed is not None and resumed.generator_state is not None:
        for key in keys:
            done = resumed.current.get(key)
            if done is not None:
                parts[key].append(done)
        generator.set_state(resumed.generator_state)
        start = resumed.done
        reporter.task_advanced(start)
    for begin in range(start, images.shape[0], batch_size):
        x = images[begin : begin + batch_size].to(device)
        y = None if labels is None else labels[begin : begin + batch_size].to(device)
        scores = score_batch(model, x, k, generator, gaussian_sigma, max_decodes, y)
        scores["posterior_means"] = scores["mu"]
        if gaussian:
            error = (model.reconstruct(x, y) - x).pow(2).flatten(1).mean(1)
            scores["squared_error"] = error
        for key in keys:
            parts[key].append(scores[key].double().cpu())
        reporter.task_advanced(x.shape[0])
        if on_batch is not None:
            on_batch(parts, begin + x.shape[0], generator)
    return ImageScores(
        neg_elbo=torch.cat(parts["neg_elbo"]),
        recon=torch.cat(parts["recon"]),
        kl=torch.cat(parts["kl"]),
        nll=None if gaussian else torch.cat(parts["nll"]),
        squared_error=torch.cat(parts["squared_error"]) if gaussian else None,
        posterior_means=torch.cat(parts["posterior_means"]),
    )
