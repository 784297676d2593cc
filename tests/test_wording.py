"""Each model's loss is called what it is wherever it is shown, small numbers keep their digits,
and a training log written to a file holds whole plain lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vae.cli import app
from vae.loss_name import training_loss_name

runner = CliRunner()
TINY = ["--limit", "120", "--val-size", "40", "--batch-size", "40", "--latent-dim", "4",
        "--hidden-sizes", "16", "--conv-widths", "4,8", "--sample-every", "0",
        "--device", "cpu", "--no-download"]  # fmt: skip


def _config(model_type: str, likelihood: str) -> dict:
    return {"model": {"model_type": model_type}, "objective": {"likelihood": likelihood}}


@pytest.mark.parametrize(
    "model_type, likelihood, total, unit",
    [
        ("vae", "bce", "-ELBO", "nats"),
        ("vae", "mse", "-ELBO", "nats"),
        ("vae", "ssim", "loss (SSIM reconstruction + KL)", ""),
        ("vae", "ms-ssim", "loss (MS-SSIM reconstruction + KL)", ""),
        ("ae", "bce", "reconstruction loss", "nats"),
        ("ae", "ssim", "SSIM reconstruction loss", ""),
    ],
)
def test_each_model_names_the_loss_it_trains(model_type, likelihood, total, unit):
    name = training_loss_name(_config(model_type, likelihood))
    assert (name.total, name.unit) == (total, unit)
    assert name.has_kl == (model_type == "vae")
    assert name.figure(217.77) == f"{total} 217.770" + (f" {unit}" if unit else "")


def test_an_unreadable_configuration_is_named_as_the_elbo():
    assert training_loss_name(None).total == "-ELBO"
    assert training_loss_name({"model": "x", "objective": 3}).total == "-ELBO"


def _train(tmp_path: Path, data: Path, name: str, *extra: str) -> tuple[str, Path]:
    arguments = ["train", name, "--runs-dir", str(tmp_path), "--data-dir", str(data)]
    result = runner.invoke(app, [*arguments, *TINY, *extra])
    assert result.exit_code == 0, result.output
    return result.output, tmp_path / name


def test_an_autoencoder_run_reports_its_reconstruction_loss_not_an_elbo(
    tmp_path, synthetic_data_dir
):
    output, run = _train(tmp_path, synthetic_data_dir, "ae", "--model", "ae", "--epochs", "1")
    assert "done: best validation reconstruction loss " in output
    assert "nats (epoch 1)" in output
    assert "ELBO" not in output


def test_a_perceptual_run_reports_no_elbo_and_no_nats(tmp_path, synthetic_data_dir, monkeypatch):
    import vae.plots

    drawn: list[list] = []
    original = vae.plots.curve_panels
    monkeypatch.setattr(
        vae.plots, "curve_panels", lambda loss: drawn.append(original(loss)) or drawn[-1]
    )
    output, run = _train(
        tmp_path,
        synthetic_data_dir,
        "ssim",
        "--loss",
        "ssim",
        "--epochs",
        "1",
        "--beta-warmup",
        "0",
    )
    done = next(line for line in output.splitlines() if line.startswith("done:"))
    assert "loss (SSIM reconstruction + KL)" in done and "nats" not in done
    assert "ELBO" not in output
    titles = [title for title, _ in drawn[-1]] + [
        label for _, series in drawn[-1] for _, label in series
    ]
    assert not [t for t in titles if "ELBO" in t or t.startswith("loss (nats")], titles


def test_a_log_file_gets_whole_plain_lines_and_small_betas_keep_their_digits(
    tmp_path, synthetic_data_dir
):
    # CliRunner's output is no terminal, as a log file is not.
    output, run = _train(
        tmp_path, synthetic_data_dir, "small-beta", "--epochs", "2", "--kld-weight", "1e-4"
    )
    lines = output.splitlines()
    assert not [line for line in lines if "…" in line or "━" in line], output
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert len(epochs) == 2, output
    for line in epochs:  # one line per epoch, with the validation figures and the caption
        assert "val (beta=1) loss" in line and "beta 0.0001" in line and "img/s" in line
    assert "beta 0.000 " not in output
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["beta"] for r in records] == [1e-4, 1e-4]


def test_curves_of_a_short_run_have_whole_epoch_ticks(tmp_path, monkeypatch):
    import vae.plots

    ticks: list[list[float]] = []

    def keep(figure, path):
        ticks.extend(list(axis.get_xticks()) for axis in figure.axes)
        return Path(path)

    monkeypatch.setattr(vae.plots, "_save", keep)
    record = {"epoch": 1, "train_loss": 1.0, "train_neg_elbo": 1.0, "val_neg_elbo": 1.0,
              "train_recon": 1.0, "val_recon": 1.0, "train_kl": 0.0, "val_kl": 0.0, "beta": 1.0}  # fmt: skip
    vae.plots.save_training_curves([record], tmp_path / "c.png")
    assert ticks and all(axis_ticks == [1.0] for axis_ticks in ticks)
    many = [{**record, "epoch": e} for e in range(1, 41)]
    ticks.clear()
    vae.plots.save_training_curves(many, tmp_path / "c.png")
    assert all(float(t).is_integer() for axis_ticks in ticks for t in axis_ticks)


def test_an_autoencoders_epoch_line_has_no_kl_and_no_beta(tmp_path, synthetic_data_dir):
    output, run = _train(tmp_path, synthetic_data_dir, "ae-line", "--model", "ae", "--epochs", "1")
    epoch = next(line for line in output.splitlines() if line.startswith("epoch "))
    assert "train reconstruction loss " in epoch and "| val reconstruction loss " in epoch
    assert "KL" not in epoch and "beta" not in epoch, epoch
