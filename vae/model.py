"""VAE architectures (mlp and conv) for any image size and channel count."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vae.objectives import LOG_2PI, standard_normal_log_density
from vae.spec import LOGVAR_MAX, LOGVAR_MIN, ModelSpec, check_spec, conv_feature_sizes

__all__ = [
    "LOGVAR_MAX",
    "LOGVAR_MIN",
    "VAE",
    "MixturePrior",
    "ModelSpec",
    "build_model",
    "conv_feature_sizes",
    "transposed_conv_as_matmul",
]

# A learned Gaussian sigma below 1/1000 of the pixel range would reward memorising pixel values.
SIGMA_MIN = 1e-3


class MLPEncoder(nn.Module):
    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = spec.channels * spec.height * spec.width
        for hidden in spec.hidden_sizes:
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, spec.encoder_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class MLPDecoder(nn.Module):
    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = spec.latent_dim
        for hidden in reversed(spec.decoder_hidden):
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        layers.append(nn.Linear(width, spec.channels * spec.height * spec.width))
        self.body = nn.Sequential(*layers)
        self.shape = (spec.channels, spec.height, spec.width)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z).view(z.shape[0], *self.shape)


class ConvEncoder(nn.Module):
    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = spec.channels
        for width in spec.conv_widths:
            layers += [nn.Conv2d(channels, width, 4, stride=2, padding=1), nn.ReLU()]
            channels = width
        layers.append(nn.Flatten())
        h, w = conv_feature_sizes(spec.height, spec.width, len(spec.conv_widths))[-1]
        features = channels * h * w
        for hidden in spec.hidden_sizes:
            layers += [nn.Linear(features, hidden), nn.ReLU()]
            features = hidden
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(features, spec.encoder_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class ConvDecoder(nn.Module):
    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        widths = list(spec.decoder_widths)
        sizes = conv_feature_sizes(spec.height, spec.width, len(widths))
        self.start_shape = (widths[-1], *sizes[-1])
        dense: list[nn.Module] = []
        features = spec.latent_dim
        for hidden in reversed(spec.decoder_hidden):
            dense += [nn.Linear(features, hidden), nn.ReLU()]
            features = hidden
        start = widths[-1] * sizes[-1][0] * sizes[-1][1]
        dense += [nn.Linear(features, start), nn.ReLU()]
        self.dense = nn.Sequential(*dense)
        layers: list[nn.Module] = []
        outputs = list(reversed(widths[:-1])) + [spec.channels]
        channels = widths[-1]
        for index, out_channels in enumerate(outputs):
            (in_h, in_w), (out_h, out_w) = sizes[-1 - index], sizes[-2 - index]
            # Undo floor(n / 2) exactly: odd sizes (7 -> 3 -> 7) need one extra row/column.
            padding = (out_h - 2 * in_h, out_w - 2 * in_w)
            layers.append(
                nn.ConvTranspose2d(
                    channels, out_channels, 4, stride=2, padding=1, output_padding=padding
                )
            )
            if index < len(outputs) - 1:
                layers.append(nn.ReLU())
            channels = out_channels
        self.deconv = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return self._inference_forward(z)
        features = self.dense(z).view(z.shape[0], *self.start_shape)
        return self.deconv(features)

    def _inference_forward(self, z: torch.Tensor) -> torch.Tensor:
        """The same function as training mode, arranged for the cost of importance-weighted
        evaluation, which decodes k samples per image (benchmarks/README.md has the figures)."""
        *hidden, last, _ = self.dense
        for layer in hidden:
            z = layer(z)
        channels, height, width = self.start_shape
        # oneDNN's transposed convolutions run ~1.3x faster on channels-last activations. With
        # its rows reordered (c, h, w) -> (h, w, c), the last dense layer writes them directly
        # instead of leaving a copy to make.
        weight = last.weight.view(channels, height, width, -1).permute(1, 2, 0, 3)
        bias = last.bias.view(channels, height, width).permute(1, 2, 0)
        features = F.linear(z, weight.reshape(-1, last.in_features), bias.reshape(-1))
        features = F.relu(features, inplace=True).view(z.shape[0], height, width, channels)
        features = features.permute(0, 3, 1, 2)
        *inner, final = self.deconv
        for layer in inner:
            # In place: these activations are the largest the decoder writes.
            relu = isinstance(layer, nn.ReLU)
            features = F.relu(features, inplace=True) if relu else layer(features)
        if features.device.type == "cpu":
            # oneDNN takes as long for the transposed convolution to the few image channels as
            # for the 64 -> 32 one, which does 16 times the arithmetic; a matmul and four adds
            # take under half that time.
            return transposed_conv_as_matmul(features, final)
        return final(features)


def transposed_conv_as_matmul(x: torch.Tensor, layer: nn.ConvTranspose2d) -> torch.Tensor:
    """``layer(x)`` for a transposed convolution with kernel 4, stride 2 and padding 1, as one
    matmul giving every input pixel's 4x4 patch of output, then four shifted sums of patches.

    Output row ``2 i + u`` (before the padding crop) takes tap ``u = 2 a + b`` of input row ``i``:
    row ``2 (i + a) + b``. So the taps with the same shift ``a`` (rows) and ``a'`` (columns) are
    added at once, into an output viewed as [rows + 1, 2, columns + 1, 2]. Returns channels-last
    memory in NCHW shape, as oneDNN's transposed convolution does for channels-last input.
    """
    if (layer.kernel_size, layer.stride, layer.padding) != ((4, 4), (2, 2), (1, 1)):
        raise ValueError("transposed_conv_as_matmul needs kernel 4, stride 2, padding 1")
    batch, in_channels, rows, columns = x.shape
    out_channels = layer.out_channels
    weight = layer.weight.view(in_channels, out_channels, 2, 2, 2, 2).permute(0, 2, 4, 3, 5, 1)
    pixels = x.permute(0, 2, 3, 1).reshape(batch * rows * columns, in_channels)
    taps = (pixels @ weight.reshape(in_channels, 16 * out_channels)).view(
        batch, rows, columns, 2, 2, 2, 2, out_channels
    )
    full = x.new_zeros(batch, rows + 1, 2, columns + 1, 2, out_channels, dtype=taps.dtype)
    for row_shift in (0, 1):
        for column_shift in (0, 1):
            full[:, row_shift : row_shift + rows, :, column_shift : column_shift + columns] += taps[
                :, :, :, row_shift, column_shift
            ].permute(0, 1, 3, 2, 4, 5)
    out_rows = 2 * rows + layer.output_padding[0]
    out_columns = 2 * columns + layer.output_padding[1]
    output = full.view(batch, 2 * rows + 2, 2 * columns + 2, out_channels)
    output = output[:, 1 : 1 + out_rows, 1 : 1 + out_columns]
    if layer.bias is not None:
        output = output + layer.bias
    return output.permute(0, 3, 1, 2)


class MixturePrior(nn.Module):
    """p(z) = sum_k pi_k N(z; m_k, diag(exp(v_k))), learned with the model: the "MoG prior" of
    Tomczak & Welling (2018), which follows the aggregate posterior instead of forcing it to
    N(0, I)."""

    def __init__(self, components: int, latent_dim: int) -> None:
        super().__init__()
        # Means where standard-normal samples fall, so training starts near the usual prior.
        self.means = nn.Parameter(torch.randn(components, latent_dim))
        self.logvars = nn.Parameter(torch.zeros(components, latent_dim))
        self.logits = nn.Parameter(torch.zeros(components))

    def _parameters64(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        # Float64 (where the device has it): the expanded squares below cancel, and NLL figures
        # are quoted to 0.01 nats.
        dtype = torch.float32 if device.type == "mps" else torch.float64
        logvars = self.logvars.to(dtype).clamp(LOGVAR_MIN, LOGVAR_MAX)
        return self.means.to(dtype), logvars

    def log_density(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) for latents ``[..., latent_dim]``, shape ``[...]``."""
        means, logvars = self._parameters64(z.device)
        latent_dim = z.shape[-1]
        precision = torch.exp(-logvars)
        # log pi_k + log N(z; m_k, s_k) = [z^2, z] . [-p_k / 2, m_k p_k] + c_k: the squares
        # expanded into one matmul, so no [batch, K, D] tensor is formed and the [batch, K]
        # result is written once (3x faster than three matmuls and their sums).
        weight = torch.cat([-0.5 * precision, means * precision], 1)
        constant = torch.log_softmax(self.logits.to(means.dtype), 0) - 0.5 * (
            (means * means * precision).sum(1) + logvars.sum(1) + latent_dim * LOG_2PI
        )
        flat = z.reshape(-1, latent_dim).to(means.dtype)
        per_component = torch.addmm(constant, torch.cat([flat * flat, flat], 1), weight.T)
        density = torch.logsumexp(per_component, dim=-1)
        return density.reshape(z.shape[:-1]).to(z.dtype)

    def transform(self, draws: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        """Samples from the mixture, made from standard-normal ``draws [n, latent_dim + 1]``:
        the last column picks a component (through the normal CDF, so that one stream of
        normal draws, reproducible without torch, makes the whole sample) and the others place
        the sample within it; ``temperature`` scales each component's spread."""
        means, logvars = self._parameters64(draws.device)
        noise, selector = draws[:, :-1].to(means.dtype), draws[:, -1].to(means.dtype)
        uniform = 0.5 * (1.0 + torch.erf(selector / math.sqrt(2.0)))
        cumulative = torch.cumsum(torch.softmax(self.logits.to(means.dtype), 0), 0)
        index = torch.searchsorted(cumulative, uniform, right=True).clamp(max=len(cumulative) - 1)
        z = means[index] + torch.exp(0.5 * logvars[index]) * noise * temperature
        return z.to(draws.dtype)


class VAE(nn.Module):
    """A VAE with a diagonal Gaussian posterior and a standard normal prior or a learned
    mixture prior (``prior``), or (``model_type`` "ae") a deterministic autoencoder with the
    same layers.

    ``decode`` returns logits for the Bernoulli likelihood (``bce``) and means in [0, 1] for the
    Gaussian likelihood (``mse``); ``decoded_to_image`` turns either into pixel values in [0, 1].
    An autoencoder's ``encode`` gives ``logvar = None``; it samples from a Gaussian fitted to its
    training codes (the ``fitted_mean`` and ``fitted_scale_tril`` buffers, kept in checkpoints).
    """

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        check_spec(spec)
        self.spec = spec
        if spec.architecture == "mlp":
            self.encoder: nn.Module = MLPEncoder(spec)
            self.decoder: nn.Module = MLPDecoder(spec)
        else:
            self.encoder = ConvEncoder(spec)
            self.decoder = ConvDecoder(spec)
        if spec.learned_sigma:
            self.log_sigma = nn.Parameter(torch.full((spec.channels,), math.log(0.1)))
        self.prior: MixturePrior | None = None
        if spec.prior == "mog":
            self.prior = MixturePrior(spec.prior_components, spec.latent_dim)
        if self.is_autoencoder:
            self.register_buffer("fitted_mean", torch.zeros(spec.latent_dim))
            self.register_buffer("fitted_scale_tril", torch.eye(spec.latent_dim))

    def likelihood_sigma(self, fixed: float) -> float | torch.Tensor:
        """The Gaussian likelihood's sigma: ``fixed``, or the learned one per channel, shaped
        [1, channels, 1, 1] and kept at or above SIGMA_MIN."""
        if not self.spec.learned_sigma:
            return fixed
        return self.log_sigma.clamp(min=math.log(SIGMA_MIN)).exp().view(1, -1, 1, 1)

    @property
    def latent_dim(self) -> int:
        return self.spec.latent_dim

    @property
    def is_autoencoder(self) -> bool:
        return self.spec.model_type == "ae"

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) of latents ``[..., latent_dim]`` under this model's prior."""
        if self.prior is None:
            return standard_normal_log_density(z)
        return self.prior.log_density(z)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Posterior mean and log-variance (clamped to a numerically safe range); an
        autoencoder's code and None."""
        if self.is_autoencoder:
            return self.encoder(x), None
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)

    @staticmethod
    def reparameterize(
        mu: torch.Tensor,
        logvar: torch.Tensor,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """z = mu + sigma * eps with eps ~ N(0, I): ``noise`` when given, else drawn from
        ``generator``."""
        if noise is None:
            noise = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + torch.exp(0.5 * logvar) * noise

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Logits (bce) or means in [0, 1] (mse, ssim, ms-ssim), shaped like the images."""
        out = self.decoder(z)
        return out if self.spec.likelihood == "bce" else torch.sigmoid(out)

    def decoded_to_image(self, decoded: torch.Tensor) -> torch.Tensor:
        """Pixel values in [0, 1]: the Bernoulli mean for bce, the Gaussian mean for mse."""
        return torch.sigmoid(decoded) if self.spec.likelihood == "bce" else decoded

    def forward(
        self,
        x: torch.Tensor,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(decoded, mu, logvar) for one posterior sample per image (the code itself for an
        autoencoder, whose logvar is None); ``noise`` [batch, latent_dim] fixes the sample."""
        mu, logvar = self.encode(x)
        z = mu if logvar is None else self.reparameterize(mu, logvar, generator, noise)
        return self.decode(z), mu, logvar

    @torch.no_grad()
    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
    ) -> torch.Tensor:
        """n images in [0, 1] decoded from z ~ N(0, temperature^2 I) (a mixture prior: from
        the mixture, each component's spread scaled by the temperature; an autoencoder: from
        its fitted Gaussian, with the same temperature scaling).

        The noise is drawn on the generator's device (CPU by default) and then moved, so a seed
        gives the same latents on every device.
        """
        device = next(self.parameters()).device
        noise_device = generator.device if generator is not None else torch.device("cpu")
        if self.prior is not None:
            draws = torch.randn(n, self.latent_dim + 1, generator=generator, device=noise_device)
            z = self.prior.transform(draws.to(device), temperature)
            return self.decoded_to_image(self.decode(z))
        z = torch.randn(n, self.latent_dim, generator=generator, device=noise_device)
        z = z.to(device) * temperature
        if self.is_autoencoder:
            z = self.fitted_mean + z @ self.fitted_scale_tril.T
        return self.decoded_to_image(self.decode(z))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] decoded from the posterior mean of each input."""
        mu, _ = self.encode(x)
        return self.decoded_to_image(self.decode(mu))

    @torch.no_grad()
    def fit_code_distribution(self, codes: torch.Tensor) -> None:
        """Fit the autoencoder's sampling Gaussian to codes ``[N, latent_dim]`` of its
        training images (mean and Cholesky factor of the covariance)."""
        codes = codes.double()
        mean = codes.mean(0)
        centred = codes - mean
        covariance = centred.T @ centred / max(codes.shape[0] - 1, 1)
        # A small ridge keeps the factorisation defined when some code dimension is constant.
        ridge = 1e-6 * (covariance.diagonal().mean() + 1e-12)
        covariance = covariance + ridge * torch.eye(
            codes.shape[1], dtype=codes.dtype, device=codes.device
        )
        self.fitted_mean.copy_(mean.float())
        self.fitted_scale_tril.copy_(torch.linalg.cholesky(covariance).float())

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())


def build_model(spec: ModelSpec) -> VAE:
    """The one place a VAE is constructed from a spec (training and checkpoint loading)."""
    return VAE(spec)
