"""generate's torch-free path: the same latents as torch.randn, the same images as the model."""

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from conftest import assert_runs_without_torch
from vae import numpy_sampling
from vae.checkpoint import build_metadata, save_checkpoint
from vae.cli import app
from vae.images import save_grid
from vae.model import build_model
from vae.spec import ModelSpec

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
}


def random_model(spec: ModelSpec):
    torch.manual_seed(0)
    model = build_model(spec).eval()
    if model.is_autoencoder:  # a fitted Gaussian that is not the standard normal
        codes = torch.randn(500, spec.latent_dim) @ torch.randn(spec.latent_dim, spec.latent_dim)
        model.fit_code_distribution(codes + 3.0)
    if model.prior is not None:  # unequal, spread-out components
        with torch.no_grad():
            model.prior.means.mul_(4.0)
            model.prior.logvars.normal_(0.0, 1.0)
            model.prior.logits.normal_(0.0, 2.0)
    return model


@pytest.mark.parametrize("seed", [0, 1, 2**32 - 1, 2**40 + 7, 2**64 - 1])
@pytest.mark.parametrize("count", [16, 17, 31, 48, 100, 2048, 2053])
def test_latents_are_torch_randn(seed, count):
    expected = torch.randn(count, generator=torch.Generator().manual_seed(seed)).numpy()
    drawn = numpy_sampling.torch_randn(seed, count)
    assert drawn.dtype == np.float32 and drawn.shape == (count,)
    np.testing.assert_allclose(drawn, expected, rtol=0, atol=1e-5)


def test_fewer_than_sixteen_latent_values_are_left_to_torch():
    with pytest.raises(ValueError, match="16 or more"):
        numpy_sampling.torch_randn(0, 15)
    assert not numpy_sampling.can_sample(SPECS["odd sizes"], 3)  # 12 values
    assert numpy_sampling.can_sample(SPECS["odd sizes"], 4)


@pytest.mark.parametrize("name", list(SPECS))
def test_samples_match_the_torch_model(name):
    spec = SPECS[name]
    model = random_model(spec)
    weights = {key: value.numpy() for key, value in model.state_dict().items()}
    for seed, temperature in ((0, 1.0), (5, 0.7)):
        expected = model.sample(9, torch.Generator().manual_seed(seed), temperature).numpy()
        got = numpy_sampling.sample(spec, weights, 9, seed, temperature)
        assert got.shape == expected.shape == (9, spec.channels, spec.height, spec.width)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    assert 0.0 <= got.min() and got.max() <= 1.0


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
    reference = save_grid(
        model.sample(20, torch.Generator().manual_seed(3), 0.9), tmp_path / "torch.png", 5
    )
    difference = np.abs(pixels(target) - pixels(reference))
    # Float rounding may move a pixel that sits on a rounding boundary by one of 255 levels.
    assert difference.max() <= 1 and (difference > 0).mean() < 1e-3


def test_too_few_latent_values_take_the_torch_path(tmp_path):
    checkpoint = tmp_path / "model.safetensors"
    model = write_checkpoint(checkpoint, SPECS["odd sizes"])
    target = tmp_path / "samples.png"
    result = runner.invoke(
        app, ["generate", "--checkpoint", str(checkpoint), "--output", str(target),
              "--num-samples", "2", "--grid-size", "2"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    reference = save_grid(model.sample(2, torch.Generator().manual_seed(0)), tmp_path / "t.png", 2)
    assert target.read_bytes() == reference.read_bytes()


def test_generate_on_the_cpu_does_not_import_torch(tmp_path):
    checkpoint = tmp_path / "model.safetensors"
    write_checkpoint(checkpoint, SPECS["default conv"])
    target = tmp_path / "samples.png"
    argv = ["generate", "--checkpoint", str(checkpoint), "--output", str(target)]
    assert_runs_without_torch("generate_app", argv)
    assert target.stat().st_size > 1000


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
