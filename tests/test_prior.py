"""The learned mixture-of-Gaussians prior (--prior mog): its density against the textbook
formula, its samples against the mixture, its KL estimate, the importance-weighted NLL against
numerical integration, and training, saving, evaluating and refusing with it."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from conftest import grid_cells
from vae.checkpoint import load_model
from vae.cli import app
from vae.config import RunConfig
from vae.errors import ConfigError
from vae.evaluation import score_batch
from vae.model import MixturePrior, build_model
from vae.objectives import (
    bernoulli_log_likelihood,
    diagonal_gaussian_log_density,
    elbo_terms,
    gaussian_kl,
    standard_normal_log_density,
)
from vae.sampling import prior_latents
from vae.spec import ModelSpec, model_spec
from vae.training import train

runner = CliRunner()


def random_prior(components: int, latent: int, seed: int = 0) -> MixturePrior:
    torch.manual_seed(seed)
    prior = MixturePrior(components, latent)
    with torch.no_grad():
        prior.means.mul_(3.0)
        prior.logvars.normal_(0.0, 1.5)
        prior.logits.normal_(0.0, 2.0)
    return prior


def textbook_log_density(prior: MixturePrior, z: torch.Tensor) -> torch.Tensor:
    """log sum_k pi_k prod_d N(z_d; m_kd, s_kd), one component at a time, in float64."""
    weights = torch.softmax(prior.logits.double(), 0)
    total = torch.zeros(z.shape[0], dtype=torch.float64)
    for k in range(len(weights)):
        normal = torch.distributions.Normal(
            prior.means[k].double(), torch.exp(0.5 * prior.logvars[k].double())
        )
        total += weights[k] * normal.log_prob(z.double()).sum(1).exp()
    return total.log()


def test_density_is_the_mixture_formula():
    prior = random_prior(6, 3)
    z = torch.randn(200, 3) * 3.0
    with torch.no_grad():
        got = prior.log_density(z)
    assert got.dtype == torch.float32 and got.shape == (200,)
    torch.testing.assert_close(got.double(), textbook_log_density(prior, z), atol=1e-5, rtol=0)
    # Leading dimensions are kept: [k, batch, latent] -> [k, batch].
    torch.testing.assert_close(prior.log_density(z.view(4, 50, 3)), got.view(4, 50))


def test_density_integrates_to_one():
    prior = random_prior(3, 1)
    axis = torch.linspace(-100.0, 100.0, 1_000_001, dtype=torch.float64)[:, None]
    with torch.no_grad():
        mass = prior.log_density(axis).double().exp().sum() * (axis[1] - axis[0]).double()
    assert abs(float(mass) - 1.0) < 1e-4


def test_one_centred_unit_component_is_the_standard_normal():
    prior = MixturePrior(1, 4)
    with torch.no_grad():
        prior.means.zero_()
    z = torch.randn(50, 4) * 2
    torch.testing.assert_close(prior.log_density(z), standard_normal_log_density(z))


def test_samples_follow_the_mixture():
    prior = MixturePrior(3, 2)
    with torch.no_grad():
        prior.means.copy_(torch.tensor([[-20.0, 0.0], [0.0, 20.0], [20.0, 0.0]]))
        prior.logvars.copy_(torch.log(torch.tensor([[1.0, 4.0], [0.25, 1.0], [9.0, 1.0]])))
        prior.logits.copy_(torch.log(torch.tensor([0.5, 0.3, 0.2])))
    spec = ModelSpec("mlp", 2, 1, 2, 2, "bce", [], prior="mog", prior_components=3)
    weights = {f"prior.{name}": value.detach().numpy() for name, value in prior.named_parameters()}
    generator = np.random.default_rng(0)
    noise, uniform = generator.standard_normal((60_000, 2)), generator.random(60_000)
    z = torch.from_numpy(prior_latents(spec, weights, noise, uniform))
    component = torch.where(z[:, 0] < -10, 0, torch.where(z[:, 1] > 10, 1, 2))
    shares = torch.bincount(component, minlength=3).float() / len(z)
    torch.testing.assert_close(shares, torch.tensor([0.5, 0.3, 0.2]), atol=0.01, rtol=0)
    for k in range(3):
        members = z[component == k]
        torch.testing.assert_close(members.mean(0), prior.means[k].detach(), atol=0.08, rtol=0)
        expected_std = torch.exp(0.5 * prior.logvars[k].detach())
        torch.testing.assert_close(members.std(0), expected_std, atol=0.05, rtol=0.03)
    # The temperature narrows each component, not the distances between them.
    cooled = torch.from_numpy(prior_latents(spec, weights, noise, uniform, temperature=0.5))
    torch.testing.assert_close(
        cooled[component == 0].std(0), torch.tensor([0.5, 1.0]), atol=0.03, rtol=0
    )
    assert (cooled[:, 0] < -10).float().mean().item() == pytest.approx(0.5, abs=0.01)


def test_kl_estimate_is_log_q_minus_log_p_and_averages_to_the_closed_form():
    mu = torch.tensor([[0.5, -1.0, 2.0]])
    logvar = torch.tensor([[-1.0, 0.3, -0.2]])
    noise = torch.randn(200_000, 3, generator=torch.Generator().manual_seed(1))
    mus, logvars = mu.expand_as(noise), logvar.expand_as(noise)
    decoded = torch.zeros(len(noise), 1, 1, 1)
    x = torch.ones(len(noise), 1, 1, 1)
    terms = elbo_terms(
        decoded, x, mus, logvars, "bce", log_prior=standard_normal_log_density, noise=noise
    )
    z = mus + torch.exp(0.5 * logvars) * noise
    per_image = diagonal_gaussian_log_density(z, mus, logvars) - standard_normal_log_density(z)
    torch.testing.assert_close(terms.per_image_neg_elbo - math.log(2.0), per_image)
    closed_form = gaussian_kl(mu, logvar).sum().item()
    assert terms.kl.item() == pytest.approx(closed_form, abs=0.01)
    with pytest.raises(ValueError, match="noise"):
        elbo_terms(decoded, x, mus, logvars, "bce", log_prior=standard_normal_log_density)
    with pytest.raises(ConfigError, match="free bits"):
        elbo_terms(
            decoded, x, mus, logvars, "bce", 1.0, 0.5, 0.1, standard_normal_log_density, noise
        )


def test_importance_weighted_nll_matches_numerical_integration():
    torch.manual_seed(0)
    model = build_model(
        ModelSpec("mlp", 1, 1, 2, 2, "bce", [6], [], prior="mog", prior_components=3)
    ).eval()
    with torch.no_grad():
        for parameter in model.decoder.parameters():
            parameter.mul_(3.0)
        model.prior.means.copy_(torch.tensor([[-2.0], [0.5], [3.0]]))
        model.prior.logvars.copy_(torch.tensor([[-1.0], [0.0], [-2.0]]))
        model.prior.logits.copy_(torch.tensor([0.0, 1.0, -0.5]))
    x = torch.tensor(
        [[[[1.0, 0.0], [0.0, 1.0]]], [[[1.0, 1.0], [1.0, 1.0]]], [[[0.0, 0.0], [1.0, 0.0]]]]
    )
    grid = torch.linspace(-12.0, 12.0, 8001)[:, None]
    step = float(grid[1] - grid[0])
    with torch.no_grad():
        logits = model.decode(grid)
        exact = torch.stack(
            [
                -torch.logsumexp(
                    bernoulli_log_likelihood(logits, image.expand_as(logits))
                    + model.log_prior(grid),
                    0,
                )
                - math.log(step)
                for image in x
            ]
        )
    scores = score_batch(model, x, k=40_000, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(scores["nll"], exact, atol=0.02, rtol=0)
    assert (scores["nll"] <= scores["neg_elbo"] + 1e-4).all()


def mog_config(config: RunConfig) -> RunConfig:
    config.model.prior = "mog"
    config.model.prior_components = 5
    config.train.sample_every = 1
    return config.validate()


def test_training_learns_the_prior_and_checkpoints_rebuild_it(tiny_config: RunConfig):
    config = mog_config(tiny_config)
    result = train(config, Path(config.train.runs_dir) / "mog")
    model = load_model(result.best_path)
    assert model.spec.prior == "mog" and model.prior is not None
    assert model.prior.means.shape == (5, config.model.latent_dim)
    # Learned: the mixture weights moved away from their equal start.
    assert not torch.allclose(model.prior.logits, torch.zeros(5))
    z = torch.randn(10, config.model.latent_dim)
    again = load_model(result.best_path)
    torch.testing.assert_close(model.log_prior(z), again.log_prior(z))
    assert (Path(config.train.runs_dir) / "mog" / "images" / "samples_epoch_001.png").exists()
    # Resuming continues with the saved prior.
    config.train.epochs += 1
    resumed = train(config, Path(config.train.runs_dir) / "mog", resume=True)
    assert resumed.progress.epoch == config.train.epochs


def test_evaluate_and_generate_a_mixture_prior_model(tmp_path, tiny_config: RunConfig):
    config = mog_config(tiny_config)
    result = train(config, Path(config.train.runs_dir) / "mog")
    output = tmp_path / "figures.json"
    evaluated = runner.invoke(
        app,
        ["evaluate", "--checkpoint", str(result.best_path), "--k", "20", "--data-dir",
         config.data.data_dir, "--no-download", "--output", str(output)],
    )  # fmt: skip
    assert evaluated.exit_code == 0, evaluated.output
    figures = json.loads(output.read_text())
    assert figures["prior"] == "mog"
    nll, neg_elbo = figures["metrics"]["nll"]["mean"], figures["metrics"]["neg_elbo"]["mean"]
    assert 0 < nll <= neg_elbo
    picture = tmp_path / "samples.png"
    generated = runner.invoke(
        app, ["generate", "--checkpoint", str(result.best_path), "--output", str(picture)]
    )
    assert generated.exit_code == 0, generated.output
    cells = grid_cells(picture)
    assert cells.shape[:2] == (8, 8)  # the default 64 samples on an 8 x 8 grid
    assert len({cell.tobytes() for cell in cells.reshape(64, 28, 28)}) == 64  # all different


def test_defaults_give_a_vae_the_mixture_prior_and_an_autoencoder_none(tiny_config):
    assert RunConfig().model.prior == "mog"
    tiny_config.model.model_type = "ae"
    result = train(tiny_config.validate(), Path(tiny_config.train.runs_dir) / "ae")
    model = load_model(result.best_path)
    assert model.spec.prior == "standard" and model.prior is None


def test_model_spec_is_the_model_the_trainer_builds(tiny_config: RunConfig):
    config = mog_config(tiny_config)
    saved = load_model(train(config, Path(config.train.runs_dir) / "spec").best_path).spec
    image = {"channels": saved.channels, "height": saved.height, "width": saved.width}
    assert model_spec(config, image) == saved
    default = model_spec(RunConfig(), {"channels": 1, "height": 28, "width": 28})
    assert (default.architecture, default.prior, default.prior_components) == ("conv", "mog", 500)
    autoencoder = RunConfig().override({"model_type": "ae"})
    spec = model_spec(autoencoder, {"channels": 3, "height": 32, "width": 32})
    assert (spec.prior, spec.prior_components, spec.channels) == ("standard", 0, 3)
    mlp = model_spec(RunConfig().override({"architecture": "mlp"}), image)
    assert mlp.conv_widths == [] and mlp.decoder_conv_widths is None


def test_runs_from_before_the_prior_option_resume_with_their_standard_prior(tiny_config):
    """Their saved configuration has no prior; the default (mog) must not replace N(0, I)."""
    tiny_config.model.prior = "standard"
    run_dir = Path(tiny_config.train.runs_dir) / "old"
    train(tiny_config.validate(), run_dir)
    for name in ("checkpoint_last.safetensors", "checkpoint_best.safetensors"):
        path = run_dir / name
        data = path.read_bytes()
        (size,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8 : 8 + size])
        metadata = json.loads(header["__metadata__"]["vae"])
        del metadata["config"]["model"]["prior"], metadata["config"]["model"]["prior_components"]
        del metadata["model"]["prior"], metadata["model"]["prior_components"]
        header["__metadata__"]["vae"] = json.dumps(metadata)
        text = json.dumps(header).encode()
        path.write_bytes(struct.pack("<Q", len(text)) + text + data[8 + size :])
    assert load_model(run_dir / "checkpoint_last.safetensors").spec.prior == "standard"
    resumed = runner.invoke(
        app,
        ["train", "--resume", str(run_dir), "--epochs", "3", "--quiet",
         "--data-dir", tiny_config.data.data_dir],
    )  # fmt: skip
    assert resumed.exit_code == 0, resumed.output
    model = load_model(run_dir / "checkpoint_last.safetensors")
    assert model.prior is None and model.spec.prior == "standard"


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--prior", "flow"], "--prior: 'flow' (expected one of standard, mog, vamp)"),
        (["--prior", "mog", "--prior-components", "0"], "--prior-components: 0"),
        (
            ["--prior", "mog", "--free-bits", "0.5"],
            "--free-bits: 0.5 (expected 0 with the mog prior: add --prior standard)",
        ),
        (["--prior", "mog", "--model", "ae"], "an autoencoder has no prior"),
        (["--free-bits", "1"], "add --prior standard"),
    ],
)
def test_bad_prior_options_are_one_line(tmp_path, flags, message):
    result = runner.invoke(app, ["train", "bad", "--runs-dir", str(tmp_path), *flags])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "bad").exists()
