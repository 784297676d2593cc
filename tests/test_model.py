import pytest
import torch

from vae.errors import ConfigError
from vae.model import LOGVAR_MAX, LOGVAR_MIN, ModelSpec, build_model


def spec(architecture="conv", size=28, channels=1, likelihood="bce", latent=5):
    return ModelSpec(architecture, latent, channels, size, size, likelihood, [16], [8, 16])


@pytest.mark.parametrize("architecture", ["mlp", "conv"])
@pytest.mark.parametrize("size", [28, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_for_every_architecture_size_and_channel_count(architecture, size, channels):
    model = build_model(spec(architecture, size, channels))
    x = torch.rand(3, channels, size, size)
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (3, 5)
    decoded, _, _ = model(x)
    assert decoded.shape == x.shape
    assert model.sample(2).shape == (2, channels, size, size)
    assert model.reconstruct(x).shape == x.shape


def test_odd_sizes_work_with_deep_conv_stacks():
    model = build_model(ModelSpec("conv", 4, 1, 28, 28, "bce", [], [8, 8, 8]))  # 28 -> 14 -> 7 -> 3
    assert model(torch.rand(2, 1, 28, 28))[0].shape == (2, 1, 28, 28)


def test_gaussian_decoder_returns_means_in_unit_interval_and_bernoulli_returns_logits():
    torch.manual_seed(0)
    gaussian = build_model(spec(likelihood="mse"))
    z = torch.randn(8, 5) * 50
    means = gaussian.decode(z)
    assert means.min() >= 0 and means.max() <= 1
    bernoulli = build_model(spec(likelihood="bce"))
    logits = bernoulli.decode(z)
    assert logits.min() < 0 or logits.max() > 1  # unbounded logits
    images = bernoulli.decoded_to_image(logits)
    assert images.min() >= 0 and images.max() <= 1


def test_log_variance_is_clamped_to_a_safe_range():
    model = build_model(spec())
    with torch.no_grad():
        model.encoder.head.bias.fill_(1e6)
    _, logvar = model.encode(torch.rand(2, 1, 28, 28))
    assert logvar.max() <= LOGVAR_MAX and logvar.min() >= LOGVAR_MIN
    assert torch.isfinite(torch.exp(logvar)).all()


def test_sampling_with_a_seeded_generator_is_deterministic():
    model = build_model(spec())
    first = model.sample(4, torch.Generator().manual_seed(3))
    second = model.sample(4, torch.Generator().manual_seed(3))
    other = model.sample(4, torch.Generator().manual_seed(4))
    assert torch.equal(first, second)
    assert not torch.equal(first, other)


def test_temperature_zero_point_five_halves_the_latents():
    model = build_model(spec())
    with torch.no_grad():
        z = torch.randn(2, 5, generator=torch.Generator().manual_seed(1))
        expected = model.decoded_to_image(model.decode(z * 0.5))
    got = model.sample(2, torch.Generator().manual_seed(1), temperature=0.5)
    assert torch.allclose(got, expected)


def test_too_many_conv_layers_for_the_image_size_is_a_clear_error():
    with pytest.raises(ConfigError, match="at least 32 pixels"):
        build_model(ModelSpec("conv", 4, 1, 28, 28, "bce", [], [8, 8, 8, 8, 8]))


@pytest.mark.parametrize("architecture", ["mlp", "conv"])
def test_decoder_can_be_smaller_than_the_encoder(architecture):
    mirror = build_model(spec(architecture))
    small = ModelSpec(architecture, 5, 1, 28, 28, "bce", [16], [8, 16], decoder_hidden_sizes=[4])
    if architecture == "conv":
        small.decoder_conv_widths = [2, 4, 4]  # a different depth: 28 -> 14 -> 7 -> 3 and back
    model = build_model(small)
    assert model(torch.rand(2, 1, 28, 28))[0].shape == (2, 1, 28, 28)
    decoder_size = sum(p.numel() for p in model.decoder.parameters())
    assert decoder_size < sum(p.numel() for p in mirror.decoder.parameters())
    assert ModelSpec.from_dict(small.to_dict()) == small


def test_expected_tensors_match_the_built_model_for_every_kind_of_spec():
    """info checks checkpoints without torch against this table: it must equal the real model's."""
    import itertools

    from vae.spec import expected_tensors

    checked = 0
    for arch, model_type, hidden, widths, decoder_hidden, decoder_widths, size, sigma in (
        itertools.product(
            ["mlp", "conv"], ["vae", "ae"], [[], [16], [32, 16]], [[4], [4, 8], [4, 8, 16]],
            [None, [8]], [None, [2, 6]], [(1, 28, 28), (3, 32, 32), (1, 7, 9)], [False, True],
        )
    ):  # fmt: skip
        conv = arch == "conv"
        if conv and min(size[1:]) // 2 ** max(len(widths), len(decoder_widths or widths)) < 1:
            continue
        spec = ModelSpec(
            arch, 5, *size, "mse" if sigma else "bce", hidden, widths if conv else [],
            decoder_hidden, decoder_widths if conv else None, model_type, sigma,
        )  # fmt: skip
        built = {
            k: (tuple(v.shape), str(v.dtype)[6:]) for k, v in build_model(spec).state_dict().items()
        }
        table = {k: (v.shape, v.dtype) for k, v in expected_tensors(spec).items()}
        assert built == table, spec
        checked += 1
    assert checked > 400
    for spec in (
        ModelSpec("conv", 5, 1, 28, 28, "bce", [16], [4, 8], prior="mog", prior_components=9),
        ModelSpec("mlp", 3, 3, 8, 8, "mse", [16], prior="mog", prior_components=1),
    ):
        built = {k: tuple(v.shape) for k, v in build_model(spec).state_dict().items()}
        assert built == {k: v.shape for k, v in expected_tensors(spec).items()}
        assert built["prior.means"] == (spec.prior_components, spec.latent_dim)


# --- the layer plan drives the modules, the tensor table and the NumPy decoder -----------------


def test_a_made_up_plan_is_followed_by_modules_tensor_table_and_numpy_decoder():
    """Change the plan and all three readers change with it: nothing else describes layers."""
    import numpy as np

    from vae.network import Network
    from vae.numpy_sampling import run_layers
    from vae.plan import DECONV, LINEAR, UNFLATTEN, Layer, Plan

    made_up = (
        Layer(LINEAR, "first", 3, 7, relu=True),
        Layer(LINEAR, "second", 7, 2 * 3 * 4, relu=True),
        Layer(UNFLATTEN, shape=(2, 3, 4)),
        Layer(DECONV, "grow", 2, 5, relu=True, output_padding=(1, 0)),
        Layer(DECONV, "paint", 5, 3),
    )
    torch.manual_seed(0)
    network = Network(made_up)
    built = {f"decoder.{k}": tuple(v.shape) for k, v in network.state_dict().items()}
    assert built == Plan((), made_up).tensor_shapes()
    assert [name for name, _ in network.named_children()] == ["first", "second", "grow", "paint"]
    z = torch.randn(6, 3)
    with torch.no_grad():
        expected = network(z)
        assert expected.shape == (6, 3, 2 * (2 * 3 + 1), 2 * 2 * 4)
        torch.testing.assert_close(network.forward_for_evaluation(z), expected, atol=1e-5, rtol=0)
    weights = {f"decoder.{k}": v.numpy() for k, v in network.state_dict().items()}
    got = run_layers(made_up, weights, z.numpy(), "decoder")
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-5, rtol=0)


def test_a_changed_plan_for_a_spec_changes_model_table_and_numpy_decoder(monkeypatch):
    """Every reader asks ``layer_plan`` for a spec's layers: one more hidden layer there is one
    more layer in the model, in the checked tensor table and in the NumPy decoder."""
    import dataclasses

    import numpy as np

    import vae.model
    import vae.numpy_sampling
    import vae.plan
    from vae.plan import LINEAR, Layer
    from vae.spec import expected_tensors

    spec = ModelSpec("conv", 4, 1, 8, 8, "bce", [6], [3, 5])
    original = vae.plan.layer_plan

    def deeper(spec_: ModelSpec):
        plan = original(spec_)
        extra = Layer(LINEAR, "extra", spec_.latent_dim, spec_.latent_dim, relu=True)
        return dataclasses.replace(plan, decoder=(extra, *plan.decoder))

    # vae.spec reads the plan through the model's family, which asks vae.plan.
    for module in (vae.plan, vae.model, vae.numpy_sampling):
        monkeypatch.setattr(module, "layer_plan", deeper)
    torch.manual_seed(0)
    model = build_model(spec).eval()
    assert model.decoder.extra.weight.shape == (4, 4)
    table = expected_tensors(spec)
    assert {k: v.shape for k, v in table.items()} == {
        k: tuple(v.shape) for k, v in model.state_dict().items()
    }
    assert "decoder.extra.bias" in table
    from vae.numpy_sampling import decode

    z = torch.randn(3, 4)
    weights = {k: v.numpy() for k, v in model.state_dict().items()}
    with torch.no_grad():
        expected = model.decoded_to_image(model.decode(z)).numpy()
    np.testing.assert_allclose(decode(spec, weights, z.numpy()), expected, atol=1e-5, rtol=0)


def test_version_1_names_are_the_sequential_positions_of_the_old_modules():
    from vae.plan import version1_names

    conv = ModelSpec("conv", 5, 1, 28, 28, "bce", [16], [4, 8], decoder_hidden_sizes=[12, 9])
    renames = version1_names(conv)
    assert renames["encoder.body.0.weight"] == "encoder.conv1.weight"
    assert renames["encoder.body.2.weight"] == "encoder.conv2.weight"
    assert renames["encoder.body.5.weight"] == "encoder.hidden1.weight"  # after a Flatten
    assert renames["encoder.head.bias"] == "encoder.head.bias"
    assert renames["decoder.dense.0.weight"] == "decoder.hidden1.weight"
    assert renames["decoder.dense.4.weight"] == "decoder.grid.weight"
    assert renames["decoder.deconv.0.weight"] == "decoder.deconv1.weight"
    assert renames["decoder.deconv.2.weight"] == "decoder.output.weight"
    mlp = version1_names(ModelSpec("mlp", 5, 1, 28, 28, "bce", [16, 8]))
    assert mlp["encoder.body.1.weight"] == "encoder.hidden1.weight"
    assert mlp["encoder.body.3.weight"] == "encoder.hidden2.weight"
    assert mlp["decoder.body.4.weight"] == "decoder.output.weight"
    assert set(mlp.values()) == {
        name for name in build_model(ModelSpec("mlp", 5, 1, 28, 28, "bce", [16, 8])).state_dict()
    }
