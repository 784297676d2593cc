"""The IWAE objective (``--objective iwae --iw-samples K``, Burda et al. 2016): the K-sample bound
against a brute-force sum, K = 1 as the ELBO, tighter with K; a run that trains it, names it and
picks its best checkpoint on it; its checkpoints, exact resume, torchrun, and the refusals."""

from __future__ import annotations

import json
import math
import os
import signal
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from conftest import REPO, one_line_error
from vae.checkpoint import read_header, read_metadata, read_tensors
from vae.cli import app
from vae.config import RunConfig
from vae.errors import ConfigError, TrainingInterrupted
from vae.loss_name import iwae_loss_name, training_loss_name
from vae.model import build_model
from vae.objectives import elbo_terms, kl_estimate, standard_normal_log_density
from vae.plots import curve_panels
from vae.spec import ModelSpec
from vae.trainer.objective import RunObjective
from vae.training import prepare_resume, train

runner = CliRunner()


def tiny_model(prior: str = "standard", likelihood: str = "bce", sharpen: float = 1.0):
    """A random mlp VAE on 8x8 images, latent 2 (its decoder's weights times ``sharpen``: a
    peakier likelihood, whose posterior the encoder matches worse)."""
    torch.manual_seed(0)
    spec = ModelSpec(architecture="mlp", latent_dim=2, channels=1, height=8, width=8,
                     likelihood=likelihood, hidden_sizes=[16], model_type="vae", prior=prior,
                     prior_components=3 if prior == "mog" else 0,
                     pseudo_inputs=3 if prior == "vamp" else 0)  # fmt: skip
    model = build_model(spec)
    with torch.no_grad():
        for parameter in model.decoder.parameters():
            parameter.mul_(sharpen)
    return model


def run_objective(samples: int, likelihood: str = "bce") -> RunObjective:
    config = RunConfig()
    config.objective.objective, config.objective.iw_samples = "iwae", samples
    config.objective.likelihood = likelihood
    return RunObjective(config, training_loss_name(config.to_dict()))


def images(likelihood: str = "bce", count: int = 3) -> torch.Tensor:
    generator = torch.Generator().manual_seed(5)
    x = torch.rand(count, 1, 8, 8, generator=generator)
    return (x > 0.5).float() if likelihood == "bce" else x


def bound_terms(model, x, noise, beta=1.0):
    """The training step's terms for images ``x`` and posterior noise [batch, K, latent]."""
    decoded, mu, logvar = model(x, noise=noise)
    objective = run_objective(noise.shape[1], model.spec.likelihood)
    return objective.bound_terms(model, decoded, x, mu, logvar, noise, beta)


def brute_force_neg_bound(model, x, noise) -> float:
    """-log (1/K) sum_k p(x, z_k) / q(z_k|x), averaged over the images, one image and one sample
    at a time in float64 with each density written out."""
    log_2pi = math.log(2 * math.pi)
    spec = model.spec
    with torch.no_grad():
        mu, logvar = (t.double() for t in model.encode(x))
        total = 0.0
        for i in range(x.shape[0]):
            std = torch.exp(0.5 * logvar[i])
            log_w = []
            for k in range(noise.shape[1]):
                z = mu[i] + std * noise[i, k].double()
                out = model.decode(z.float().unsqueeze(0))[0].double()
                target = x[i].double()
                if spec.likelihood == "bce":
                    p = torch.sigmoid(out)
                    log_px = (target * torch.log(p) + (1 - target) * torch.log(1 - p)).sum()
                else:
                    sigma = 0.1
                    log_px = (-0.5 * ((target - out) / sigma) ** 2 - math.log(sigma)
                              - 0.5 * log_2pi).sum()  # fmt: skip
                if spec.prior == "mog":
                    weights = torch.softmax(model.prior.logits.double(), 0)
                    density = 0.0
                    for c in range(len(weights)):
                        m, v = model.prior.means[c].double(), model.prior.logvars[c].double()
                        per_dim = torch.exp(-0.5 * (z - m) ** 2 / torch.exp(v)) / torch.sqrt(
                            2 * math.pi * torch.exp(v)
                        )
                        density += weights[c] * per_dim.prod()
                    log_pz = torch.log(density)
                elif spec.prior == "vamp":  # the mean of q(z|u_j) over the pseudo-inputs u_j
                    pseudo = torch.sigmoid(model.prior.pseudo_input_logits)
                    means, logvars = (t.double() for t in model.encode(pseudo))
                    per_dim = torch.exp(-0.5 * (z - means) ** 2 / torch.exp(logvars)) / torch.sqrt(
                        2 * math.pi * torch.exp(logvars)
                    )
                    log_pz = torch.log(per_dim.prod(1).mean())
                else:
                    log_pz = (-0.5 * z**2 - 0.5 * log_2pi).sum()
                log_qz = (-0.5 * ((z - mu[i]) / std) ** 2 - torch.log(std) - 0.5 * log_2pi).sum()
                log_w.append(float(log_px + log_pz - log_qz))
            top = max(log_w)
            mean = sum(math.exp(w - top) for w in log_w) / len(log_w)
            total += -(top + math.log(mean))
    return total / x.shape[0]


# --- the bound --------------------------------------------------------------------------------


@pytest.mark.parametrize("prior, likelihood", [("standard", "bce"), ("mog", "bce"),
                                               ("vamp", "bce"), ("standard", "mse")])  # fmt: skip
def test_the_bound_is_the_brute_force_sum_over_samples(prior, likelihood):
    model = tiny_model(prior, likelihood, sharpen=3.0)
    x = images(likelihood)
    noise = torch.randn(3, 4, 2, generator=torch.Generator().manual_seed(1))
    terms = bound_terms(model, x, noise)
    expected = brute_force_neg_bound(model, x, noise)
    assert terms.neg_iwae.item() == pytest.approx(expected, abs=2e-3)
    assert terms.loss.item() == pytest.approx(expected, abs=2e-3)  # beta 1: the bound itself
    terms.loss.backward()
    trained = [model.encoder.head.weight, model.decoder.output.weight]
    if prior == "mog":
        trained.append(model.prior.means)  # through the prior's own log density
    if prior == "vamp":
        trained.append(model.prior.pseudo_input_logits)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in trained)


def test_during_warm_up_beta_weighs_the_latent_part_of_each_weight():
    model = tiny_model("mog", sharpen=3.0)
    x = images()
    noise = torch.randn(3, 5, 2, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        decoded, mu, logvar = model(x, noise=noise)
        log_px = (
            -torch.nn.functional.binary_cross_entropy_with_logits(
                decoded, x.unsqueeze(1).expand_as(decoded), reduction="none"
            )
            .flatten(2)
            .sum(2)
        )
        log_ratio = -kl_estimate(mu.unsqueeze(1), logvar.unsqueeze(1), noise, model.log_prior)
        objective = run_objective(5)
        for beta in (0.0, 0.3):
            terms = objective.bound_terms(model, decoded, x, mu, logvar, noise, beta)
            expected = -(torch.logsumexp(log_px + beta * log_ratio, 1) - math.log(5)).mean()
            assert terms.loss.item() == pytest.approx(expected.item(), abs=1e-3)
            # What is reported is the bound at beta = 1 whatever the warm-up's beta.
            assert terms.neg_iwae.item() == pytest.approx(brute_force_neg_bound(model, x, noise),
                                                          abs=2e-3)  # fmt: skip


def test_one_sample_gives_the_elbo():
    """With the mixture prior the ELBO's KL is itself the one-sample estimate at the sample the
    decoder saw: K = 1 is the ELBO to rounding, term by term, at any beta."""
    model = tiny_model("mog", sharpen=3.0)
    x = images()
    noise = torch.randn(3, 1, 2, generator=torch.Generator().manual_seed(3))
    for beta in (1.0, 0.4):
        bound = bound_terms(model, x, noise, beta)
        decoded, mu, logvar = model(x, noise=noise[:, 0])
        kl = model.kl_term(mu, logvar, noise[:, 0])
        elbo = elbo_terms(decoded, x, mu, logvar, "bce", beta, kl=kl)
        for name in ("loss", "neg_elbo", "recon", "kl"):
            torch.testing.assert_close(getattr(bound, name), getattr(elbo, name))
        torch.testing.assert_close(bound.neg_iwae, elbo.neg_elbo)
    # With N(0, I), K = 1 is the ELBO with its KL sampled, whose mean is the analytic KL.
    model = tiny_model("standard", sharpen=3.0)
    noise = torch.randn(3, 1, 2, generator=torch.Generator().manual_seed(3))
    decoded, mu, logvar = model(x, noise=noise[:, 0])
    sampled = kl_estimate(mu, logvar, noise[:, 0], standard_normal_log_density)
    elbo = elbo_terms(decoded, x, mu, logvar, "bce", kl=(sampled, None))
    torch.testing.assert_close(bound_terms(model, x, noise).neg_iwae, elbo.neg_elbo)


def test_more_samples_give_a_tighter_bound_never_looser_than_the_elbo():
    model = tiny_model("standard", sharpen=4.0)
    x = images(count=4)
    means = {}
    with torch.no_grad():
        for samples in (1, 5, 50):
            generator = torch.Generator().manual_seed(4)
            draws = []
            for _ in range(100):
                noise = torch.randn(4, samples, 2, generator=generator)
                terms = bound_terms(model, x, noise)
                # Jensen, draw by draw: log mean exp >= mean log over the same samples.
                assert terms.neg_iwae <= terms.neg_elbo + 1e-4
                draws.append(terms.neg_iwae.item())
            means[samples] = sum(draws) / len(draws)
    # In expectation -L_1 >= -L_5 >= -L_50 (Burda et al., Theorem 1): here 84.0, 62.0 and 57.7
    # nats, each mean over 100 draws within 1.4 nats (standard error) of its expectation.
    assert means[1] - means[5] > 10 and means[5] - means[50] > 2


# --- a run ------------------------------------------------------------------------------------


def iwae_flags(synthetic_data_dir: Path, runs: Path, *extra: str) -> list[str]:
    return ["--runs-dir", str(runs), "--data-dir", str(synthetic_data_dir), "--no-download",
            "--limit", "120", "--val-size", "40", "--batch-size", "40", "--latent-dim", "4",
            "--hidden-sizes", "16", "--conv-widths", "4,8", "--beta-warmup", "1",
            "--device", "cpu", "--objective", "iwae", "--iw-samples", "3", *extra]  # fmt: skip


def test_a_tiny_iwae_run_lowers_its_bound_and_names_it_everywhere(tmp_path, synthetic_data_dir):
    result = runner.invoke(
        app, ["train", "iw", *iwae_flags(synthetic_data_dir, tmp_path, "--epochs", "3")]
    )
    assert result.exit_code == 0, result.output
    run = tmp_path / "iw"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["val_neg_iwae_k3"] < records[0]["val_neg_iwae_k3"]
    assert records[-1]["train_neg_iwae_k3"] < records[0]["train_neg_iwae_k3"]
    for record in records:
        assert record["val_neg_iwae_k3"] < record["val_neg_elbo"]  # a tighter bound
        assert record["train_neg_iwae_k3"] <= record["train_neg_elbo"]
    # The epoch lines and the last line name the bound, in a column of its own.
    epoch_lines = [line for line in result.output.splitlines() if line.startswith("epoch ")]
    assert len(epoch_lines) == 3
    assert all("-IWAE bound (k=3) " in line and "-ELBO " in line for line in epoch_lines)
    best = min(r["val_neg_iwae_k3"] for r in records if r["warmup_done"])
    assert f"done: best validation -IWAE bound (k=3) {best:.3f} nats" in result.output
    # curves.png draws keys the records have, the bound's named as such.
    panels = curve_panels(iwae_loss_name(3))
    series = dict(pair for _, pairs in panels for pair in pairs)
    assert series["val_neg_iwae_k3"] == "validation -IWAE bound (k=3)"
    assert series["val_neg_elbo"] == "validation -ELBO"
    assert set(series) <= set(records[-1]) and (run / "curves.png").exists()
    # The checkpoints carry the objective and K; info shows them.
    metadata = read_metadata(run / "checkpoint_best.safetensors")
    assert metadata["config"]["objective"]["objective"] == "iwae"
    assert metadata["config"]["objective"]["iw_samples"] == 3
    assert metadata["validation"]["neg_iwae_k3"] == pytest.approx(best)
    shown = runner.invoke(app, ["info", str(run / "checkpoint_best.safetensors")])
    assert shown.exit_code == 0, shown.output
    rows = [" ".join(line.replace("│", " ").split()) for line in shown.output.splitlines()]
    assert "config.objective.objective iwae" in rows
    assert "config.objective.iw_samples 3" in rows
    # The exported model card says which bound it was trained on.
    exported = runner.invoke(app, ["export", str(run), str(tmp_path / "card")])
    assert exported.exit_code == 0, exported.output
    card = (tmp_path / "card" / "README.md").read_text(encoding="utf-8")
    assert "| objective | the importance-weighted bound with k = 3" in card


def test_the_best_checkpoint_is_chosen_on_the_bound_not_the_elbo(tiny_config, monkeypatch):
    """Epoch 2 has the better bound and the worse -ELBO: it is the best."""
    import vae.trainer.validation as validation

    tiny_config.objective.objective, tiny_config.objective.iw_samples = "iwae", 2
    tiny_config.objective.beta_warmup = "0"
    tiny_config.train.epochs, tiny_config.train.sample_every = 2, 0
    bounds, elbos = iter([90.0, 80.0]), iter([95.0, 99.0])
    monkeypatch.setattr(validation, "evaluate_iwae_bound", lambda *a, **k: next(bounds))
    monkeypatch.setattr(validation, "evaluate_elbo",
                        lambda *a, **k: {"neg_elbo": next(elbos), "recon": 1.0, "kl": 1.0})  # fmt: skip
    result = train(tiny_config, Path(tiny_config.train.runs_dir) / "best")
    assert [r["best"] for r in result.history] == [True, True]
    assert result.progress.best_val == 80.0 and result.progress.best_epoch == 2
    assert read_metadata(result.best_path)["validation"] == {
        "neg_iwae_k2": 80.0, "neg_elbo": 99.0, "recon": 1.0, "kl": 1.0
    }  # fmt: skip


def test_an_iwae_model_round_trips_through_the_python_api(tmp_path, synthetic_data_dir):
    import vae

    run = vae.train(run_dir=tmp_path / "api", dataset="mnist", data_dir=str(synthetic_data_dir),
                    download=False, limit=100, val_size=20, epochs=1, batch_size=50, latent_dim=4,
                    hidden_sizes=[16], conv_widths=[4, 8], beta_warmup="1", sample_every=0,
                    device="cpu", objective="iwae", iw_samples=2, quiet=True)  # fmt: skip
    assert "val_neg_iwae_k2" in run.history[-1]
    model = run.load()
    copy = vae.load(model.save(tmp_path / "copy.safetensors"))
    assert copy.metadata["config"]["objective"] == model.metadata["config"]["objective"]
    assert copy.metadata["config"]["objective"]["objective"] == "iwae"
    assert copy.metadata["validation"] == model.metadata["validation"]
    before = read_tensors(run.best_checkpoint, "model.")
    after = read_tensors(tmp_path / "copy.safetensors", "model.")
    assert before.keys() == after.keys()
    assert all(torch.equal(before[name], after[name]) for name in before)


@pytest.mark.parametrize("interrupt_at_step", [3, 5])  # mid-epoch 2, mid-epoch 3
def test_an_interrupted_iwae_run_resumes_exactly(tiny_config, interrupt_at_step):
    tiny_config.objective.objective, tiny_config.objective.iw_samples = "iwae", 3
    tiny_config.objective.beta_warmup = "3steps"
    tiny_config.train.epochs, tiny_config.train.sample_every = 3, 0
    tiny_config.train.batch_size = 100  # 2 steps an epoch
    runs = Path(tiny_config.train.runs_dir)
    reference = train(tiny_config, runs / "whole")

    def ctrl_c(step: int) -> None:
        if step == interrupt_at_step:
            os.kill(os.getpid(), signal.SIGINT)

    folder = runs / "cut"
    with pytest.raises(TrainingInterrupted):
        train(tiny_config, folder, step_callback=ctrl_c)
    state = read_header(folder / "checkpoint_last.safetensors").training_state
    assert state["progress"]["step"] == interrupt_at_step
    with pytest.raises(ConfigError, match="objective cannot change on resume"):
        prepare_resume(folder, {"objective": "elbo"})
    resumed = train(prepare_resume(folder, {"data_dir": tiny_config.data.data_dir}), folder,
                    resume=True)  # fmt: skip
    expected, got = (read_tensors(r.last_path, "model.") for r in (reference, resumed))
    assert all(torch.equal(expected[name], got[name]) for name in expected)
    strip = lambda r: {k: v for k, v in r.items() if "second" not in k}  # noqa: E731
    assert [strip(r) for r in resumed.history] == [strip(r) for r in reference.history]
    assert "train_neg_iwae_k3" in resumed.history[-1]


def test_two_processes_train_the_same_iwae_weights_as_one(tiny_config):
    from test_distributed import _flags, _torchrun

    from vae.checkpoint import load_model

    tiny_config.objective.objective, tiny_config.objective.iw_samples = "iwae", 3
    tiny_config.train.bf16, tiny_config.train.sample_every = False, 0
    tiny_config.train.batch_size = 40
    single = train(tiny_config, Path(tiny_config.train.runs_dir) / "single")
    result = _torchrun(2, "ddp", *_flags(tiny_config), "--objective=iwae", "--iw-samples=3")
    assert result.returncode == 0, result.stderr[-2000:]
    model = load_model(Path(tiny_config.train.runs_dir) / "ddp" / "checkpoint_last.safetensors")
    reference = load_model(single.last_path)
    for name, weights in reference.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], weights, atol=1e-4, rtol=1e-4)


# --- refusals and docs --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flags, fragments",
    [
        (["--model", "ae"], ["--objective", "an autoencoder has no likelihood", "--model ae"]),
        (["--loss", "ssim"], ["--objective", "the ssim loss is no likelihood", "--likelihood"]),
        (["--beta", "0.5"], ["--beta: 0.5", "1 with --objective iwae", "--beta-warmup"]),
        (["--free-bits", "1", "--prior", "standard"], ["--free-bits", "0 with --objective iwae"]),
        (["--iw-samples", "0"], ["--iw-samples: 0", "at least 1"]),
        (["--iw-samples", "1001"], ["--iw-samples: 1001", "at most 1000"]),
    ],
)
def test_iwae_where_it_bounds_nothing_is_one_line(tmp_path, synthetic_data_dir, flags, fragments):
    result = runner.invoke(app, ["train", "no", *iwae_flags(synthetic_data_dir, tmp_path, *flags)])
    one_line_error(result, 2, *fragments)
    assert not (tmp_path / "no").exists()


def test_iw_samples_without_iwae_is_one_line(tmp_path, synthetic_data_dir):
    flags = iwae_flags(synthetic_data_dir, tmp_path)
    flags = flags[: flags.index("--objective")] + ["--iw-samples", "4"]
    result = runner.invoke(app, ["train", "no", *flags])
    one_line_error(result, 2, "--iw-samples counts the samples of --objective iwae")


def test_the_python_api_names_the_settings(tmp_path):
    import vae

    with pytest.raises(vae.VAEError) as refused:
        vae.train(run_dir=tmp_path / "ae", model_type="ae", objective="iwae")
    assert str(refused.value).startswith("invalid value for objective: 'iwae'")
    assert "model_type ae" in str(refused.value) and "--" not in str(refused.value)


def test_the_docs_describe_the_objective_and_its_options():
    table = (REPO / "docs" / "commands" / "train.md").read_text()
    assert "| `--objective` | `elbo` |" in table and "| `--iw-samples` | 5 |" in table
    losses = (REPO / "docs" / "losses-and-trackers.md").read_text()
    assert "## The IWAE bound: `--objective iwae`" in losses  # the table's link target
    assert "best checkpoint" in losses.split("## The IWAE bound")[1]
