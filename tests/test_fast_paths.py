"""The fast paths (device-side metrics, channels-last decoding, bf16 autocast,
vectorised binarization) give what a straightforward implementation gives."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from vae.data import ImageSet, training_batches
from vae.device import bf16_autocast_supported
from vae.model import ModelSpec, build_model
from vae.network import transposed_conv_as_matmul
from vae.objectives import elbo_terms
from vae.training import train

CONV = ModelSpec("conv", 8, 1, 28, 28, "bce", [64], [8, 16])


def reference_negative_elbo(model, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Textbook maths: sigmoid probabilities, summed BCE and closed-form KL, batch mean."""
    h = model.encoder(x)
    mu, logvar = h[:, : h.shape[1] // 2], h[:, h.shape[1] // 2 :]
    z = mu + torch.exp(0.5 * logvar) * eps
    probabilities = torch.sigmoid(model.decoder(z)).clamp(1e-7, 1 - 1e-7)
    bce = F.binary_cross_entropy(probabilities, x, reduction="sum")
    kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return (bce + kl) / x.shape[0]


def test_training_loss_equals_the_textbook_formula_on_the_same_batch():
    torch.manual_seed(0)
    model = build_model(CONV)
    x = torch.bernoulli(torch.full((16, 1, 28, 28), 0.3))
    generator = torch.Generator().manual_seed(5)
    decoded, mu, logvar = model(x, generator)
    ours = elbo_terms(decoded, x, mu, logvar, "bce").loss
    eps = torch.randn(mu.shape, generator=torch.Generator().manual_seed(5))
    assert ours.item() == pytest.approx(reference_negative_elbo(model, x, eps).item(), rel=1e-5)


DECODERS = {
    "small": CONV,
    "odd sizes": ModelSpec("conv", 4, 1, 13, 11, "bce", [20, 10], [8, 8]),
    "colour, three deconvs, no dense hidden": ModelSpec(
        "conv", 6, 3, 32, 32, "mse", [], [8, 16, 16]
    ),
    "one deconv": ModelSpec("conv", 3, 3, 9, 10, "bce", [12], [5]),
    "own decoder widths": ModelSpec(
        "conv",
        5,
        1,
        28,
        28,
        "bce",
        [16],
        [4, 8],
        decoder_hidden_sizes=[24, 12],
        decoder_conv_widths=[6, 10],
    ),
}


@pytest.mark.parametrize("name", DECODERS)
def test_evaluation_decoder_gives_the_training_decoders_values_and_gradients(name):
    """``decode_fast`` decodes through a reordered dense layer and a matmul in place of the last
    transposed convolution: the same function as ``decode``, to float rounding, gradients
    included, whatever mode the model is in."""
    spec = DECODERS[name]
    torch.manual_seed(0)
    model = build_model(spec)
    z = torch.randn(37, spec.latent_dim, requires_grad=True)
    plain_output = model.decode(z)
    (plain_gradient,) = torch.autograd.grad(plain_output.square().sum(), z)
    for mode in (model.train, model.eval):
        mode()
        fast_output = model.decode_fast(z)
        assert fast_output.shape == plain_output.shape
        assert torch.allclose(fast_output, plain_output, atol=1e-5)
        (fast_gradient,) = torch.autograd.grad(fast_output.square().sum(), z)
        assert torch.allclose(fast_gradient, plain_gradient, rtol=1e-4, atol=1e-5)
        # decode itself no longer depends on the mode.
        assert torch.equal(model.decode(z), plain_output)
    assert model.decode_fast(z[:0]).shape == (0, *plain_output.shape[1:])


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize(
    ("in_channels", "out_channels", "rows", "columns", "output_padding", "bias"),
    [(32, 1, 14, 14, (0, 0), True), (6, 3, 5, 7, (1, 0), True), (4, 5, 3, 3, (1, 1), False)],
)
def test_transposed_conv_as_matmul_equals_conv_transpose2d(
    in_channels, out_channels, rows, columns, output_padding, bias, channels_last
):
    torch.manual_seed(0)
    layer = torch.nn.ConvTranspose2d(
        in_channels,
        out_channels,
        4,
        stride=2,
        padding=1,
        output_padding=output_padding,
        bias=bias,
    )
    x = torch.randn(3, in_channels, rows, columns)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    expected = layer(x)
    got = transposed_conv_as_matmul(x, layer)
    assert (
        got.shape
        == expected.shape
        == (3, out_channels, 2 * rows + output_padding[0], 2 * columns + output_padding[1])
    )
    assert torch.allclose(got, expected, atol=1e-5)


def test_transposed_conv_as_matmul_refuses_other_layers():
    with pytest.raises(ValueError, match="kernel 4, stride 2, padding 1"):
        transposed_conv_as_matmul(torch.zeros(1, 2, 3, 3), torch.nn.ConvTranspose2d(2, 1, 3))


@pytest.mark.skipif(
    not bf16_autocast_supported(torch.device("cpu")), reason="this CPU has no native bf16"
)
def test_bf16_autocast_loss_is_close_to_float32():
    torch.manual_seed(0)
    model = build_model(CONV)
    x = torch.bernoulli(torch.full((64, 1, 28, 28), 0.3))
    losses = []
    for enabled in (False, True):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled):
            decoded, mu, logvar = model(x, torch.Generator().manual_seed(2))
        terms = elbo_terms(decoded, x, mu, logvar, "bce")
        assert terms.loss.dtype == torch.float32  # the loss is always summed in float32
        losses.append(terms.loss.item())
    assert losses[1] == pytest.approx(losses[0], rel=1e-2)


def test_epoch_metrics_read_once_per_interval_equal_the_per_step_losses(tiny_config, monkeypatch):
    import vae.trainer.loop as training_module

    per_step: list[tuple[float, int]] = []
    real = training_module.elbo_terms

    def recording(decoded, x, *args, **kwargs):
        terms = real(decoded, x, *args, **kwargs)
        if torch.is_grad_enabled():
            per_step.append((terms.loss.item(), x.shape[0]))
        return terms

    monkeypatch.setattr(training_module, "elbo_terms", recording)
    monkeypatch.setattr(training_module, "REPORT_EVERY", 3)  # intervals cut inside the epoch
    tiny_config.train.epochs = 1
    tiny_config.train.batch_size = 32  # 200 training images: 7 batches, the last one short
    result = train(tiny_config, tiny_config.train.runs_dir + "/metrics")
    expected = sum(loss * n for loss, n in per_step) / sum(n for _, n in per_step)
    record = json.loads((result.run_dir / "metrics.jsonl").read_text().splitlines()[0])
    assert len(per_step) == 7
    assert record["train_loss"] == pytest.approx(expected, rel=1e-6)


def test_dynamic_binarization_mean_equals_the_grey_level():
    grey = torch.tensor([0, 32, 128, 200, 255], dtype=torch.uint8)
    images = ImageSet(grey.view(1, 1, 1, 5).expand(400, 1, 1, 5).contiguous(), torch.zeros(400))
    draws = torch.cat(
        [torch.cat(list(training_batches(images, 100, 0, epoch, True))) for epoch in range(20)]
    )
    assert set(draws.unique().tolist()) <= {0.0, 1.0}
    p = grey.double() / 255
    mean = draws.double().mean(dim=(0, 1, 2))
    n = draws.shape[0]
    # Within 5 standard errors of a Bernoulli mean over n draws; exact at 0 and 1.
    assert torch.all((mean - p).abs() <= 5 * torch.sqrt(p * (1 - p) / n) + 1e-12)
    assert mean[0] == 0 and mean[-1] == 1
