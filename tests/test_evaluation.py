import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from vae.cli import app
from vae.evaluation import active_units, score_batch
from vae.model import ModelSpec, build_model
from vae.objectives import (
    bernoulli_log_likelihood,
    nats_to_bits_per_dim,
    standard_normal_log_density,
)
from vae.ood import auprc, auroc, fpr_at_tpr, png_bits

runner = CliRunner()


def tiny_model(latent: int, seed: int = 0):
    torch.manual_seed(seed)
    model = build_model(ModelSpec("mlp", latent, 1, 2, 2, "bce", [6], [])).eval()
    with torch.no_grad():  # sharper decoder, so that p(x|z) really depends on z
        for parameter in model.decoder.parameters():
            parameter.mul_(3.0)
    return model


def brute_force_log_px(model, x: torch.Tensor, latent: int) -> torch.Tensor:
    """log p(x) = log of the integral of p(x|z) p(z) over a fine grid of z."""
    points = 4001 if latent == 1 else 601
    axis = torch.linspace(-9.0, 9.0, points)
    step = float(axis[1] - axis[0])
    grid = axis[:, None] if latent == 1 else torch.cartesian_prod(axis, axis)
    with torch.no_grad():
        logits = model.decode(grid)
        values = []
        for image in x:
            log_joint = bernoulli_log_likelihood(
                logits, image.expand_as(logits)
            ) + standard_normal_log_density(grid)
            values.append(torch.logsumexp(log_joint, 0) + latent * math.log(step))
    return torch.stack(values)


@pytest.mark.parametrize("latent", [1, 2])
def test_importance_weighted_nll_matches_numerical_integration(latent):
    model = tiny_model(latent)
    x = torch.tensor(
        [[[[1.0, 0.0], [0.0, 1.0]]], [[[1.0, 1.0], [1.0, 1.0]]], [[[0.0, 0.0], [1.0, 0.0]]]]
    )
    exact = -brute_force_log_px(model, x, latent)
    estimate = score_batch(model, x, k=40_000, generator=torch.Generator().manual_seed(0))["nll"]
    assert torch.allclose(estimate, exact, atol=0.02), (estimate, exact)


def test_nll_is_below_the_elbo_and_does_not_grow_with_k():
    model = tiny_model(2, seed=1)
    x = torch.bernoulli(torch.full((200, 1, 2, 2), 0.5), generator=torch.Generator().manual_seed(3))
    means = {}
    for k in (1, 10, 100, 1000):
        runs = [score_batch(model, x, k, torch.Generator().manual_seed(s)) for s in range(3)]
        means[k] = float(torch.stack([r["nll"] for r in runs]).mean())
        neg_elbo = float(torch.stack([r["neg_elbo"] for r in runs]).mean())
        if k == 1:  # a single sample: -log w is the ELBO's own Monte Carlo estimate
            assert means[k] == pytest.approx(neg_elbo, abs=0.1)
        else:
            assert means[k] <= neg_elbo
    assert means[1] >= means[10] >= means[100] >= means[1000] - 1e-3, means


def test_chunking_over_samples_gives_the_same_estimate():
    model = tiny_model(2)
    x = torch.bernoulli(torch.full((7, 1, 2, 2), 0.5), generator=torch.Generator().manual_seed(0))
    whole = score_batch(model, x, 300, torch.Generator().manual_seed(5), max_decodes=10**6)
    chunked = score_batch(model, x, 300, torch.Generator().manual_seed(5), max_decodes=7 * 11)
    assert torch.allclose(whole["nll"], chunked["nll"], atol=1e-5)
    assert torch.allclose(whole["recon"], chunked["recon"], atol=1e-5)


def test_bits_per_dimension():
    assert nats_to_bits_per_dim(784 * math.log(2), 784) == pytest.approx(1.0)
    assert nats_to_bits_per_dim(86.76, 784) == pytest.approx(86.76 / (784 * math.log(2)))


def test_active_units():
    means = torch.zeros(100, 3)
    means[:, 0] = torch.linspace(-1, 1, 100)  # variance ~0.34: active
    means[:, 1] = torch.linspace(-0.1, 0.1, 100)  # variance ~0.0034: inactive
    assert active_units(means) == 1


def test_detection_metrics_by_hand():
    inside, outside = np.array([0.1, 0.4]), np.array([0.35, 0.8])
    assert auroc(inside, outside) == pytest.approx(0.75)  # 3 of the 4 (out, in) pairs ordered right
    assert auprc(inside, outside) == pytest.approx(0.5 * 1.0 + 0.5 * 2 / 3)
    assert fpr_at_tpr(inside, outside, 0.95) == pytest.approx(0.5)  # threshold 0.35 flags 0.4
    assert auroc(np.array([1.0, 1.0]), np.array([1.0, 1.0])) == pytest.approx(0.5)
    assert auroc(np.array([0.0, 1.0]), np.array([2.0, 3.0])) == 1.0
    assert auroc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 0.0


def test_png_bits_rank_simple_images_below_busy_ones():
    blank = torch.zeros(1, 1, 28, 28, dtype=torch.uint8)
    noise = (
        torch.randint(0, 2, (1, 1, 28, 28), generator=torch.Generator().manual_seed(0)).to(
            torch.uint8
        )
        * 255
    )
    bits = png_bits(torch.cat([blank, noise]))
    assert bits[0] < bits[1]


@pytest.fixture
def small_checkpoint(trained_run):
    """The best checkpoint of the session's shared run (tests/conftest.py)."""
    return trained_run / "checkpoint_best.safetensors"


def test_evaluate_end_to_end_with_outliers_and_json(tmp_path, small_checkpoint, synthetic_data_dir):
    outliers = tmp_path / "outliers"
    outliers.mkdir()
    generator = np.random.default_rng(0)
    for index in range(20):
        Image.fromarray(generator.integers(0, 256, (28, 28), dtype=np.uint8)).save(
            outliers / f"{index}.png"
        )
    output = tmp_path / "result.json"
    result = runner.invoke(
        app,
        ["evaluate", "--checkpoint", str(small_checkpoint), "--data-dir", str(synthetic_data_dir),
         "--no-download", "--k", "20", "--repeats", "2", "--limit", "30", "--output", str(output),
         "--ood-dataset", f"folder:{outliers}", "--histogram", str(tmp_path / "hist.png"), "--quiet"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "fixed seed 2" in result.output and "AUROC" in result.output
    saved = json.loads(output.read_text())
    assert {"checkpoint", "checkpoint_sha256", "command", "dataset", "protocol", "k", "repeats", "seeds",
            "num_images", "metrics", "active_units", "seconds", "ood"} <= set(saved)  # fmt: skip
    assert saved["k"] == 20 and saved["repeats"] == 2 and saved["seeds"] == [0, 1]
    assert saved["num_images"] == 30 and saved["test_binarization"] == "static"
    for key in ("nll", "nll_bits_per_dim", "neg_elbo", "recon", "kl"):
        assert set(saved["metrics"][key]) == {"mean", "std", "values"}
        assert len(saved["metrics"][key]["values"]) == 2
    nll, neg_elbo = saved["metrics"]["nll"]["mean"], saved["metrics"]["neg_elbo"]["mean"]
    assert nll <= neg_elbo
    assert saved["metrics"]["nll_bits_per_dim"]["mean"] == pytest.approx(nll / (784 * math.log(2)))
    assert 0 <= saved["active_units"] <= 4
    assert set(saved["ood"]["scores"]) == {"raw", "complexity_png", "complexity_bz2"}
    for score in saved["ood"]["scores"].values():
        assert 0 <= score["auroc"] <= 1
        assert set(score) == {"score", "auroc", "auprc", "fpr_at_95_tpr"}
    assert saved["ood"]["num_out"] == 20
    with Image.open(tmp_path / "hist.png") as picture:
        pixels = np.asarray(picture.convert("L"))
    height, width = pixels.shape
    assert width > 2 * height  # one panel per score, side by side
    for panel in np.array_split(pixels, 3, axis=1):  # each panel has its bars and axes drawn
        assert (panel < 128).mean() > 0.01


def test_evaluate_gaussian_model_reports_no_likelihood(tmp_path, synthetic_data_dir):
    runs = tmp_path / "runs"
    trained = runner.invoke(
        app,
        ["train", "g", "--runs-dir", str(runs), "--data-dir", str(synthetic_data_dir), "--limit", "80",
         "--val-size", "40", "--epochs", "1", "--latent-dim", "3", "--hidden-sizes", "8", "--conv-widths", "4",
         "--likelihood", "mse", "--device", "cpu", "--no-download", "--quiet"],
    )  # fmt: skip
    assert trained.exit_code == 0, trained.output
    output = tmp_path / "g.json"
    result = runner.invoke(
        app,
        ["evaluate", "--checkpoint", str(runs / "g" / "checkpoint_best.safetensors"), "--data-dir",
         str(synthetic_data_dir), "--no-download", "--k", "5", "--limit", "10", "--output", str(output), "--quiet"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    saved = json.loads(output.read_text())
    assert "nll" not in saved["metrics"] and "nll_bits_per_dim" not in saved["metrics"]
    assert "mse" in saved["metrics"] and "no likelihood" in saved["protocol"]
    assert "NLL" not in result.output


def test_evaluate_bad_usage(small_checkpoint):
    for arguments, message in (
        (["--k", "0"], "--k"),
        (["--binarize-test", "sometimes"], "--binarize-test"),
        (["--dataset", "mnist", "--input", "x.png"], "not both"),
    ):
        result = runner.invoke(app, ["evaluate", "--checkpoint", str(small_checkpoint), *arguments])
        assert result.exit_code == 2 and message in result.output


def test_evaluate_refuses_what_it_could_never_finish_before_evaluating(
    tmp_path, small_checkpoint, synthetic_data_dir, monkeypatch
):
    """An output folder, an output below a file and an unknown outlier dataset are refused
    before the (possibly hour-long) evaluation pass, and no file is touched."""
    import vae.evaluation.checkpoint

    def must_not_run(*args, **kwargs):
        raise AssertionError("the evaluation ran before the bad argument was refused")

    # Where evaluate_checkpoint looks it up.
    monkeypatch.setattr(vae.evaluation.checkpoint, "evaluate_images", must_not_run)
    blocker = tmp_path / "a-file"
    blocker.write_text("kept")
    base = ["evaluate", "--checkpoint", str(small_checkpoint), "--data-dir", str(synthetic_data_dir),
            "--no-download", "--k", "5", "--limit", "10", "--quiet"]  # fmt: skip
    for arguments, exit_code, message in (
        (["--output", str(tmp_path)], 2, "is a folder"),
        (["--output", str(blocker / "result.json")], 1, "is a file, not a folder"),
        (
            ["--ood-dataset", "folder:" + str(tmp_path), "--histogram", str(tmp_path)],
            2,
            "is a folder",
        ),
        (["--ood-dataset", "nonsense"], 2, "invalid value for --ood-dataset: 'nonsense'"),
    ):
        result = runner.invoke(app, [*base, *arguments])
        assert result.exit_code == exit_code, result.output
        assert message in result.output and "Traceback" not in result.output
        assert len(result.output.strip().splitlines()) == 1
    assert blocker.read_text() == "kept"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a-file"]


@pytest.mark.parametrize(
    ("argv", "typed"),
    [
        (["/venv/bin/evaluate", "--k", "5"], "evaluate --k 5"),
        (["/x/vae/__main__.py", "evaluate", "--k", "5"], "python -m vae evaluate --k 5"),
        (["/x/pytest/__main__.py", "-q"], "__main__.py -q"),  # another package's: as it is
        (
            ["vae", "evaluate", "--output", "my runs/e.json"],
            "vae evaluate --output 'my runs/e.json'",
        ),
    ],
)
def test_the_json_records_the_command_as_it_can_be_typed_again(argv, typed):
    from vae.cli.evaluate import command_line

    assert command_line(argv) == typed
