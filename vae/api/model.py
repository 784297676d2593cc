"""A trained model from Python: :func:`load` any checkpoint, then sample, encode, decode, score
and save it with :class:`Model`'s methods, each computing what the matching command computes.

Images are taken as given: uint8 (divided by 255) or float in [0, 1], shaped [N, C, H, W], never
binarized unless asked; ``binarize=True`` draws them once with ``evaluate``'s fixed seed, as
``evaluate`` does for a model trained on binarized images.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vae import __version__
from vae.api.arguments import (
    DEFAULT_BATCH_SIZE,
    class_labels,
    latent_codes,
    model_images,
    samples_value,
    seed_value,
    temperature_value,
    whole_number,
)
from vae.checkpoint import FORMAT_VERSION, read_header, save_checkpoint
from vae.checkpoint.locate import locate_checkpoint
from vae.errors import ConfigError, VAEError
from vae.evaluation import (
    EVALUATION_SEED,
    has_likelihood,
    reconstruction_errors,
    recorded_gaussian_sigma,
    score_images,
)
from vae.fileio import check_output_file
from vae.model import VAE
from vae.sampling import sample_as_generate
from vae.spec import decode_batch_size
from vae.trained_model import TrainedModel, load_trained_model

# evaluate's default number of importance samples (--k).
DEFAULT_K = 1000


@dataclass(frozen=True)
class Posterior:
    """What :meth:`Model.encode` returns, per image: the posterior's ``mean`` [N, latent_dim]
    and its ``variance`` (diagonal, same shape) for a VAE; an autoencoder's code is a point,
    its ``mean``, and its ``variance`` is None."""

    mean: torch.Tensor
    variance: torch.Tensor | None


@dataclass(frozen=True)
class Elbo:
    """What :meth:`Model.elbo` returns, per image, in nats (float64, on the CPU):
    ``neg_elbo`` = ``reconstruction`` + ``kl``, the KL with the model's own prior."""

    neg_elbo: torch.Tensor
    reconstruction: torch.Tensor
    kl: torch.Tensor


class Model:
    """A trained model of any family (a VAE with either prior, an autoencoder), as
    :func:`load` returns it. Its methods compute without gradients; :attr:`module` is the
    ``torch.nn.Module`` itself, for work of your own."""

    def __init__(self, trained: TrainedModel, path: Path | None = None) -> None:
        """Wrap a model loaded by :func:`vae.trained_model.load_trained_model`; use
        :func:`load` instead."""
        self._trained = trained
        self.path = path

    # --- what it is -----------------------------------------------------------------------

    @property
    def module(self) -> VAE:
        """The torch module (``vae.model.VAE``): encoder, decoder and prior parameters."""
        return self._trained.model

    @property
    def metadata(self) -> dict[str, Any]:
        """The checkpoint's vae metadata (what ``info`` shows): model, data, training facts."""
        return self._trained.metadata

    @property
    def sha256(self) -> str | None:
        """The sha256 of the file the model was read from (the bytes ``evaluate`` names)."""
        return self._trained.sha256

    @property
    def family(self) -> str:
        """The model family: ``vae`` or ``ae`` (an autoencoder)."""
        return self.module.family.name

    @property
    def prior(self) -> str | None:
        """The prior samples are drawn from: ``standard`` N(0, I), ``mog`` (a learned mixture) or
        ``vamp`` (the VampPrior) for a VAE; None for an autoencoder, which samples a Gaussian
        fitted to its codes."""
        return self.module.family.describe(self.module.spec)["prior"]

    @property
    def classes(self) -> tuple[str, ...]:
        """A conditional model's (``cvae``) class names, label i is ``classes[i]``: its methods
        take ``labels`` as these names or their indices. Empty for any other model."""
        return tuple(self.module.spec.classes)

    @property
    def likelihood(self) -> str:
        """The reconstruction term it was trained with: ``bce``, ``mse``, ``ssim`` or
        ``ms-ssim``."""
        return self.module.spec.likelihood

    @property
    def latent_dim(self) -> int:
        """Dimensions of the latent space."""
        return self.module.spec.latent_dim

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of the images it takes and makes."""
        spec = self.module.spec
        return spec.channels, spec.height, spec.width

    @property
    def device(self) -> torch.device:
        """The device its weights are on."""
        return next(self.module.parameters()).device

    def __repr__(self) -> str:
        where = f" from {self.path}" if self.path is not None else ""
        channels, height, width = self.image_shape
        return (
            f"<vae.Model {self.family} latent_dim={self.latent_dim} prior={self.prior} "
            f"likelihood={self.likelihood} images={channels}x{height}x{width} on "
            f"{self.device}{where}>"
        )

    # --- drawing and coding -------------------------------------------------------------------

    def sample(
        self, n: int, *, seed: int = 0, temperature: float = 1.0, labels: Any = None
    ) -> torch.Tensor:
        """``n`` images [n, C, H, W] in [0, 1], on the model's device, drawn from its prior as
        ``generate --seed SEED --temperature T --device D`` draws them, bit for bit (on the CPU
        decoded by NumPy, as ``generate`` does there). ``temperature`` scales the prior's
        spread. A conditional model draws them as ``labels``: one class (a name or an index,
        ``generate --label``) or one for each; by default sample i as class i % the number of
        classes, as ``generate`` does."""
        count = whole_number("n", n)
        chosen = class_labels(labels, self.module.spec, count, required=False)
        return sample_as_generate(
            self.module,
            count,
            seed_value(seed),
            temperature_value(temperature),
            None if chosen is None else chosen.numpy(),
        )

    @torch.no_grad()
    def encode(self, images: Any, *, labels: Any = None) -> Posterior:
        """The posterior of each image (uint8, or float in [0, 1]; [N, C, H, W]), on the
        model's device: means and variances for a VAE, the code (variance None) for an
        autoencoder. A conditional model's of each image given its class (``labels``: one
        class for all, or one per image; needed)."""
        x = model_images(images, self.module.spec)
        y = class_labels(labels, self.module.spec, len(x))
        means, logvars = [], []
        for batch, classes in self._batches(x, y):
            mean, logvar = self.module.encode(batch, classes)
            means.append(mean)
            if logvar is not None:
                logvars.append(logvar.exp())
        mean = torch.cat(means) if means else torch.empty(0, self.latent_dim, device=self.device)
        if not self.module.family.stochastic:
            return Posterior(mean, None)
        variance = torch.cat(logvars) if logvars else torch.empty_like(mean)
        return Posterior(mean, variance)

    def decode(self, latents: Any, *, labels: Any = None) -> torch.Tensor:
        """Images [N, C, H, W] in [0, 1] (the likelihood's mean: Bernoulli probabilities for
        bce) for latent codes [N, latent_dim], on the model's device; a conditional model's
        as the classes ``labels`` (one for all, or one per code; needed)."""
        codes = latent_codes(latents, self.module.spec)
        return self.module.decode_images(codes, class_labels(labels, self.module.spec, len(codes)))

    def reconstruct(self, images: Any, *, labels: Any = None) -> torch.Tensor:
        """``decode(encode(images).mean)``: each image decoded from its posterior mean, as
        ``inference`` shows them (a conditional model's with ``labels`` both ways)."""
        return self.decode(self.encode(images, labels=labels).mean, labels=labels)

    # --- scores -----------------------------------------------------------------------------

    def elbo(
        self,
        images: Any,
        *,
        k: int = DEFAULT_K,
        seed: int = EVALUATION_SEED,
        binarize: bool = False,
        batch_size: int = DEFAULT_BATCH_SIZE,
        labels: Any = None,
    ) -> Elbo:
        """Per image: -ELBO, its reconstruction term averaged over ``k`` posterior samples, and
        the KL with the model's own prior (analytic for N(0, I); for a mixture prior the
        average of log q(z|x) - log p(z) over the same samples): ``evaluate``'s figures with
        ``--k K --seed SEED --batch-size B`` on these images, whose means are its ``neg_elbo``,
        ``recon`` and ``kl``. ``binarize``: draw the images once with evaluate's fixed seed
        first (evaluate's protocol for bce models). A conditional model's of each image given
        its class (``labels``, needed): -ELBO(x|y), evaluate's ``neg_elbo_given_label``."""
        self._needs_likelihood("elbo")
        scores = self._scores(images, k, seed, binarize, batch_size, labels)
        return Elbo(scores.neg_elbo, scores.recon, scores.kl)

    def log_likelihood(
        self,
        images: Any,
        *,
        k: int = DEFAULT_K,
        seed: int = EVALUATION_SEED,
        binarize: bool = False,
        batch_size: int = DEFAULT_BATCH_SIZE,
        labels: Any = None,
    ) -> torch.Tensor:
        """The importance-weighted estimate of log p(x) from ``k`` posterior samples, per image
        in nats (float64, CPU): ``evaluate``'s ``nll`` is minus its mean, for the same
        ``k``, ``seed``, ``batch_size`` and images. Only for the Bernoulli likelihood (bce): a
        Gaussian's density of continuous values is no likelihood of 8-bit images, and
        ``evaluate`` reports none either. A conditional model gives log p(x | y) of each image
        given its class (``labels``, needed): evaluate's ``nll_given_label``."""
        self._needs_likelihood("log_likelihood")
        scores = self._scores(images, k, seed, binarize, batch_size, labels)
        if scores.nll is None:
            raise VAEError(
                f"log_likelihood: a {self.likelihood} model's density of continuous pixel "
                "values is no likelihood of the images without a stated dequantization "
                "(evaluate reports none); use elbo"
            )
        return -scores.nll

    def reconstruction_error(
        self,
        images: Any,
        *,
        binarize: bool = False,
        batch_size: int = DEFAULT_BATCH_SIZE,
        labels: Any = None,
    ) -> torch.Tensor:
        """Per image (float64, CPU): the model's own loss on its reconstruction from the
        posterior mean (summed binary cross-entropy for bce, summed squared error for mse,
        (1 - SSIM) x values for ssim and ms-ssim): what ``evaluate`` reports for a model
        without a likelihood (an autoencoder, an SSIM-trained VAE), defined for every model
        (a conditional model's with ``labels``, needed)."""
        x = model_images(images, self.module.spec, binarize)
        y = class_labels(labels, self.module.spec, len(x))
        size = whole_number("batch_size", batch_size)
        return reconstruction_errors(self.module, x, size, y)[0]

    # --- saving -----------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write the model as a checkpoint at ``path`` (safetensors, written atomically, with
        its metadata: every command and :func:`load` read it); returns the path. Only a vae
        checkpoint (or an empty file) there is replaced; anything else is refused, untouched.
        Optimizer state is not saved: it is a model file, not a run to resume."""
        target = Path(path)
        check_output_file(target, "path")
        if target.is_file() and target.stat().st_size and not _is_checkpoint(target):
            raise VAEError(
                f"refusing to replace {target}: it is not a vae checkpoint (only checkpoints "
                "are replaced); choose another path or move the file away"
            )
        metadata = copy.deepcopy(self.metadata)
        # Its weights are written under today's names, whatever format it was read from.
        metadata.update(format_version=FORMAT_VERSION, package_version=__version__)
        metadata["parameter_count"] = self.module.parameter_count()
        save_checkpoint(target, self.module, metadata)
        return target

    def to(self, device: str) -> Model:
        """The model moved to ``device`` (``auto``, ``cpu``, ``cuda``, ``mps``); itself."""
        from vae.device import resolve_device

        self.module.to(resolve_device(device))
        return self

    # --- helpers ------------------------------------------------------------------------------

    def _needs_likelihood(self, what: str) -> None:
        if not has_likelihood(self.module):
            family = self.module.family
            which = (
                f"an {family.label}"
                if not family.has_likelihood
                else f"a {self.likelihood.upper()}-trained model"
            )
            raise VAEError(
                f"{what}: {which} has no likelihood, so no ELBO or NLL; use "
                "reconstruction_error, as evaluate does"
            )

    def _scores(
        self, images: Any, k: int, seed: int, binarize: bool, batch_size: int, labels: Any
    ) -> Any:
        """``score_images`` on the images, as ``evaluate_images`` calls it."""
        x = model_images(images, self.module.spec, binarize)
        y = class_labels(labels, self.module.spec, len(x))
        sigma = recorded_gaussian_sigma(self.path or "the model", self.metadata)
        return score_images(
            self.module,
            x,
            samples_value(k),
            seed_value(seed),
            whole_number("batch_size", batch_size),
            sigma,
            labels=y,
        )

    def _batches(
        self, x: torch.Tensor, labels: torch.Tensor | None
    ) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """``x`` (and its ``labels``) in slices that bound the layer outputs held at once, on
        the model's device."""
        step = decode_batch_size(self.module.spec)
        return [
            (
                x[start : start + step].to(self.device),
                None if labels is None else labels[start : start + step].to(self.device),
            )
            for start in range(0, len(x), step)
        ]


def _is_checkpoint(path: Path) -> bool:
    """Whether ``path`` holds a vae checkpoint's header (an earlier save may be replaced)."""
    try:
        read_header(path)
    except VAEError:
        return False
    return True


def load(checkpoint: str | Path, device: str = "cpu") -> Model:
    """The model of a vae checkpoint (a ``.safetensors`` file, a run folder: its
    ``checkpoint_best.safetensors``, or ``hf://OWNER/NAME[@REVISION][/FILE.safetensors]`` on the
    Hugging Face Hub), any family, on ``device`` (``auto``: an accelerator
    when present). Raises :class:`vae.VAEError` (a CheckpointError) with the commands' one-line
    message for a missing, foreign, damaged or hostile file."""
    if not isinstance(checkpoint, str | os.PathLike):
        raise ConfigError(
            f"invalid value for checkpoint: a {type(checkpoint).__name__} (expected a path)"
        )
    path = locate_checkpoint(checkpoint)
    return Model(load_trained_model(path, device), path)
