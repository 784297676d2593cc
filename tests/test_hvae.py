"""The hierarchical VAE (``--model hvae``): its tensors and its code, its KL per group and its
NLL estimate against sums computed another way (a brute-force integral over a 2-D latent), a
tiny run whose loss falls, its checkpoints (round trip, exact resume after Ctrl-C and after
kill -9, torchrun), sampling with a temperature with and without torch, the pictures, the
explorer, ``info``, the Python API, gradient skipping and the refusals."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from conftest import assert_runs_without_torch, grid_cells, one_line_error
from vae.checkpoint import build_metadata, load_model, read_header, read_tensors, save_checkpoint
from vae.cli import app
from vae.errors import ConfigError, TrainingInterrupted
from vae.evaluation import score_batch
from vae.model import build_model
from vae.models.hierarchical.densities import gaussian_kl_between, log_densities
from vae.models.hierarchical.module import HierarchicalModule
from vae.numpy_sampling import decode as numpy_decode
from vae.numpy_sampling import load_decoder
from vae.objectives import elbo_terms, log_likelihood
from vae.sampling import draw_latents, sample_arrays, sample_from_model
from vae.spec import ModelSpec, expected_tensors
from vae.trainer.gradients import apply_gradients
from vae.training import prepare_resume, train

runner = CliRunner()
BIN = Path(sys.executable).parent

# A run that trains in seconds: 2 groups of 2 dimensions, 4-channel cells, a 3-component
# mixture on the top group.
HVAE_FLAGS = [
    "--model", "hvae", "--latent-dim", "4", "--latent-groups", "2", "--cell-channels", "4",
    "--conv-widths", "4,8", "--prior-components", "3", "--limit", "120", "--val-size", "40",
    "--batch-size", "40", "--beta-warmup", "1", "--device", "cpu", "--no-download", "--quiet",
]  # fmt: skip


def hvae_spec(**changes) -> ModelSpec:
    base = dict(architecture="conv", latent_dim=6, channels=1, height=28, width=28,
                likelihood="bce", hidden_sizes=[], conv_widths=[4, 8], model_type="hvae",
                prior="standard", latent_groups=3, cell_channels=4)  # fmt: skip
    return ModelSpec(**{**base, **changes})


def random_model(spec: ModelSpec, scale: float = 0.3) -> HierarchicalModule:
    """Every weight drawn (the residual cells' last convolutions start at zero otherwise)."""
    torch.manual_seed(0)
    model = build_model(spec).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, scale)
    assert isinstance(model, HierarchicalModule)
    return model


def train_cli(runs: Path, name: str, data_dir: Path, *extra: str):
    result = runner.invoke(
        app, ["train", name, "--runs-dir", str(runs), "--data-dir", str(data_dir), *HVAE_FLAGS,
              *extra],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return runs / name


@pytest.fixture(scope="module")
def hvae_run(tmp_path_factory, synthetic_data_dir) -> Path:
    """A tiny hvae run of 3 epochs (read-only)."""
    return train_cli(tmp_path_factory.mktemp("hvae"), "tiny", synthetic_data_dir, "--epochs", "3")


# --- the model -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [{}, {"prior": "mog", "prior_components": 5},
     {"likelihood": "mse", "learned_sigma": True, "channels": 3, "conv_widths": [4, 8, 8],
      "decoder_conv_widths": [6, 4, 5], "height": 20, "width": 24}],
)  # fmt: skip
def test_the_module_holds_the_tensors_of_its_layout(changes):
    spec = hvae_spec(**changes)
    model = build_model(spec)
    table = expected_tensors(spec)
    assert {name: tuple(t.shape) for name, t in model.state_dict().items()} == {
        name: shape.shape for name, shape in table.items()
    }
    # Group 1 (the top) has no prior head: its prior is the prior setting's.
    assert "decoder.groups.0.prior.linear.weight" not in table
    assert "decoder.groups.1.prior.linear.weight" in table
    x = torch.rand(3, spec.channels, spec.height, spec.width)
    mean, logvar = model.encode(x)
    assert mean.shape == logvar.shape == (3, spec.latent_dim)
    assert model.decode(mean).shape == x.shape
    assert model.sample(2).shape == (2, spec.channels, spec.height, spec.width)


def test_decoding_the_encoded_code_is_the_reconstruction_from_the_posterior_means():
    """The code of each lower group is in its prior's standard-normal coordinates, so decoding
    ``encode``'s means walks the posterior means; its KL to N(0, I) is the group's own."""
    model = random_model(hvae_spec())
    x = torch.rand(4, 1, 28, 28)
    mean, logvar = model.encode(x)
    with torch.no_grad():
        decoded, posterior, prior = model.evaluation_pass(x, None)
    torch.testing.assert_close(model.decode_fast(mean), decoded, rtol=1e-4, atol=1e-4)
    q_mu, q_logvar = posterior.chunk(2, 1)
    p_mu, p_logvar = prior.chunk(2, 1)
    lower = slice(2, 6)
    kl_in_code = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar)[:, lower]
    own = gaussian_kl_between(
        q_mu[:, lower], q_logvar[:, lower], p_mu[:, lower], p_logvar[:, lower]
    )
    torch.testing.assert_close(kl_in_code, own, rtol=1e-4, atol=1e-5)


def test_the_kl_is_the_sum_of_the_groups_and_agrees_with_sampled_log_densities():
    model = random_model(hvae_spec(), scale=0.2)
    x = (torch.rand(2, 1, 28, 28) > 0.5).float()
    generator = torch.Generator().manual_seed(1)
    noise = torch.randn(2, 20_000, 6, generator=generator)
    with torch.no_grad():
        _, posterior, prior = model(x.repeat_interleave(20_000, 0), noise=noise.flatten(0, 1))
        kl, per_dimension = model.kl_term(posterior, prior, noise.flatten(0, 1))
        parts = model.family.kl_parts(model, posterior, prior, noise.flatten(0, 1))
        ratio = model.family.log_prior_ratio(model, posterior, prior, noise.flatten(0, 1))
    assert list(parts) == ["kl_group1", "kl_group2", "kl_group3"]
    torch.testing.assert_close(sum(parts.values()), kl)
    torch.testing.assert_close(per_dimension.sum(1), kl)
    # The analytic KL of each group given the groups above, and log q - log p at the samples,
    # estimate the same expectation.
    analytic, sampled = kl.view(2, -1), (-ratio).view(2, -1)
    error = sampled.std(1) / math.sqrt(20_000)
    assert ((analytic.mean(1) - sampled.mean(1)).abs() < 4 * error + 1e-3).all()


def _brute_force_log_likelihood(model: HierarchicalModule, x: torch.Tensor) -> torch.Tensor:
    """log p(x) of a model with two 1-D groups by a sum over a grid of codes: p(x) = sum over
    c of p(x | decode(c)) p(c) dc, with p(c) the top prior times N(0, 1) (the code of the lower
    group is standard normal: z_2 = mu(z_1) + sigma(z_1) c_2)."""
    step, side = 0.025, 7.0
    axis = torch.arange(-side, side + step / 2, step)
    grid = torch.cartesian_prod(axis, axis)
    with torch.no_grad():
        log_prior = model.latent_prior.log_density(model, grid)
        totals = []
        for image in x:
            log_px = []
            for start in range(0, len(grid), 50_000):
                decoded = model.decode(grid[start : start + 50_000])
                target = image.expand(len(decoded), *image.shape)
                log_px.append(log_likelihood(decoded, target, "bce"))
            totals.append(torch.logsumexp(torch.cat(log_px) + log_prior, 0) + 2 * math.log(step))
    return torch.stack(totals)


@pytest.mark.parametrize("prior", ["standard", "mog"])
def test_the_importance_weighted_nll_converges_to_the_integral_over_the_latent(prior):
    """The proposal is the whole top-down posterior; its log weights use the groups' own
    densities, the integral the code's: two computations that must meet."""
    spec = hvae_spec(height=8, width=8, conv_widths=[2], latent_dim=2, latent_groups=2,
                     cell_channels=2, prior=prior, prior_components=3 if prior == "mog" else 0)  # fmt: skip
    model = random_model(spec, scale=0.5)
    with torch.no_grad():  # posteriors near their priors: a proposal whose estimate converges
        for group in model.encoder.groups:
            group.posterior.linear.weight.normal_(0.0, 0.03)
            group.posterior.linear.bias.normal_(0.0, 0.03)
    x = (torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(2)) > 0.5).float()
    exact = _brute_force_log_likelihood(model, x)
    scores = score_batch(model, x, 20_000, torch.Generator().manual_seed(0))
    # An error in any group's density would move it by far more (a posterior shifted by 0.1
    # sigma already costs 0.005 nats per dimension in the weights' mean).
    torch.testing.assert_close(scores["nll"], -exact, atol=0.05, rtol=0)
    # The ELBO bounds it from below (its -ELBO is above the NLL).
    assert (scores["neg_elbo"] > -exact).all()


def test_evaluation_draws_are_the_training_passes_values():
    """Importance sampling computes each level's share of the posterior head once per image
    (the 1x1 layer is linear); its draws must be those of the posterior pass on the features
    repeated for every sample, to float rounding."""
    model = random_model(hvae_spec(latent_groups=3, latent_dim=6), scale=0.15)
    x = (torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    eps = torch.randn(5, 4, model.latent_dim, generator=torch.Generator().manual_seed(2))
    noise = eps.flatten(0, 1)  # sample-major, as the draws are
    with torch.no_grad():
        decoded, log_p, log_q = model.importance_posterior(x).samples(eps)
        features = [f.repeat(5, 1, 1, 1) for f in model._features(x)]
        expected, posterior, prior = model._posterior_pass(features, noise, fast=True)
        expected_p, expected_q = log_densities(model, posterior, prior, noise)
    scale = expected.abs().max()
    assert scale > 0.5 and log_q.std() > 0.1  # not a trivial model
    torch.testing.assert_close(decoded, expected, atol=1e-5 * scale, rtol=0)
    torch.testing.assert_close(log_p, expected_p.view(5, 4), atol=1e-3, rtol=1e-6)
    torch.testing.assert_close(log_q, expected_q.view(5, 4), atol=1e-3, rtol=1e-6)


# --- training ------------------------------------------------------------------------------------


def test_a_tiny_run_lowers_its_loss_and_records_each_groups_kl(hvae_run):
    records = [json.loads(line) for line in (hvae_run / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["val_neg_elbo"] < records[0]["val_neg_elbo"]
    assert records[-1]["train_loss"] < records[0]["train_loss"]
    for record in records:
        groups = record["val_kl_group1"] + record["val_kl_group2"]
        assert groups == pytest.approx(record["val_kl"], rel=1e-5, abs=1e-5)
    config = (hvae_run / "config.yaml").read_text()
    assert "latent_groups: 2" in config and "cell_channels: 4" in config


def test_info_shows_each_group_with_its_validation_kl(hvae_run):
    result = runner.invoke(app, ["info", str(hvae_run / "checkpoint_best.safetensors"), "--json"])
    assert result.exit_code == 0, result.output
    described = json.loads(result.output)
    groups = described["groups"]
    assert list(groups) == ["group 1 (top)", "group 2 (bottom)"]
    assert groups["group 2 (bottom)"]["code_dimensions"] == "z2 to z3"
    assert groups["group 1 (top)"]["validation_kl"] == described["validation"]["kl_group1"]
    assert described["model"]["latent_groups"] == 2
    assert described["model"]["hidden_sizes"] == []


def test_every_label_takes_a_dimensions_group_from_the_family():
    from vae.models import family_named

    hierarchy, plain = family_named("hvae"), family_named("vae")
    assert hierarchy.code_groups(6, 3) == [1, 1, 2, 2, 3, 3]
    assert plain.code_groups(6, 0) is None
    assert hierarchy.code_groups(7, 3) is None and hierarchy.code_groups(6, 0) is None
    # info reads groups from metadata no check has passed: odd figures give no groups, no crash.
    for latent, groups in ((2, 4), (10**9, 3), (6, 0), (6, 10**6), ("6", 3), (6.0, 3)):
        assert (
            hierarchy.describe_groups({"latent_dim": latent, "latent_groups": groups}, {}) is None
        )
    from vae.info import _latent_groups

    for model_type in (["hvae"], {"hvae": 1}, None, 3):
        metadata = {"model": {"model_type": model_type, "latent_dim": 6, "latent_groups": 3}}
        assert _latent_groups(metadata) is None
    described = hierarchy.describe_groups({"latent_dim": 6, "latent_groups": 3}, {"kl_group2": 1.5})
    assert described == {
        "group 1 (top)": {"latent_dim": 2, "code_dimensions": "z0 to z1"},
        "group 2": {"latent_dim": 2, "code_dimensions": "z2 to z3", "validation_kl": 1.5},
        "group 3 (bottom)": {"latent_dim": 2, "code_dimensions": "z4 to z5"},
    }


def test_a_checkpoint_round_trips_and_the_python_api_samples_as_generate(hvae_run, tmp_path):
    import vae

    path = hvae_run / "checkpoint_best.safetensors"
    model = vae.load(path)
    assert model.family == "hvae" and model.latent_dim == 4 and model.prior == "mog"
    copy = vae.load(model.save(tmp_path / "copy.safetensors"))
    before, after = (
        read_tensors(path, "model."),
        read_tensors(tmp_path / "copy.safetensors", "model."),
    )
    assert before.keys() == after.keys()
    assert all(torch.equal(before[name], after[name]) for name in before)
    images = model.sample(6, seed=3, temperature=0.8)
    torch.testing.assert_close(copy.sample(6, seed=3, temperature=0.8), images)
    picture = tmp_path / "samples.png"
    result = runner.invoke(app, ["generate", "--checkpoint", str(path), "--output", str(picture),
                                 "--num-samples", "6", "--grid-size", "3", "--seed", "3",
                                 "--temperature", "0.8"])  # fmt: skip
    assert result.exit_code == 0, result.output
    cells = grid_cells(picture).reshape(6, 28, 28).astype(int)
    expected = (images[:, 0].numpy() * 255).round().astype(int)
    assert np.abs(cells - expected).max() <= 1
    x = torch.rand(5, 1, 28, 28)
    posterior = model.encode(x)
    assert posterior.mean.shape == posterior.variance.shape == (5, 4)
    torch.testing.assert_close(model.reconstruct(x), model.decode(posterior.mean))
    nll = model.log_likelihood((x > 0.5).float(), k=20)
    assert nll.shape == (5,) and torch.isfinite(nll).all()


def test_training_from_python_takes_the_hierarchys_settings(tmp_path, synthetic_data_dir):
    import vae

    run = vae.train(run_dir=tmp_path / "api", data_dir=str(synthetic_data_dir), download=False,
                    model_type="hvae", latent_dim=6, latent_groups=3, cell_channels=2,
                    conv_widths=[4, 8], prior="standard", limit=80, val_size=20, epochs=1,
                    batch_size=40, sample_every=0, device="cpu", quiet=True)  # fmt: skip
    model = run.load()
    assert model.module.spec.latent_groups == 3 and model.module.spec.cell_channels == 2
    assert {"val_kl_group1", "val_kl_group2", "val_kl_group3"} <= set(run.history[-1])


def _resumable(tiny_config):
    tiny_config.model.model_type, tiny_config.model.hidden_sizes = "hvae", []
    tiny_config.model.latent_groups, tiny_config.model.cell_channels = 2, 4
    tiny_config.model.prior, tiny_config.model.prior_components = "mog", 3
    tiny_config.objective.beta_warmup = "3steps"
    tiny_config.train.epochs, tiny_config.train.sample_every = 3, 0
    tiny_config.train.batch_size = 100  # 2 steps an epoch
    return tiny_config


@pytest.mark.parametrize("interrupt_at_step", [3])  # mid-epoch 2
def test_an_interrupted_run_resumes_exactly(tiny_config, interrupt_at_step):
    config = _resumable(tiny_config)
    runs = Path(config.train.runs_dir)
    reference = train(config, runs / "whole")

    def ctrl_c(step: int) -> None:
        if step == interrupt_at_step:
            os.kill(os.getpid(), signal.SIGINT)

    folder = runs / "cut"
    with pytest.raises(TrainingInterrupted):
        train(config, folder, step_callback=ctrl_c)
    assert (
        read_header(folder / "checkpoint_last.safetensors").training_state["progress"]["step"]
        == interrupt_at_step
    )
    with pytest.raises(ConfigError, match="latent_groups cannot change on resume"):
        prepare_resume(folder, {"latent_groups": 4})
    resumed = train(prepare_resume(folder, {"data_dir": config.data.data_dir}), folder, resume=True)
    expected, got = (read_tensors(r.last_path, "model.") for r in (reference, resumed))
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[name], got[name]) for name in expected)
    strip = lambda r: {k: v for k, v in r.items() if "second" not in k}  # noqa: E731
    assert [strip(r) for r in resumed.history] == [strip(r) for r in reference.history]


def test_a_run_killed_with_sigkill_resumes_to_the_uninterrupted_weights(
    tmp_path, synthetic_data_dir
):
    flags = ["--epochs", "3", "--sample-every", "0"]
    reference = train_cli(tmp_path, "whole", synthetic_data_dir, *flags)
    command = [str(BIN / "train"), "killed", "--runs-dir", str(tmp_path), "--data-dir",
               str(synthetic_data_dir), *HVAE_FLAGS, *flags]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = tmp_path / "killed" / "checkpoint_last.safetensors"
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        if last.exists():  # written whole (renamed into place) after the first epoch
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    assert process.wait(timeout=60) == -signal.SIGKILL, "the run ended before it was killed"
    result = runner.invoke(app, ["train", "--resume", str(tmp_path / "killed"), "--data-dir",
                                 str(synthetic_data_dir), "--quiet"])  # fmt: skip
    assert result.exit_code == 0, result.output
    expected = read_tensors(reference / "checkpoint_last.safetensors", "model.")
    got = read_tensors(tmp_path / "killed" / "checkpoint_last.safetensors", "model.")
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[name], got[name]) for name in expected)


def test_two_processes_train_the_same_weights_as_one(tiny_config):
    """Every parameter is used in every step (the top prior's in the KL): DDP averages them all."""
    from test_distributed import _torchrun

    config = _resumable(tiny_config)
    config.train.epochs, config.train.bf16, config.train.batch_size = 2, False, 40
    config.objective.beta_warmup = "1"
    single = train(config, Path(config.train.runs_dir) / "single")
    flags = [f"--data-dir={config.data.data_dir}", "--no-download", "--val-size=40",
             "--model=hvae", "--latent-dim=4", "--latent-groups=2", "--cell-channels=4",
             "--conv-widths=8,16", "--prior=mog", "--prior-components=3", "--beta-warmup=1",
             "--epochs=2", "--batch-size=40", "--device=cpu", "--no-bf16", "--sample-every=0",
             f"--runs-dir={config.train.runs_dir}", "--quiet"]  # fmt: skip
    result = _torchrun(2, "ddp", *flags)
    assert result.returncode == 0, result.stderr[-2000:]
    model = load_model(Path(config.train.runs_dir) / "ddp" / "checkpoint_last.safetensors")
    reference = load_model(single.last_path)
    for name, weights in reference.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], weights, atol=1e-4, rtol=1e-4)


def test_it_trains_on_the_iwae_bound(tiny_config):
    config = _resumable(tiny_config)
    config.train.epochs, config.objective.objective, config.objective.iw_samples = 1, "iwae", 3
    result = train(config, Path(config.train.runs_dir) / "iwae")
    record = result.history[-1]
    assert math.isfinite(record["val_neg_iwae_k3"])
    assert record["val_neg_iwae_k3"] <= record["val_neg_elbo"] + 1.0


# --- gradient skipping ---------------------------------------------------------------------------


def test_a_step_whose_gradient_norm_is_an_outlier_is_skipped():
    layer = torch.nn.Linear(3, 1)
    optimizer = torch.optim.Adam(layer.parameters(), lr=0.1)
    before = [p.detach().clone() for p in layer.parameters()]
    layer(torch.full((1, 3), 100.0)).sum().backward()
    parameters = list(layer.parameters())
    assert not apply_gradients(parameters, optimizer, clip=0.0, skip=1.0)
    assert all(torch.equal(p, q) for p, q in zip(parameters, before, strict=True))
    assert optimizer.state == {}  # Adam's moments untouched
    assert apply_gradients(parameters, optimizer, clip=0.0, skip=1000.0)
    assert not all(torch.equal(p, q) for p, q in zip(parameters, before, strict=True))
    layer.weight.grad.fill_(float("nan"))
    assert not apply_gradients(parameters, optimizer, clip=1.0, skip=1000.0)


# Every step skipped: torch notes that the learning-rate schedule steps before any update.
@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)`")
def test_grad_skip_counts_the_skipped_steps_and_a_high_bar_changes_nothing(tiny_config):
    tiny_config.train.sample_every, tiny_config.train.epochs = 0, 1
    runs = Path(tiny_config.train.runs_dir)
    plain = train(tiny_config, runs / "plain")
    tiny_config.train.grad_skip = 1e9
    high = train(tiny_config, runs / "high")
    assert high.history[-1]["skipped_steps"] == 0
    assert "skipped_steps" not in plain.history[-1]
    expected, got = (read_tensors(r.last_path, "model.") for r in (plain, high))
    assert all(torch.equal(expected[name], got[name]) for name in expected)
    tiny_config.train.grad_skip = 1e-9  # every step: the weights stay as initialised
    low = train(tiny_config, runs / "low")
    assert low.history[-1]["skipped_steps"] == low.progress.step
    assert low.history[-1]["val_neg_elbo"] == pytest.approx(
        json.loads((runs / "low" / "metrics.jsonl").read_text().splitlines()[0])["val_neg_elbo"]
    )


# --- sampling, pictures and the explorer ---------------------------------------------------------


@pytest.mark.parametrize("prior", ["standard", "mog"])
def test_numpy_samples_are_the_torch_models_with_every_groups_spread_tempered(prior):
    spec = hvae_spec(prior=prior, prior_components=4 if prior == "mog" else 0)
    model = random_model(spec, scale=0.2)
    weights = {name: value.numpy() for name, value in model.state_dict().items()}
    for count, seed, temperature in ((7, 0, 1.0), (5, 3, 0.6)):
        expected = sample_from_model(model, count, seed, temperature).numpy()
        got = sample_arrays(spec, weights, count, seed, temperature)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    codes = draw_latents(spec, weights, 5, 3, 0.5)
    whole = draw_latents(spec, weights, 5, 3, 1.0)
    np.testing.assert_allclose(codes[:, 2:], 0.5 * whole[:, 2:], rtol=1e-6)  # lower groups' code
    # At temperature 0 every seed draws every group at its prior mean: one image.
    cold = (
        [sample_arrays(spec, weights, 1, seed, 0.0)[0] for seed in (1, 2)]
        if prior == "standard"
        else []
    )
    for image in cold[1:]:
        np.testing.assert_array_equal(image, cold[0])
    with torch.no_grad():
        z = torch.randn(3, 6)
        torch.testing.assert_close(
            torch.from_numpy(numpy_decode(spec, weights, z.numpy())),
            model.decoded_to_image(model.decode(z)), rtol=0, atol=1e-5,
        )  # fmt: skip


def test_generate_on_the_cpu_imports_no_torch(hvae_run, tmp_path):
    target = tmp_path / "samples.png"
    argv = ["generate", "--checkpoint", str(hvae_run / "checkpoint_best.safetensors"),
            "--output", str(target), "--temperature", "0.7"]  # fmt: skip
    assert_runs_without_torch("generate_app", argv)
    assert target.exists()


def test_the_pictures_and_the_explorer_work_on_every_group(hvae_run, tmp_path, synthetic_data_dir):
    from test_explore import client_for

    checkpoint = str(hvae_run / "checkpoint_best.safetensors")
    # A run this short leaves its units inactive: the traversal is asked to show them anyway.
    for command, extra in (("traverse", ["--include-inactive"]), ("interpolate", []),
                           ("latent-map", []), ("manifold", [])):  # fmt: skip
        result = runner.invoke(app, ["visualize", command, "--checkpoint", checkpoint,
                                     "--data-dir", str(synthetic_data_dir), "--no-download",
                                     "--output", str(tmp_path / f"{command}.png"), *extra])  # fmt: skip
        assert result.exit_code == 0, (command, result.output)
    client = client_for(hvae_run / "checkpoint_best.safetensors", synthetic_data_dir)
    assert client.get("/api/model").json()["latent_dim"] == 4
    # The explorer's sample is generate's first: every group's code, drawn as generate draws.
    sampled = client.post("/api/sample", json={"seed": 5, "temperature": 0.7}).json()
    spec, weights = load_decoder(checkpoint)
    np.testing.assert_allclose(sampled["z"], draw_latents(spec, weights, 1, 5, 0.7)[0], atol=1e-4)
    encoded = client.post("/api/encode/test", json={"index": 0}).json()
    assert len(encoded["z"]) == 4 and encoded["reconstruction"].startswith("data:image/png")


# --- refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flags, fragments",
    [
        (["--model", "hvae", "--architecture", "mlp"], ["hierarchical VAE is convolutional", "--architecture conv"]),
        (["--model", "hvae", "--latent-dim", "5", "--latent-groups", "2"], ["--latent-dim 5 does not split into --latent-groups 2"]),
        (["--latent-groups", "3"], ["--latent-groups is a hierarchical VAE's setting", "--model hvae"]),
        (["--model", "ae", "--cell-channels", "8"], ["--cell-channels is a hierarchical VAE's setting"]),
        (["--model", "hvae", "--prior", "vamp"], ["single-level encoder", "--prior standard or mog"]),
        (["--model", "hvae", "--hidden-sizes", "64"], ["--hidden-sizes sizes dense layers", "leave --hidden-sizes out"]),
        (["--model", "hvae", "--latent-groups", "1"], ["--latent-groups", "at least 2"]),
        (["--model", "hvae", "--latent-groups", "1000"], ["--latent-groups", "at most 256"]),
        (["--model", "hvae", "--cell-channels", "0"], ["--cell-channels", "at least 1"]),
        (["--model", "hvae", "--conv-widths", "8,16", "--decoder-conv-widths", "8,16,32"], ["give --decoder-conv-widths 2 widths, as many as --conv-widths"]),
        (["--grad-skip", "-1"], ["--grad-skip", "zero (off) or positive"]),
    ],
)  # fmt: skip
def test_settings_that_do_not_fit_a_hierarchy_are_one_line(tmp_path, flags, fragments):
    result = runner.invoke(
        app, ["train", "r", "--runs-dir", str(tmp_path), "--epochs", "1", *flags]
    )
    one_line_error(result, 2, *fragments)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"latent_dim": 7}, "model latent_dim 7 does not split into 3 equal groups"),
        ({"latent_groups": 1}, "model latent_groups must be 2 or more"),
        ({"latent_groups": 10**6}, "model latent_groups is 1,000,000, more than the limit"),
        ({"cell_channels": True}, "model cell_channels must be a positive integer"),
        ({"architecture": "mlp"}, "model architecture must be conv"),
        ({"prior": "vamp", "pseudo_inputs": 3}, "top group takes the standard or mog prior"),
        ({"hidden_sizes": [8]}, "has no dense layers"),
        ({"decoder_conv_widths": [4, 8, 8]}, "as many conv widths as its encoder"),
        ({"model_type": "vae", "hidden_sizes": [8]}, "model latent_groups must be 0 for model type vae"),
    ],
)  # fmt: skip
def test_a_checkpoints_spec_is_checked_before_anything_is_built(changes, message):
    with pytest.raises(ConfigError, match=message):
        expected_tensors(hvae_spec(**changes))


def test_a_hostile_hierarchy_is_one_line_on_every_reader(tmp_path):
    spec = hvae_spec()
    model = random_model(spec)
    path = tmp_path / "model.safetensors"
    metadata = build_metadata(model=model, data_info={"dataset": "mnist"}, config={}, epoch=1,
                              step=1, validation=None, kind="best", run_name="h")  # fmt: skip
    metadata["model"]["latent_groups"] = 2  # 6 dimensions in 2 groups: other tensor shapes
    save_checkpoint(path, model, metadata)
    for argv in (["info", str(path)], ["generate", "--checkpoint", str(path), "--output",
                                        str(tmp_path / "s.png")]):  # fmt: skip
        result = runner.invoke(app, argv)
        one_line_error(result, 1, str(path))


def test_elbo_terms_of_the_forward_pass_train_every_parameter():
    """DDP needs every parameter in every step's graph: the loss reaches them all."""
    model = build_model(hvae_spec(prior="mog", prior_components=3))
    x = (torch.rand(4, 1, 28, 28) > 0.5).float()
    noise = torch.randn(4, 6)
    decoded, posterior, prior = model(x, noise=noise)
    kl = model.kl_term(posterior, prior, noise)
    elbo_terms(decoded, x, posterior, prior, "bce", kl=kl).loss.backward()
    unused = [name for name, p in model.named_parameters() if p.grad is None]
    assert not unused, unused


def test_the_exported_card_names_the_groups(hvae_run, tmp_path):
    exported = runner.invoke(app, ["export", str(hvae_run), str(tmp_path / "card")])
    assert exported.exit_code == 0, exported.output
    card = (tmp_path / "card" / "README.md").read_text(encoding="utf-8")
    assert "| latent groups | 2, drawn top-down |" in card
