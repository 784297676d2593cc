"""The VampPrior (--prior vamp --pseudo-inputs K): its density against a brute-force mixture of
the encoder's posteriors, its KL estimate and importance-weighted NLL, the moments stored for the
torch-free paths (generate, the explorer) against the pseudo-inputs, exact resume, torchrun,
the commands and the Python API with it, and its refusals."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import vae
from conftest import assert_runs_without_torch, grid_cells, make_tiny_config, one_line_error
from vae.checkpoint import load_model, read_metadata, read_tensors
from vae.cli import app
from vae.config import RunConfig
from vae.errors import CheckpointError, ConfigError, TrainingInterrupted
from vae.evaluation import score_batch
from vae.explore.decoder import Decoder
from vae.model import build_model
from vae.models.priors.vamp import INITIAL_PIXEL_MEAN
from vae.objectives import bernoulli_log_likelihood, diagonal_gaussian_log_density
from vae.sampling import draw_latents, sample_from_model, sample_images
from vae.spec import ModelSpec
from vae.training import prepare_resume, train

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]
PSEUDO_INPUTS = 5


def vamp_spec(**changes) -> ModelSpec:
    settings = dict(prior="vamp", pseudo_inputs=PSEUDO_INPUTS)
    settings.update(changes)
    return ModelSpec("conv", 3, 1, 28, 28, "bce", [16], [4, 8], **settings)


def brute_force_log_density(model, z: torch.Tensor) -> torch.Tensor:
    """log (1/K) sum_k N(z; mu(u_k), diag(exp(logvar(u_k)))), one component at a time."""
    with torch.no_grad():
        images = torch.sigmoid(model.prior.pseudo_input_logits)
        terms = []
        for image in images:
            mu, logvar = model.encode(image[None])
            terms.append(diagonal_gaussian_log_density(z.double(), mu.double(), logvar.double()))
    return torch.logsumexp(torch.stack(terms), 0) - math.log(len(images))


def encoder_moments(model) -> tuple[torch.Tensor, torch.Tensor]:
    """The encoder's posterior moments at the pseudo-inputs, computed here from the model."""
    with torch.no_grad():
        return model.encode(torch.sigmoid(model.prior.pseudo_input_logits))


# --- the density, its KL estimate and evaluation's NLL ------------------------------------------


def test_log_density_is_the_mixture_of_the_encoders_posteriors_at_the_pseudo_inputs():
    torch.manual_seed(0)
    model = build_model(vamp_spec())
    z = torch.randn(50, 3) * 2
    expected = brute_force_log_density(model, z)
    trained = model.log_prior(z)  # with gradients: computed afresh, differentiable
    assert trained.requires_grad
    torch.testing.assert_close(trained.double(), expected, atol=1e-5, rtol=0)
    with torch.no_grad():  # the stored moments, computed once
        torch.testing.assert_close(model.log_prior(z).double(), expected, atol=1e-5, rtol=0)
        torch.testing.assert_close(
            model.log_prior(z.view(5, 10, 3)), model.log_prior(z).view(5, 10)
        )
    # The pseudo-inputs are images in [0, 1], first near the paper's 0.05.
    images = torch.sigmoid(model.prior.pseudo_input_logits.detach())
    assert images.min() > 0 and images.max() < 1
    assert abs(float(images.mean()) - INITIAL_PIXEL_MEAN) < 0.01


def test_the_kl_is_the_one_sample_estimate_and_trains_the_pseudo_inputs():
    torch.manual_seed(1)
    model = build_model(vamp_spec())
    x = torch.rand(4, 1, 28, 28)
    noise = torch.randn(4, 3)
    _, mu, logvar = model(x, noise=noise)
    kl, per_dimension = model.kl_term(mu, logvar, noise)
    assert per_dimension is None  # no split over dimensions: free bits are refused with it
    z = mu + torch.exp(0.5 * logvar) * noise
    expected = diagonal_gaussian_log_density(
        z.double(), mu.double(), logvar.double()
    ) - brute_force_log_density(model, z.detach())
    torch.testing.assert_close(kl.double(), expected, atol=1e-4, rtol=0)
    kl.sum().backward()
    assert model.prior.pseudo_input_logits.grad.abs().sum() > 0
    # A bf16 run's batch: the pseudo-inputs are encoded in bf16 too (bf16's rounding, float32
    # figures), the costly part of a step.
    halved, _ = model.kl_term(mu.bfloat16(), logvar.bfloat16(), noise)
    assert halved.dtype == torch.float32
    torch.testing.assert_close(halved, kl, atol=0.1, rtol=0.02)
    full = model.prior.components(model)
    for precision in (torch.bfloat16, torch.float16):
        half = model.prior.components(model, precision)
        assert all(part.dtype == torch.float32 and part.requires_grad for part in half)
        assert not torch.equal(half[0], full[0])
        torch.testing.assert_close(half, full, atol=0.05, rtol=0.02)


def test_importance_weighted_nll_uses_its_density():
    """evaluate's NLL against numerical integration over a 1-D latent with the VampPrior's
    density (the standard normal's would give another figure)."""
    torch.manual_seed(0)
    model = build_model(ModelSpec("mlp", 1, 1, 2, 2, "bce", [6], [], prior="vamp", pseudo_inputs=3))
    model.eval()
    with torch.no_grad():
        for parameter in model.decoder.parameters():
            parameter.mul_(3.0)
        model.prior.pseudo_input_logits.normal_(0.0, 3.0)
    x = torch.tensor(
        [[[[1.0, 0.0], [0.0, 1.0]]], [[[1.0, 1.0], [1.0, 1.0]]], [[[0.0, 0.0], [1.0, 0.0]]]]
    )
    grid = torch.linspace(-12.0, 12.0, 8001)[:, None]
    step = float(grid[1] - grid[0])
    with torch.no_grad():
        logits = model.decode(grid)
        log_prior = brute_force_log_density(model, grid).float()
        exact = torch.stack(
            [
                -torch.logsumexp(
                    bernoulli_log_likelihood(logits, image.expand_as(logits)) + log_prior, 0
                )
                - math.log(step)
                for image in x
            ]
        )
        standard = torch.stack(
            [
                -torch.logsumexp(
                    bernoulli_log_likelihood(logits, image.expand_as(logits))
                    - 0.5 * (grid[:, 0] ** 2 + math.log(2 * math.pi)),
                    0,
                )
                - math.log(step)
                for image in x
            ]
        )
    assert (exact - standard).abs().max() > 0.1  # the two priors are told apart
    scores = score_batch(model, x, k=40_000, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(scores["nll"], exact, atol=0.02, rtol=0)
    assert (scores["nll"] <= scores["neg_elbo"] + 1e-4).all()


def test_the_stored_moments_follow_the_weights_however_they_change():
    """A fused Adam step changes weights without bumping their version counters: in training
    mode the moments are recomputed whenever they are read; in evaluation mode an in-place
    change is seen by its version counter."""
    torch.manual_seed(2)
    model = build_model(vamp_spec())
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1, fused=True)
    x = torch.rand(4, 1, 28, 28)
    for mode in ("train", "eval"):
        getattr(model, mode)()
        before = model.state_dict()["prior.means"].clone()
        noise = torch.randn(4, 3)
        _, mu, logvar = model(x, noise=noise)
        model.kl_term(mu, logvar, noise)[0].sum().backward()
        optimizer.step()
        optimizer.zero_grad()
        if mode == "eval":
            with torch.no_grad():
                model.encoder.head.bias.add_(1.0)
        stored = model.state_dict()
        assert not torch.equal(stored["prior.means"], before)
        means, logvars = encoder_moments(model)
        torch.testing.assert_close(stored["prior.means"], means)
        torch.testing.assert_close(stored["prior.logvars"], logvars)


def test_a_state_dict_without_the_moments_is_missing_them():
    model = build_model(vamp_spec())
    state = {k: v for k, v in model.state_dict().items() if k != "prior.logvars"}
    with pytest.raises(RuntimeError, match="Missing key.*prior.logvars"):
        build_model(vamp_spec()).load_state_dict(state)
    state["prior.means"] = torch.zeros(PSEUDO_INPUTS + 1, 3)
    with pytest.raises(RuntimeError, match="size mismatch for prior.means"):
        build_model(vamp_spec()).load_state_dict(state, strict=False)


# --- a trained run: loss, round trip, stored moments, the commands -----------------------------


def vamp_config(config):
    config.model.prior = "vamp"
    config.model.pseudo_inputs = PSEUDO_INPUTS
    config.train.epochs = 3
    return config.validate(given={"prior", "pseudo_inputs"})


@pytest.fixture(scope="module")
def vamp_run(tmp_path_factory, synthetic_data_dir):
    """A tiny 3-epoch run with the VampPrior (read-only: copy it to change it)."""
    runs = tmp_path_factory.mktemp("vamp-runs")
    config = vamp_config(make_tiny_config(synthetic_data_dir, runs))
    return train(config, runs / "vamp")


def test_a_tiny_run_learns_and_its_checkpoint_holds_the_moments_of_its_pseudo_inputs(vamp_run):
    records = vamp_run.history
    assert records[-1]["val_neg_elbo"] < records[0]["val_neg_elbo"]
    assert records[-1]["train_loss"] < records[0]["train_loss"]
    assert (vamp_run.run_dir / "images" / "samples_epoch_003.png").exists()
    for path in (vamp_run.best_path, vamp_run.last_path):
        model = load_model(path)
        assert model.spec.prior == "vamp" and model.spec.pseudo_inputs == PSEUDO_INPUTS
        stored = read_tensors(path, "model.prior.")
        assert set(stored) == {"pseudo_input_logits", "means", "logvars"}
        assert stored["pseudo_input_logits"].shape == (PSEUDO_INPUTS, 1, 28, 28)
        # Learned: the pseudo-inputs left their start, and the moments follow them.
        torch.manual_seed(RunConfig().train.seed)  # as training builds its model
        start = build_model(model.spec).prior.pseudo_input_logits.detach()
        assert (stored["pseudo_input_logits"] - start).abs().mean() > 1e-3
        means, logvars = encoder_moments(model)
        torch.testing.assert_close(stored["means"], means, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(stored["logvars"], logvars, atol=1e-5, rtol=1e-5)
    assert read_metadata(vamp_run.best_path)["model"]["pseudo_inputs"] == PSEUDO_INPUTS


def test_a_loaded_model_saves_the_same_tensors_and_density(vamp_run, tmp_path):
    model = vae.load(vamp_run.best_path)
    assert model.prior == "vamp"
    again = model.save(tmp_path / "again.safetensors")
    first, second = read_tensors(vamp_run.best_path, "model."), read_tensors(again, "model.")
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), name
    z = torch.randn(20, model.latent_dim)
    with torch.no_grad():
        torch.testing.assert_close(
            load_model(again).log_prior(z), load_model(vamp_run.best_path).log_prior(z)
        )


def test_generate_without_torch_draws_what_the_torch_model_draws(vamp_run, tmp_path):
    checkpoint = vamp_run.best_path
    model = load_model(checkpoint)
    drawn = sample_images(checkpoint, 16, seed=3)  # NumPy: the stored moments
    assert isinstance(drawn, np.ndarray)
    from_torch = sample_from_model(model, 16, seed=3).numpy()
    np.testing.assert_allclose(drawn, from_torch, atol=1e-5)
    # The same (API and generate) on the torch model, bit for bit.
    assert torch.equal(vae.load(checkpoint).sample(16, seed=3), torch.from_numpy(drawn))
    picture = tmp_path / "samples.png"
    assert_runs_without_torch(
        "generate_app", ["generate", "--checkpoint", str(checkpoint), "--output", str(picture)]
    )
    assert grid_cells(picture).shape[:2] == (8, 8)


def test_numpy_latents_follow_the_mixture_torch_computes(vamp_run):
    """NumPy's draws from the stored moments have the moments of the mixture of the encoder's
    posteriors at the pseudo-inputs, drawn here with torch; the explorer's slider moments are
    that mixture's exact ones."""
    model = load_model(vamp_run.best_path)
    means, logvars = (tensor.double() for tensor in encoder_moments(model))
    count = 200_000
    generator = torch.Generator().manual_seed(0)
    pick = torch.randint(0, PSEUDO_INPUTS, (count,), generator=generator)
    noise = torch.randn(count, model.latent_dim, generator=generator, dtype=torch.float64)
    from_torch = means[pick] + torch.exp(0.5 * logvars[pick]) * noise
    weights = {k: v.numpy() for k, v in read_tensors(vamp_run.best_path, "model.").items()}
    from_numpy = torch.from_numpy(draw_latents(model.spec, weights, count, seed=1)).double()
    spread = from_torch.std(0)
    torch.testing.assert_close(
        from_numpy.mean(0), from_torch.mean(0), atol=0.02 * spread.max(), rtol=0
    )
    torch.testing.assert_close(from_numpy.std(0), spread, atol=0.0, rtol=0.02)
    exact_mean = means.mean(0)
    exact_std = ((torch.exp(logvars) + means**2).mean(0) - exact_mean**2).sqrt()
    moments = Decoder(vamp_run.best_path).moments
    np.testing.assert_allclose(moments.mean, exact_mean.numpy(), atol=1e-5)
    np.testing.assert_allclose(moments.std, exact_std.numpy(), atol=1e-5, rtol=1e-5)
    # Each latent comes from one component: the fraction drawn near each mean is about 1/K.
    np.testing.assert_allclose(moments.std, from_torch.std(0).numpy(), rtol=0.02)


def test_info_export_and_evaluate_name_the_prior(vamp_run, tmp_path, synthetic_data_dir):
    checkpoint = str(vamp_run.best_path)
    shown = runner.invoke(app, ["info", checkpoint, "--json"])
    assert shown.exit_code == 0, shown.output
    model = json.loads(shown.output)["model"]
    assert (model["prior"], model["pseudo_inputs"]) == ("vamp", PSEUDO_INPUTS)
    table = runner.invoke(app, ["info", checkpoint]).output
    assert any(
        line.replace("│", " ").split() == ["model.pseudo_inputs", str(PSEUDO_INPUTS)]
        for line in table.splitlines()
    )
    exported = runner.invoke(app, ["export", checkpoint, str(tmp_path / "shared")])
    assert exported.exit_code == 0, exported.output
    card = (tmp_path / "shared" / "README.md").read_text()
    assert f"| prior | VampPrior with {PSEUDO_INPUTS} pseudo-inputs |" in card
    output = tmp_path / "figures.json"
    evaluated = runner.invoke(
        app,
        ["evaluate", "--checkpoint", checkpoint, "--k", "20", "--data-dir",
         str(synthetic_data_dir), "--no-download", "--output", str(output)],
    )  # fmt: skip
    assert evaluated.exit_code == 0, evaluated.output
    figures = json.loads(output.read_text())
    assert figures["prior"] == "vamp"
    nll, neg_elbo = figures["metrics"]["nll"]["mean"], figures["metrics"]["neg_elbo"]["mean"]
    assert 0 < nll <= neg_elbo


def test_pictures_and_the_explorer_read_it(vamp_run, tmp_path, synthetic_data_dir):
    checkpoint = str(vamp_run.best_path)
    for command in (
        ["inference", "--checkpoint", checkpoint, "--output-dir", str(tmp_path / "inference"),
         "--data-dir", str(synthetic_data_dir), "--no-download"],
        ["visualize", "traverse", "--checkpoint", checkpoint, "--output",
         str(tmp_path / "traverse.png"), "--data-dir", str(synthetic_data_dir), "--no-download"],
    ):  # fmt: skip
        result = runner.invoke(app, command)
        assert result.exit_code == 0, result.output
    decoder = Decoder(checkpoint)
    assert set(decoder.weights) == {
        name for name in decoder.weights if name.startswith(("decoder.", "prior.m", "prior.l"))
    }  # the image-sized pseudo-inputs are never read for sampling
    latent = decoder.sample(seed=4, temperature=1.0)
    assert decoder.pictures(latent[None])[0].startswith("data:image/png;base64,")


# --- exact resume and torchrun ------------------------------------------------------------------


@pytest.mark.parametrize("interrupt_at_step", [3, 6])  # mid-epoch 1, mid-epoch 2
def test_a_run_interrupted_and_resumed_equals_the_uninterrupted_one(
    tiny_config, interrupt_at_step, vamp_run
):
    config = vamp_config(tiny_config)

    def ctrl_c(step: int) -> None:
        if step == interrupt_at_step:
            os.kill(os.getpid(), signal.SIGINT)

    folder = Path(config.train.runs_dir) / "cut"
    with pytest.raises(TrainingInterrupted):
        train(config, folder, step_callback=ctrl_c)
    resumed = train(prepare_resume(folder, {"data_dir": config.data.data_dir}), folder, resume=True)
    expected, got = read_tensors(vamp_run.last_path, ""), read_tensors(resumed.last_path, "")
    assert expected.keys() == got.keys()
    assert "model.prior.means" in got
    for name in expected:
        if not name.startswith("rng."):
            assert torch.equal(expected[name], got[name]), name
    strip = lambda r: {k: v for k, v in r.items() if "second" not in k}  # noqa: E731
    assert [strip(r) for r in resumed.history] == [strip(r) for r in vamp_run.history]


def test_two_processes_train_the_same_weights_as_one(tiny_config):
    """The pseudo-inputs pass the encoder outside DistributedDataParallel's forward (in the
    KL): their gradients, and the encoder's from them, are still averaged over processes."""
    from test_distributed import _flags, _torchrun

    tiny_config.train.bf16 = False
    tiny_config.train.sample_every = 0
    tiny_config.train.batch_size = 40
    config = vamp_config(tiny_config)
    config.train.epochs = 2
    single = train(config, Path(config.train.runs_dir) / "single")
    result = _torchrun(
        2, "ddp", *_flags(config), "--prior=vamp", f"--pseudo-inputs={PSEUDO_INPUTS}"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("best checkpoint:") == 1
    model = load_model(Path(config.train.runs_dir) / "ddp" / "checkpoint_last.safetensors")
    reference = load_model(single.last_path)
    for name, weights in reference.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], weights, atol=1e-4, rtol=1e-4)


# --- the Python API -----------------------------------------------------------------------------


def test_the_python_api_trains_and_scores_it(tmp_path, synthetic_data_dir):
    run = vae.train(
        run_dir=tmp_path / "api", dataset="mnist", data_dir=str(synthetic_data_dir),
        download=False, val_size=40, limit=120, epochs=1, batch_size=40, latent_dim=3,
        hidden_sizes=[16], conv_widths=[4, 8], beta_warmup="1", device="cpu",
        sample_every=0, prior="vamp", pseudo_inputs=4, quiet=True,
    )  # fmt: skip
    model = run.load()
    assert model.prior == "vamp" and "prior=vamp" in repr(model)
    images = (model.sample(6, seed=1) > 0.5).to(torch.uint8) * 255
    elbo = model.elbo(images, k=10)
    log_likelihood = model.log_likelihood(images, k=10)
    assert (log_likelihood >= -elbo.neg_elbo - 1e-4).all()
    with pytest.raises(ConfigError, match="pseudo_inputs sizes the vamp prior"):
        vae.train(run_dir=tmp_path / "bad", data=images, pseudo_inputs=4, quiet=True)
    assert not (tmp_path / "bad").exists()


# --- refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--pseudo-inputs", "7"],
         "--pseudo-inputs sizes the vamp prior, and this run's prior is mog: add --prior vamp, "
         "or leave --pseudo-inputs out"),
        (["--prior", "standard", "--pseudo-inputs", "7"], "this run's prior is standard"),
        (["--model", "ae", "--pseudo-inputs", "7"],
         "--pseudo-inputs sizes the vamp prior, and an autoencoder has no prior: leave "
         "--pseudo-inputs out"),
        (["--prior", "vamp", "--pseudo-inputs", "0"], "--pseudo-inputs: 0 (expected at least 1)"),
        (["--prior", "vamp", "--pseudo-inputs", "10001"], "--pseudo-inputs"),
        (["--prior", "vamp", "--free-bits", "0.5"],
         "--free-bits: 0.5 (expected 0 with the vamp prior: add --prior standard)"),
    ],
)  # fmt: skip
def test_bad_vamp_options_are_one_line(tmp_path, flags, message):
    result = runner.invoke(app, ["train", "bad", "--runs-dir", str(tmp_path), *flags])
    one_line_error(result, 2, message)
    assert not (tmp_path / "bad").exists()


def rewritten(path: Path, change) -> None:
    """``path`` with its safetensors tensors changed in place by ``change(name, array)``."""
    data = path.read_bytes()
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + size])
    body = bytearray(data[8 + size :])
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        start, end = entry["data_offsets"]
        array = np.frombuffer(bytes(body[start:end]), dtype=np.float32).copy()
        change(name, array)
        body[start:end] = array.tobytes()
    path.write_bytes(data[: 8 + size] + bytes(body))


@pytest.mark.parametrize(
    "tensor, shift", [("model.prior.means", 1.0), ("model.prior.logvars", -0.5),
                      ("model.prior.pseudo_input_logits", 2.0)]
)  # fmt: skip
def test_moments_that_are_not_its_pseudo_inputs_are_refused(
    vamp_run, tmp_path, synthetic_data_dir, tensor, shift
):
    run = tmp_path / "run"
    shutil.copytree(vamp_run.run_dir, run)

    def shifted(name: str, array: np.ndarray) -> None:
        if name == tensor:
            array += shift

    for name in ("checkpoint_best.safetensors", "checkpoint_last.safetensors"):
        rewritten(run / name, shifted)
    best = run / "checkpoint_best.safetensors"
    before = best.read_bytes()
    with pytest.raises(CheckpointError, match="VampPrior's stored moments"):
        load_model(best)
    for command in (
        ["evaluate", "--checkpoint", str(best), "--k", "2", "--data-dir",
         str(synthetic_data_dir), "--no-download"],
        ["train", "--resume", str(run), "--epochs", "4", "--data-dir", str(synthetic_data_dir)],
    ):  # fmt: skip
        one_line_error(runner.invoke(app, command), 1, "VampPrior's stored moments")
    assert best.read_bytes() == before


def test_a_checkpoint_with_no_pseudo_inputs_is_refused(vamp_run, tmp_path):
    path = tmp_path / "zero.safetensors"
    data = vamp_run.best_path.read_bytes()
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + size])
    metadata = json.loads(header["__metadata__"]["vae"])
    metadata["model"]["pseudo_inputs"] = 0
    header["__metadata__"]["vae"] = json.dumps(metadata)
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data[8 + size :])
    result = runner.invoke(app, ["info", str(path)])
    one_line_error(result, 1, "a vamp prior needs a positive number of pseudo-inputs, got 0")


def test_the_option_is_in_the_generated_docs():
    table = (REPO / "docs" / "commands" / "train.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| `--pseudo-inputs"))
    assert "500" in row and "--prior vamp" in row
    assert "`vamp`" in next(line for line in table.splitlines() if line.startswith("| `--prior`"))
