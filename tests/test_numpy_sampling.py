"""generate's torch-free path: the same latents (drawn by vae.sampling.draw_latents with NumPy)
and the same images as the torch model, for every architecture."""

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from conftest import assert_runs_without_torch, grid_cells
from vae import numpy_sampling
from vae.checkpoint import build_metadata, save_checkpoint
from vae.cli import app
from vae.images import save_grid
from vae.model import build_model
from vae.sampling import draw_latents, sample_arrays, sample_from_model, sample_images
from vae.spec import ModelSpec, decode_batch_size, largest_activation

runner = CliRunner()

SPECS = {
    "default conv": ModelSpec("conv", 32, 1, 28, 28, "bce", [512], [32, 64]),
    "colour, three deconvs, no dense hidden": ModelSpec(
        "conv", 8, 3, 32, 32, "mse", [], [8, 16, 32]
    ),
    "odd sizes": ModelSpec("conv", 4, 1, 13, 11, "bce", [20, 10], [8, 8]),
    "own decoder widths": ModelSpec(
        "conv",
        6,
        1,
        28,
        28,
        "bce",
        [64],
        [16, 32],
        decoder_hidden_sizes=[],
        decoder_conv_widths=[8, 16, 32],
    ),
    "mlp": ModelSpec("mlp", 20, 1, 28, 28, "bce", [400]),
    "mlp, learned sigma": ModelSpec("mlp", 5, 3, 8, 8, "mse", [30, 20], learned_sigma=True),
    "autoencoder": ModelSpec("conv", 6, 1, 28, 28, "bce", [32], [8, 16], model_type="ae"),
    "mixture prior": ModelSpec(
        "conv", 6, 1, 28, 28, "bce", [32], [8, 16], prior="mog", prior_components=7
    ),
    # A conditional model decodes sample i as class i % 3 on both paths.
    "conditional conv": ModelSpec(
        "conv", 5, 1, 28, 28, "bce", [24], [8, 16], model_type="cvae", classes=["a", "b", "c"]
    ),
    "conditional mlp, no dense hidden": ModelSpec(
        "mlp",
        3,
        3,
        8,
        8,
        "mse",
        [],
        model_type="cvae",
        prior="mog",
        prior_components=2,
        classes=["x", "y"],
    ),  # fmt: skip
}


def random_model(spec: ModelSpec):
    torch.manual_seed(0)
    model = build_model(spec).eval()
    if model.family.refits_codes:  # a fitted Gaussian that is not the standard normal
        codes = torch.randn(500, spec.latent_dim) @ torch.randn(spec.latent_dim, spec.latent_dim)
        model.fit_code_distribution(codes + 3.0)
    if model.prior is not None:  # unequal, spread-out components
        with torch.no_grad():
            model.prior.means.mul_(4.0)
            model.prior.logvars.normal_(0.0, 1.0)
            model.prior.logits.normal_(0.0, 2.0)
    return model


@pytest.mark.parametrize("seed", [0, 1, 2**32 - 1, 2**64 - 1])
def test_latents_come_from_numpys_public_generator(seed):
    spec = SPECS["default conv"]
    drawn = draw_latents(spec, {}, 5, seed, temperature=0.5)
    expected = np.random.default_rng(seed).standard_normal((5, spec.latent_dim)) * 0.5
    assert drawn.dtype == np.float32 and drawn.shape == (5, spec.latent_dim)
    np.testing.assert_array_equal(drawn, expected.astype(np.float32))


def test_a_mixture_picks_its_components_with_the_same_generator():
    spec = SPECS["mixture prior"]
    weights = random_model(spec).prior_arrays()
    generator = np.random.default_rng(4)
    noise, uniform = generator.standard_normal((6, spec.latent_dim)), generator.random(6)
    cumulative = np.cumsum(np.exp(weights["prior.logits"]) / np.exp(weights["prior.logits"]).sum())
    component = np.searchsorted(cumulative, uniform, side="right")
    spread = np.exp(0.5 * weights["prior.logvars"][component])
    expected = weights["prior.means"][component] + spread * noise
    np.testing.assert_allclose(draw_latents(spec, weights, 6, 4), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", list(SPECS))
def test_samples_match_the_torch_model(name):
    """The same seed gives the same images on the NumPy path and through the torch model."""
    spec = SPECS[name]
    model = random_model(spec)
    weights = {key: value.numpy() for key, value in model.state_dict().items()}
    for count, seed, temperature in ((9, 0, 1.0), (9, 5, 0.7), (1, 2**64 - 1, 1.0)):
        expected = sample_from_model(model, count, seed, temperature).numpy()
        got = sample_arrays(spec, weights, count, seed, temperature)
        assert got.shape == expected.shape == (count, spec.channels, spec.height, spec.width)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    assert 0.0 <= got.min() and got.max() <= 1.0


def test_model_sample_draws_with_torchs_generator_through_the_same_transform():
    """The Python API's ``model.sample(n, generator)`` draws torch.randn, then torch.rand for a
    mixture's components, and turns them into latents as the commands do."""
    spec = SPECS["mixture prior"]
    model = random_model(spec)
    generator = torch.Generator().manual_seed(7)
    noise = torch.randn(5, spec.latent_dim, generator=generator).numpy()
    uniform = torch.rand(5, generator=generator).numpy()
    from vae.sampling import prior_latents

    z = torch.from_numpy(prior_latents(spec, model.prior_arrays(), noise, uniform, 0.8))
    expected = model.decoded_to_image(model.decode(z))
    got = model.sample(5, torch.Generator().manual_seed(7), 0.8)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def write_checkpoint(path, spec: ModelSpec):
    model = random_model(spec)
    metadata = build_metadata(
        model=model, data_info={"dataset": "mnist"}, config={}, epoch=1, step=1,
        validation=None, kind="best", run_name="numpy",
    )  # fmt: skip
    save_checkpoint(path, model, metadata)
    return model


def pixels(path) -> np.ndarray:
    with Image.open(path) as picture:
        return np.asarray(picture).astype(int)


@pytest.mark.parametrize(
    "name",
    ["default conv", "autoencoder", "colour, three deconvs, no dense hidden", "mixture prior"],
)
def test_generate_writes_the_torch_models_picture(tmp_path, name):
    checkpoint = tmp_path / "model.safetensors"
    model = write_checkpoint(checkpoint, SPECS[name])
    target = tmp_path / "samples.png"
    result = runner.invoke(
        app, ["generate", "--checkpoint", str(checkpoint), "--output", str(target), "--seed", "3",
              "--num-samples", "20", "--grid-size", "5", "--temperature", "0.9"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert ("plain autoencoder" in result.output) == (name == "autoencoder")
    reference = save_grid(sample_from_model(model, 20, 3, 0.9), tmp_path / "torch.png", 5)
    difference = np.abs(pixels(target) - pixels(reference))
    # Float rounding may move a pixel that sits on a rounding boundary by one of 255 levels.
    assert difference.max() <= 1 and (difference > 0).mean() < 1e-3


def test_sample_images_gives_the_same_latents_on_every_path(tmp_path):
    """A single sample (fewer latent values than any block of torch's stream) and many, on the
    NumPy path (device cpu) and through the torch model (any other device)."""
    checkpoint = tmp_path / "model.safetensors"
    model = write_checkpoint(checkpoint, SPECS["odd sizes"])
    for count in (1, 2, 40):
        on_numpy = sample_images(checkpoint, count, 3, 1.0, "cpu")
        assert isinstance(on_numpy, np.ndarray)
        expected = sample_from_model(model, count, 3).numpy()
        np.testing.assert_allclose(on_numpy, expected, rtol=0, atol=1e-5)
    devices = ["cuda"] if torch.cuda.is_available() else []
    for device in devices:
        on_torch = sample_images(checkpoint, 40, 3, 1.0, device).cpu().numpy()
        np.testing.assert_allclose(on_torch, on_numpy, rtol=0, atol=1e-4)


def test_generate_on_the_cpu_does_not_import_torch(tmp_path):
    checkpoint = tmp_path / "model.safetensors"
    write_checkpoint(checkpoint, SPECS["default conv"])
    target = tmp_path / "samples.png"
    argv = ["generate", "--checkpoint", str(checkpoint), "--output", str(target)]
    assert_runs_without_torch("generate_app", argv)
    cells = grid_cells(target)
    assert cells.shape[:2] == (8, 8)  # the default 64 samples on an 8 x 8 grid
    assert len({cell.tobytes() for cell in cells.reshape(64, 28, 28)}) == 64  # all different


def test_a_damaged_checkpoint_is_one_line_on_the_numpy_path(tmp_path):
    checkpoint = tmp_path / "model.safetensors"
    write_checkpoint(checkpoint, SPECS["default conv"])
    data = bytearray(checkpoint.read_bytes())
    checkpoint.write_bytes(bytes(data[: len(data) // 2]))  # cut short, as a broken copy would be
    target = tmp_path / "samples.png"
    earlier = b"\x89PNG\r\n\x1a\n an earlier output"
    target.write_bytes(earlier)
    result = runner.invoke(
        app, ["generate", "--checkpoint", str(checkpoint), "--output", str(target)]
    )
    assert result.exit_code == 1 and result.output.startswith("error: ")
    assert "truncated" in result.output and result.output.count("\n") == 1
    assert target.read_bytes() == earlier


@pytest.mark.parametrize("seed", ["-1", str(2**64), "99999999999999999999999"])
def test_a_seed_torch_cannot_take_is_one_line(tmp_path, seed):
    checkpoint = tmp_path / "model.safetensors"
    write_checkpoint(checkpoint, SPECS["default conv"])
    for command in (["generate"], ["inference", "--mode", "sample"], ["evaluate", "--limit", "1"]):
        result = runner.invoke(
            app, [*command, "--checkpoint", str(checkpoint), "--seed", seed, "--output-dir" if command[0] == "inference" else "--output", str(tmp_path / "out")],
        )  # fmt: skip
        assert result.exit_code == 2, (command, result.output)
        assert (
            result.output
            == f"error: invalid value for --seed: {seed} (expected an integer from 0 to {2**64 - 1})\n"
        )
    assert not (tmp_path / "out").exists()
    repeats = runner.invoke(
        app,
        ["evaluate", "--checkpoint", str(checkpoint), "--seed", str(2**64 - 2), "--repeats", "3"],
    )
    assert repeats.exit_code == 2 and f"from 0 to {2**64 - 3}" in repeats.output


@pytest.mark.parametrize("name", ["default conv", "autoencoder", "mixture prior"])
def test_generate_reads_only_what_sampling_uses(tmp_path, name):
    checkpoint = tmp_path / "model.safetensors"
    write_checkpoint(checkpoint, SPECS[name])
    _, weights = numpy_sampling.load_decoder(checkpoint)
    assert weights and all(key.startswith(("decoder.", "fitted_", "prior.")) for key in weights)
    assert any(key.startswith("decoder.") for key in weights)
    assert ("fitted_mean" in weights) == (name == "autoencoder")
    assert ("prior.means" in weights) == (name == "mixture prior")


@pytest.mark.parametrize("name", ["default conv", "colour, three deconvs, no dense hidden", "mlp"])
def test_pictures_decode_a_few_images_at_a_time_with_the_same_result(monkeypatch, name):
    """Both decoders split a picture into batches of at most DECODE_BATCH_VALUES layer-output
    values; the pixels do not depend on the split (beyond BLAS's last rounding step)."""
    spec = SPECS[name]
    model = random_model(spec)
    weights = {key: value.numpy() for key, value in model.state_dict().items()}
    latents = draw_latents(spec, model.prior_arrays(), 7, seed=3, temperature=1.0)
    whole_numpy = numpy_sampling.decode(spec, weights, latents)
    whole_torch = model.decode_images(torch.from_numpy(latents))
    calls = []
    original = model.decode_fast
    monkeypatch.setattr(
        model, "decode_fast", lambda z, *labels: calls.append(len(z)) or original(z, *labels)
    )
    # Room for two images' largest layer output: batches of 2, 2, 2 and 1.
    monkeypatch.setattr("vae.spec.DECODE_BATCH_VALUES", 2 * largest_activation(spec) + 1)
    assert decode_batch_size(spec) == 2
    split_numpy = numpy_sampling.decode(spec, weights, latents)
    np.testing.assert_allclose(split_numpy, whole_numpy, rtol=0, atol=1e-6)
    split_torch = model.decode_images(torch.from_numpy(latents))
    torch.testing.assert_close(split_torch, whole_torch, rtol=0, atol=1e-6)
    assert calls == [2, 2, 2, 1]
    assert model.decode_images(torch.zeros(0, spec.latent_dim)).shape == (0, *whole_torch.shape[1:])
