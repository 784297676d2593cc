"""``evaluate_checkpoint``: a checkpoint and its test images loaded, scored under the protocol
(and against an outlier set when asked), and assembled into the result ``evaluate`` reports."""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vae import interrupts
from vae.classes import check_image_labels
from vae.data import ImageSource, load_outlier_images
from vae.errors import CheckpointError, ConfigError, Interrupted, Setting
from vae.evaluation.outliers import outlier_section
from vae.evaluation.progress import EvaluationProgress, evaluation_identity
from vae.evaluation.protocols import evaluate_images, evaluate_reconstructions, has_likelihood
from vae.reporting import Reporter
from vae.trained_model import load_trained_model

if TYPE_CHECKING:
    from vae.model import VAE


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
    if ood_dataset is not None:
        _check_scores_outliers(model)
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
    scored_by_likelihood = has_likelihood(model)
    evaluate = _scorer(scored_by_likelihood, k)
    labels = test.labels if model.family.conditional else None
    progress, facts = None, {}
    if progress_file is not None and scored_by_likelihood:
        identity = evaluation_identity(
            trained.sha256, source.name(data_info), model, images, labels, k, repeats, options
        )
        progress, facts = _open_progress(Path(progress_file), identity, reporter)
    with _saying_where_progress_is(progress):
        inside = evaluate(
            model, images, repeats=repeats, reporter=reporter, labels=labels, **options,
            **({"progress": progress} if progress is not None else {}),
        )  # fmt: skip
    result: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": trained.sha256,
        "dataset": source.name(data_info),
        "inverted": source.invert,
        **inside[0],
        **facts,
    }
    if ood_images is not None:
        outside = evaluate(model, ood_images, reporter=reporter, **options)
        names = (result["dataset"], ood_dataset)
        result["ood"] = outlier_section(
            inside, outside, scored_by_likelihood, names=names, histogram=histogram, k=k, seed=seed
        )
    return result


def _check_scores_outliers(model: VAE) -> None:
    """Refuse an outlier evaluation of a model that gives no likelihood of an image alone."""
    if model.family.conditional:
        raise ConfigError(
            Setting("ood_dataset"),
            f" scores images by their likelihood alone, and a {model.family.label} gives only "
            "the likelihood of an image given its class: leave it out",
        )


def _scorer(scored_by_likelihood: bool, k: int) -> Callable[..., tuple[Any, ...]]:
    """What scores the images: the likelihood's evaluation with ``k`` importance samples, or,
    for a model without a likelihood (an autoencoder, an SSIM-trained VAE), its own
    reconstruction loss, the outlier score such models are compared with elsewhere."""
    if scored_by_likelihood:
        return functools.partial(evaluate_images, k=k)
    return evaluate_reconstructions


@contextlib.contextmanager
def _saying_where_progress_is(progress: EvaluationProgress | None) -> Iterator[None]:
    """A Ctrl-C (or SIGTERM) of an evaluation that kept progress ends with the line saying
    where it is; any other stop goes on as it is."""
    try:
        yield
    except KeyboardInterrupt:
        if progress is None or not progress.path.exists():
            raise
        raise Interrupted(
            f"{interrupts.interrupt_line()}; the evaluation's progress is kept in "
            f"{progress.path}: the same evaluation, run again, continues from it"
        ) from None


def _open_progress(
    path: Path, identity: dict[str, Any], reporter: Reporter
) -> tuple[EvaluationProgress, dict[str, Any]]:
    """The progress file of this evaluation (another evaluation's is refused here, before any
    work) and the facts the result adds: the file (not JSON: the caller removes it once the
    result is saved) and how many image scores came from it ("seconds" are this run's alone)."""
    progress = EvaluationProgress(path, identity)
    facts: dict[str, Any] = {"progress_file": path}
    resumed = progress.load()
    if resumed is not None:
        images = identity["num_images"]
        done = len(resumed.finished) * images + resumed.done
        facts["resumed_image_scores"] = done
        reporter.message(
            f"resuming from {path}: {done:,} of {identity['repeats'] * images:,} image scores "
            "already computed"
        )
    return progress, facts


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
