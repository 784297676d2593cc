"""VAE architectures (mlp and conv) for any image size and channel count, built from the layer
plan in ``vae.plan``."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from vae.errors import VAEError
from vae.limits import LOGVAR_MAX, LOGVAR_MIN
from vae.models import family_of
from vae.models.priors.mog import mixture_module
from vae.network import Network
from vae.plan import conv_feature_sizes, layer_plan
from vae.spec import ModelSpec, check_spec, decode_batch_size

__all__ = [
    "LOGVAR_MAX",
    "LOGVAR_MIN",
    "VAE",
    "MixturePrior",
    "ModelSpec",
    "build_model",
    "conv_feature_sizes",
]

# A learned Gaussian sigma below 1/1000 of the pixel range would reward memorising pixel values.
SIGMA_MIN = 1e-3


# The mixture prior's parameters as a torch module (defined in the prior's own module).
MixturePrior = mixture_module()


class VAE(nn.Module):
    """A model of any family (:mod:`vae.models`): the encoder and decoder of its layer plan, the
    parameters of its latent distribution (a mixture prior's ``prior.*``, an autoencoder's
    fitted Gaussian ``fitted_*``) and, for a learned Gaussian sigma, ``log_sigma``.

    What differs between families (how the encoder's output is read, the latent the decoder
    sees, the KL term, what samples are drawn from) is asked of ``family`` and ``latent_prior``.
    ``decode`` returns logits for the Bernoulli likelihood (``bce``) and means in [0, 1]
    otherwise; ``decoded_to_image`` turns either into pixel values in [0, 1].
    """

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        check_spec(spec)
        self.spec = spec
        self.family = family_of(spec)
        self.latent_prior = self.family.prior(spec)
        plan = layer_plan(spec)
        self.encoder = Network(plan.encoder)
        self.decoder = Network(plan.decoder)
        if spec.learned_sigma:
            self.log_sigma = nn.Parameter(torch.full((spec.channels,), math.log(0.1)))
        # A mixture prior's parameters are the submodule ``prior`` (None for the others).
        self.prior: nn.Module | None = None
        self.latent_prior.attach(self, spec)

    def likelihood_sigma(self, fixed: float) -> float | torch.Tensor:
        """The Gaussian likelihood's sigma: ``fixed``, or the learned one per channel, shaped
        [1, channels, 1, 1] and kept at or above SIGMA_MIN."""
        if not self.spec.learned_sigma:
            return fixed
        return self.log_sigma.clamp(min=math.log(SIGMA_MIN)).exp().view(1, -1, 1, 1)

    @property
    def latent_dim(self) -> int:
        return self.spec.latent_dim

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) of latents ``[..., latent_dim]`` under this model's prior."""
        return self.latent_prior.log_density(self, z)

    def kl_term(
        self, mu: torch.Tensor, logvar: torch.Tensor | None, noise: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(KL(q(z|x) || p(z)) per image, per dimension where it splits so, else None), with
        this model's own prior (at the posterior sample ``noise`` where it is estimated)."""
        return self.family.kl_term(self, mu, logvar, noise)

    def condition(self, labels: torch.Tensor | None) -> torch.Tensor | None:
        """What a conditional model's networks take beside their inputs: the one-hot vectors
        [N, classes] of class indices ``labels`` [N] (an index out of range gives a row of
        zeros: the commands check labels where they read them), or ``labels`` itself when it
        is already [N, classes] (a mix of classes, as an interpolation between two walks).
        None for a model that takes no label, whatever ``labels`` is."""
        if not self.family.conditional:
            return None
        if labels is None:
            raise VAEError(
                f"a {self.family.label} encodes and decodes each image with its class label, "
                "and none was given"
            )
        classes = len(self.spec.classes)
        if labels.dim() == 2:
            return labels.float()
        # A comparison, not F.one_hot: no device synchronisation to check the range each step.
        return (labels.long()[:, None] == torch.arange(classes, device=labels.device)).float()

    def encode(
        self, x: torch.Tensor, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Posterior mean and log-variance (clamped to a numerically safe range); an
        autoencoder's code and None. ``labels``: the images' classes, which a conditional
        model needs (see :meth:`condition`) and any other ignores."""
        return self.family.split_encoding(self.encoder(x, self._on(x, labels)))

    def _on(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor | None:
        """The condition of ``labels`` on ``x``'s device (None without one)."""
        condition = self.condition(labels)
        return None if condition is None else condition.to(x.device)

    def reparameterize(
        self,
        mu: torch.Tensor,
        logvar: torch.Tensor | None,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The latent the decoder sees: z = mu + sigma * eps with eps ~ N(0, I) (``noise`` when
        given, else drawn from ``generator``) for a VAE, the code itself for an autoencoder."""
        return self.family.posterior_sample(mu, logvar, generator, noise)

    def decode(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (bce) or means in [0, 1] (mse, ssim, ms-ssim), shaped like the images;
        ``labels`` as for :meth:`encode`."""
        out = self.decoder(z, self._on(z, labels))
        return out if self.spec.likelihood == "bce" else torch.sigmoid(out)

    def decode_fast(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """``decode``'s values (to float rounding) by the decoder's evaluation arrangement
        (``Network.forward_for_evaluation``): what importance-weighted evaluation, which decodes k
        samples per image, and the pictures use."""
        out = self.decoder.forward_for_evaluation(z, self._on(z, labels))
        return out if self.spec.likelihood == "bce" else torch.sigmoid(out)

    def decoded_to_image(self, decoded: torch.Tensor) -> torch.Tensor:
        """Pixel values in [0, 1]: the Bernoulli mean for bce, the Gaussian mean for mse."""
        return torch.sigmoid(decoded) if self.spec.likelihood == "bce" else decoded

    @torch.no_grad()
    def decode_images(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images in [0, 1] [N, C, H, W] for codes ``z`` [N, latent_dim] (moved to the model's
        device; ``labels`` as for :meth:`encode`), decoded a bounded number at a time
        (``decode_batch_size``): what every picture uses, so a large grid of large images never
        needs all layer outputs at once."""
        device = next(self.parameters()).device
        step = decode_batch_size(self.spec)
        condition = self.condition(labels)
        parts = [
            self.decoded_to_image(
                self.decode_fast(
                    z[start : start + step].to(device),
                    None if condition is None else condition[start : start + step],
                )
            )
            for start in range(0, len(z), step)
        ]
        if not parts:
            shape = (0, self.spec.channels, self.spec.height, self.spec.width)
            return torch.empty(shape, device=device)
        return torch.cat(parts)

    def forward(
        self,
        x: torch.Tensor,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(decoded, mu, logvar) for one posterior sample per image (the code itself for an
        autoencoder, whose logvar is None); ``noise`` [batch, latent_dim] fixes the sample.
        ``noise`` [batch, K, latent_dim] asks for K samples of each image (the IWAE bound):
        ``decoded`` is then [batch, K, ...], in the one forward pass DDP and compile wrap."""
        condition = self._on(x, labels)
        mu, logvar = self.encode(x, condition)
        if noise is not None and noise.dim() == 3 and logvar is not None:
            z = self.reparameterize(mu.unsqueeze(1), logvar.unsqueeze(1), generator, noise)
            if condition is not None:  # each image's K samples decoded with its label
                condition = condition.repeat_interleave(z.shape[1], 0)
            decoded = self.decode(z.flatten(0, 1), condition)
            return decoded.view(*z.shape[:2], *decoded.shape[1:]), mu, logvar
        return self.decode(self.reparameterize(mu, logvar, generator, noise), condition), mu, logvar

    @torch.no_grad()
    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """n images in [0, 1] decoded from z ~ N(0, temperature^2 I) (a mixture prior: from
        the mixture, each component's spread scaled by the temperature; an autoencoder: from
        its fitted Gaussian, with the same temperature scaling); a conditional model decodes
        them as the classes ``labels`` [n] (default: label i % classes for sample i, as
        ``vae.sampling.sample_labels`` gives).

        The torch module's own sampler: it draws with torch's ``generator`` (on the generator's
        device, CPU by default) ``torch.randn(n, latent_dim)``, then, for a mixture prior,
        ``torch.rand(n)`` to pick each sample's component. The commands and the public API
        (``vae.Model.sample``) draw instead with NumPy (``vae.sampling.draw_latents``), the same
        on every device and without torch; both go through the prior's one transform
        (:meth:`vae.models.priors.LatentPrior.latents`).
        """
        device = next(self.parameters()).device
        noise_device = generator.device if generator is not None else torch.device("cpu")
        noise = torch.randn(n, self.latent_dim, generator=generator, device=noise_device)
        uniform = None
        if self.latent_prior.needs_uniform:
            uniform = torch.rand(n, generator=generator, device=noise_device).cpu().numpy()
        z = self.latent_prior.latents(
            self.prior_arrays(), noise.cpu().numpy(), uniform, temperature
        )
        if labels is None and self.family.conditional:
            labels = torch.arange(n) % len(self.spec.classes)
        # float32 after the float64 transform, as ``vae.sampling.prior_latents`` gives them.
        return self.decode_images(torch.from_numpy(z.astype(np.float32)).to(device), labels)

    def prior_arrays(self) -> dict[str, np.ndarray]:
        """The prior's tensors as NumPy arrays (``LatentPrior.tensor_prefixes``; none for N(0,
        I)): the ``weights`` its transform and ``vae.sampling.draw_latents`` take."""
        return {
            name: tensor.detach().cpu().numpy()
            for name, tensor in self.state_dict().items()
            if name.startswith(self.latent_prior.tensor_prefixes)
        }

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images in [0, 1] decoded from the posterior mean of each input (``labels`` as for
        :meth:`encode`: a conditional model encodes and decodes with them)."""
        mu, _ = self.encode(x, labels)
        return self.decode_images(mu, labels)

    @torch.no_grad()
    def fit_code_distribution(self, codes: torch.Tensor) -> None:
        """Refit what the family fits to the codes ``[N, latent_dim]`` of its training images
        (an autoencoder's sampling Gaussian; nothing for a VAE)."""
        self.family.after_epoch(self, codes)

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def evaluation_pass(
        self, x: torch.Tensor, noise: torch.Tensor | None, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``forward``'s (decoded, mu, logvar) for posterior ``noise`` [batch, latent_dim]
        (None: the posterior mean, an autoencoder's code), decoded by ``decode_fast``: the
        one-sample ELBO validation reports (``labels`` as for :meth:`encode`)."""
        mu, logvar = self.encode(x, labels)
        z = mu if noise is None else self.reparameterize(mu, logvar, noise=noise)
        return self.decode_fast(z, labels), mu, logvar

    def importance_posterior(
        self, x: torch.Tensor, labels: torch.Tensor | None = None
    ) -> GaussianPosterior:
        """q(z|x) of images ``x`` as importance-weighted evaluation draws from it (``labels``
        as for :meth:`encode`)."""
        return GaussianPosterior(self, x, labels)


class GaussianPosterior:
    """A diagonal Gaussian q(z|x) of a batch for importance sampling (``evaluate``): its means,
    its KL where analytic, and its samples' decodings and log densities."""

    def __init__(self, model: VAE, x: torch.Tensor, labels: torch.Tensor | None = None) -> None:
        self.model = model
        self.labels = labels
        self.mu, self.logvar = model.encode(x, labels)
        assert self.logvar is not None  # only a model with a likelihood is scored
        self.std = torch.exp(0.5 * self.logvar)

    @property
    def means(self) -> torch.Tensor:
        """Posterior means [batch, latent_dim] (active units are counted on them)."""
        return self.mu

    @property
    def closed_form_kl(self) -> torch.Tensor | None:
        """KL(q(z|x) || p(z)) per image where it is analytic (N(0, I)); None where ``evaluate``
        averages log q - log p over its samples instead (a learned prior)."""
        from vae.objectives import gaussian_kl

        if not self.model.latent_prior.per_dimension_kl:
            return None
        return gaussian_kl(self.mu, self.logvar).sum(1)

    def samples(self, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """For noise ``eps`` [count, batch, latent_dim]: the decodings of z = mu + sigma * eps
        [count * batch, ...] (sample-major), log p(z) and log q(z|x) [count, batch]."""
        from vae.objectives import diagonal_gaussian_log_density

        count, batch, latent = eps.shape
        z = self.mu + self.std * eps
        # Sample-major, as the targets: each chunk's samples repeat the labels in order.
        repeated = None if self.labels is None else self.labels.repeat(count)
        decoded = self.model.decode_fast(z.reshape(count * batch, latent), repeated)
        log_q = diagonal_gaussian_log_density(z, self.mu, self.logvar)
        return decoded, self.model.log_prior(z), log_q


def build_model(spec: ModelSpec) -> VAE:
    """The one place a model is constructed from a spec (training and checkpoint loading): the
    family's module (:meth:`vae.models.family.Family.build_module`), a VAE or a subclass."""
    module = family_of(spec).build_module(spec)
    assert isinstance(module, VAE)
    return module
