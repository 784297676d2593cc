"""Issue 4: interpolations, traversals, latent maps, manifolds, training curves, AE baseline."""

import hashlib
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from vae.checkpoint import load_model, read_metadata
from vae.cli import app
from vae.data import DataConfig, load_splits
from vae.images import PADDING
from vae.latent import Codes, chain_path, interpolation_path, plane_of, slerp, traversal_order

runner = CliRunner()
BIN = Path(sys.executable).parent


@pytest.fixture
def runs(gallery_runs):
    """A VAE and an autoencoder trained alike (tests/conftest.py; read-only)."""
    return gallery_runs


def grid_size(rows: int, columns: int, side: int = 28) -> tuple[int, int]:
    """(width, height) in pixels of a tiled grid."""
    return (columns * (side + PADDING) + PADDING, rows * (side + PADDING) + PADDING)


def invoke(data: Path, *arguments: str):
    return runner.invoke(app, ["visualize", *arguments, "--data-dir", str(data), "--no-download"])


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- maths -----------------------------------------------------------------------------------


def test_slerp_keeps_the_norm_between_equal_norm_codes_and_lerp_is_straight():
    start, end = torch.tensor([3.0, 0.0]), torch.tensor([0.0, 3.0])
    path = interpolation_path(start, end, 7, "slerp")
    assert torch.allclose(path.norm(dim=1), torch.full((7,), 3.0), atol=1e-5)
    assert torch.allclose(path[0], start) and torch.allclose(path[-1], end, atol=1e-6)
    straight = interpolation_path(start, end, 3, "lerp")
    assert torch.allclose(straight[1], torch.tensor([1.5, 1.5]))
    # Parallel codes: the great circle is undefined, so slerp falls back to the straight line.
    assert torch.allclose(slerp(start, 2 * start, torch.tensor([0.5])), torch.tensor([[4.5, 0.0]]))


def test_chain_path_visits_every_code_without_repeating_joints():
    codes = torch.eye(4)
    path = chain_path(codes, 5, "lerp")
    assert path.shape == (3 * 4 + 1, 4)
    for index in range(4):
        assert torch.allclose(path[index * 4], codes[index])


def test_traversal_order_is_by_average_kl_and_drops_inactive_dimensions():
    generator = torch.Generator().manual_seed(0)
    means = torch.randn(500, 4, generator=generator) * torch.tensor([0.5, 2.0, 0.001, 1.0])
    logvars = torch.full((500, 4), -1.0)
    codes = Codes(means, logvars)
    # Average KL grows with the spread of the means: dimension 1, then 3, then 0; 2 is inactive.
    assert traversal_order(codes) == [1, 3, 0]
    assert traversal_order(codes, include_inactive=True) == [1, 3, 0, 2]
    autoencoder = Codes(means, None)
    assert traversal_order(autoencoder) == [1, 3, 0, 2]
    # A very certain posterior (logvar -8) costs KL without varying over the data: first by KL
    # to N(0, I), but last by the spread of the codes, the order used with a learned prior.
    logvars[:, 0] = -8.0
    assert traversal_order(Codes(means, logvars)) == [0, 1, 3]
    assert traversal_order(Codes(means, logvars, per_dimension_kl=False)) == [1, 3, 0]


def test_plane_is_the_latent_itself_in_2d_and_the_leading_principal_axes_otherwise():
    generator = torch.Generator().manual_seed(0)
    flat = torch.randn(400, 2, generator=generator)
    assert plane_of(flat).explained is None
    assert torch.allclose(plane_of(flat).axes, torch.eye(2))
    # Variance mostly along dimensions 2 and 0: those are PC1 and PC2.
    means = torch.randn(400, 5, generator=generator) * torch.tensor([3.0, 0.1, 10.0, 0.1, 0.1])
    plane = plane_of(means)
    assert plane.explained > 0.99
    assert plane.axes[0].abs().argmax() == 2 and plane.axes[1].abs().argmax() == 0
    points = plane.project(means)
    assert torch.allclose(plane.lift(points)[:, [0, 2]], means[:, [0, 2]], atol=0.5)


# --- commands end to end ---------------------------------------------------------------------


def test_interpolate_pairs_grid_and_gif_are_deterministic(tmp_path, runs, synthetic_data_dir):
    checkpoint = str(runs["vae"] / "checkpoint_best.safetensors")
    outputs = []
    for attempt in ("a", "b"):
        output = tmp_path / attempt / "pairs.png"
        result = invoke(
            synthetic_data_dir, "interpolate", "--checkpoint", checkpoint, "--pairs", "3",
            "--steps", "6", "--output", str(output), "--seed", "7",
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        outputs.append(output)
    with Image.open(outputs[0]) as grid:
        assert grid.size == grid_size(rows=3, columns=6 + 2)
    with Image.open(outputs[0].with_suffix(".gif")) as gif:
        assert gif.n_frames == 6
        assert gif.info["loop"] == 0
    assert digest(outputs[0]) == digest(outputs[1])
    assert digest(outputs[0].with_suffix(".gif")) == digest(outputs[1].with_suffix(".gif"))
    other = tmp_path / "c.png"
    invoke(synthetic_data_dir, "interpolate", "--checkpoint", checkpoint, "--pairs", "3",
           "--steps", "6", "--output", str(other), "--seed", "8")  # fmt: skip
    assert digest(other) != digest(outputs[0])


def test_interpolate_chain_picks_one_image_of_each_class_in_turn(
    tmp_path, runs, synthetic_data_dir
):
    from vae.data import ImageSource
    from vae.visualize import interpolate, load_inputs

    checkpoint = runs["vae"] / "checkpoint_best.safetensors"
    inputs = load_inputs(checkpoint, ImageSource(data_dir=str(synthetic_data_dir), download=False))
    chain = [3, 1, 4, 1, 5]
    result = interpolate(inputs, tmp_path / "c.png", tmp_path / "c.gif", chain=chain, steps=5)
    assert [int(inputs.labels[i]) for i in result.indices] == chain
    assert result.frames == (len(chain) - 1) * (5 - 1) + 1
    with Image.open(tmp_path / "c.gif") as gif:
        assert gif.n_frames == result.frames
        assert gif.size == (28 * 3, 28 * 3)
    with Image.open(tmp_path / "c.png") as grid:
        assert grid.size == grid_size(rows=len(chain) - 1, columns=5 + 2)
    # Through the CLI, with its default GIF path beside the PNG.
    output = tmp_path / "cli" / "chain.png"
    cli = invoke(synthetic_data_dir, "interpolate", "--checkpoint", str(checkpoint), "--chain",
                 "0,1,2,3,4,5,6,7,8,9", "--output", str(output))  # fmt: skip
    assert cli.exit_code == 0, cli.output
    assert "(82 frames)" in cli.output  # 9 legs of 10 steps, joints shared
    assert output.with_suffix(".gif").exists()


def test_traverse_rows_follow_kl_order_and_skip_inactive(tmp_path, runs, synthetic_data_dir):
    from vae.data import ImageSource
    from vae.latent import traversal_order
    from vae.visualize import load_inputs

    checkpoint = runs["vae"] / "checkpoint_best.safetensors"
    output = tmp_path / "traversal.png"
    result = invoke(synthetic_data_dir, "traverse", "--checkpoint", str(checkpoint), "--steps", "7",
                    "--output", str(output), "--include-inactive")  # fmt: skip
    assert result.exit_code == 0, result.output
    inputs = load_inputs(checkpoint, ImageSource(data_dir=str(synthetic_data_dir), download=False))
    codes = inputs.codes()
    expected = traversal_order(codes, include_inactive=True)
    kl = codes.importance()
    assert all(kl[a] >= kl[b] for a, b in zip(expected, expected[1:], strict=False))
    assert f"rows {', '.join(f'z{d}' for d in expected)}" in result.output
    with Image.open(output) as picture:
        width, height = grid_size(rows=len(expected), columns=7)
        assert picture.size[1] == height and picture.size[0] > width  # plus the label margin
    again = tmp_path / "again.png"
    invoke(synthetic_data_dir, "traverse", "--checkpoint", str(checkpoint), "--steps", "7",
           "--output", str(again), "--include-inactive")  # fmt: skip
    assert digest(again) == digest(output)
    bad = invoke(synthetic_data_dir, "traverse", "--checkpoint", str(checkpoint), "--index", "9999")
    assert bad.exit_code == 2 and "--index" in bad.output


def test_latent_map_and_manifold(tmp_path, runs, synthetic_data_dir):
    vae_checkpoint = str(runs["vae"] / "checkpoint_best.safetensors")
    ae_checkpoint = str(runs["ae"] / "checkpoint_best.safetensors")
    single = tmp_path / "map.png"
    result = invoke(synthetic_data_dir, "latent-map", "--checkpoint", vae_checkpoint, "--output",
                    str(single))  # fmt: skip
    assert result.exit_code == 0, result.output
    both = tmp_path / "both.png"
    result = invoke(synthetic_data_dir, "latent-map", "--checkpoint", vae_checkpoint, "--compare",
                    ae_checkpoint, "--output", str(both))  # fmt: skip
    assert result.exit_code == 0, result.output
    with Image.open(single) as one, Image.open(both) as two:
        assert two.size[0] > 1.6 * one.size[0]  # two panels side by side
    again = tmp_path / "again.png"
    invoke(synthetic_data_dir, "latent-map", "--checkpoint", vae_checkpoint, "--output", str(again))
    assert digest(again) == digest(single)
    mosaic = tmp_path / "manifold.png"
    result = invoke(synthetic_data_dir, "manifold", "--checkpoint", vae_checkpoint, "--size", "5",
                    "--output", str(mosaic))  # fmt: skip
    assert result.exit_code == 0, result.output
    with Image.open(mosaic) as picture:
        assert picture.size == grid_size(rows=5, columns=5)
    blocked = invoke(synthetic_data_dir, "manifold", "--checkpoint", vae_checkpoint, "--size", "5",
                     "--output", str(mosaic / "inside.png"))  # fmt: skip
    assert blocked.exit_code == 1, blocked.output
    assert (
        f"cannot write {mosaic / 'inside.png'}: {mosaic} is a file, not a folder" in blocked.output
    )
    with Image.open(mosaic) as picture:
        assert picture.size == grid_size(rows=5, columns=5)


def test_chain_on_unlabelled_files_is_a_clear_error(tmp_path, runs, synthetic_data_dir):
    folder = tmp_path / "mine"
    folder.mkdir()
    for index in range(3):
        Image.new("L", (28, 28), color=40 * index).save(folder / f"{index}.png")
    checkpoint = str(runs["vae"] / "checkpoint_best.safetensors")
    result = invoke(synthetic_data_dir, "interpolate", "--checkpoint", checkpoint, "--input",
                    str(folder), "--chain", "0,1", "--output", str(tmp_path / "x.png"))  # fmt: skip
    assert result.exit_code == 1
    assert "--chain needs labelled images" in result.output
    files = invoke(synthetic_data_dir, "interpolate", "--checkpoint", checkpoint, "--input",
                   str(folder), "--steps", "4", "--output", str(tmp_path / "f.png"))  # fmt: skip
    assert files.exit_code == 0, files.output
    with Image.open(tmp_path / "f.png") as grid:
        assert grid.size == grid_size(rows=1, columns=6)  # files 0-1; file 2 has no partner


# --- training curves -------------------------------------------------------------------------


def test_train_writes_curves_and_the_command_redraws_them(tmp_path, runs):
    run = runs["vae"]
    assert (run / "curves.png").exists()
    target = tmp_path / "curves.png"
    result = runner.invoke(app, ["visualize", "curves", str(run), "--output", str(target)])
    assert result.exit_code == 0, result.output
    with Image.open(target) as picture:
        assert picture.size[0] > 1000  # four panels
    again = tmp_path / "again.png"
    runner.invoke(app, ["visualize", "curves", str(run / "metrics.jsonl"), "--output", str(again)])
    assert digest(again) == digest(target)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "metrics.jsonl").write_text('{"epoch": 1}\nnot json\n')
    bad = runner.invoke(app, ["visualize", "curves", str(broken)])
    assert bad.exit_code == 1 and "line 2 is not valid JSON" in bad.output
    missing = runner.invoke(app, ["visualize", "curves", str(tmp_path / "nothing")])
    assert missing.exit_code == 1 and "not found" in missing.output


# --- autoencoder baseline --------------------------------------------------------------------


def test_autoencoder_trains_without_kl_and_samples_from_its_fitted_gaussian(
    tmp_path, runs, synthetic_data_dir
):
    run = runs["ae"]
    checkpoint = run / "checkpoint_best.safetensors"
    metadata = read_metadata(checkpoint)
    assert metadata["model"]["model_type"] == "ae"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(r["train_kl"] == 0 and r["val_kl"] == 0 for r in records)
    assert records[0]["best"]  # no warm-up to wait for
    model = load_model(checkpoint)
    # The stored Gaussian is the one of the training codes (same binarized images, same model).
    config = DataConfig(dataset="mnist", data_dir=str(synthetic_data_dir), download=False,
                        val_size=40, limit=200)  # fmt: skip
    from vae.data import TRAINING_BINARIZATION_SEED, binarize_once, to_float

    train = binarize_once(load_splits(config, "bce").train, TRAINING_BINARIZATION_SEED)
    codes = model.encode(to_float(train.images))[0].detach()
    assert torch.allclose(model.fitted_mean, codes.mean(0), atol=1e-4)
    covariance = model.fitted_scale_tril @ model.fitted_scale_tril.T
    assert torch.allclose(covariance, torch.cov(codes.T), rtol=1e-3, atol=1e-4)
    output = tmp_path / "ae_samples.png"
    result = runner.invoke(
        app, ["generate", "--checkpoint", str(checkpoint), "--output", str(output)]
    )
    assert result.exit_code == 0, result.output
    assert "plain autoencoder" in result.output and "fitted to its training codes" in result.output
    assert output.exists()
    # No likelihood: evaluate scores reconstructions, and outliers by reconstruction error.
    report = tmp_path / "ae.json"
    evaluated = runner.invoke(
        app,
        ["evaluate", "--checkpoint", str(checkpoint), "--data-dir", str(synthetic_data_dir),
         "--no-download", "--quiet", "--ood-dataset", f"folder:{_noise_folder(tmp_path)}",
         "--histogram", str(tmp_path / "ae_ood.png"), "--output", str(report)],
    )  # fmt: skip
    assert evaluated.exit_code == 0, evaluated.output
    saved = json.loads(report.read_text())
    assert list(saved["metrics"]) == ["reconstruction_error"] and saved["k"] is None
    assert "autoencoder has no likelihood" in saved["protocol"]
    assert list(saved["ood"]["scores"]) == ["raw"]
    assert saved["ood"]["scores"]["raw"]["score"] == "reconstruction error"
    assert saved["ood"]["scores"]["raw"]["auroc"] > 0.9  # noise is far from the training shapes
    assert "reconstruction error" in evaluated.output
    assert (tmp_path / "ae_ood.png").read_bytes().startswith(b"\x89PNG")
    info = runner.invoke(app, ["info", str(checkpoint)])
    assert "model_type" in info.output and "ae" in info.output


def test_autoencoder_deterministic_forward():
    from vae.model import ModelSpec, build_model

    model = build_model(ModelSpec("conv", 3, 1, 28, 28, "bce", [16], [4, 8], model_type="ae"))
    x = torch.rand(5, 1, 28, 28)
    first, mu, logvar = model(x)
    second, _, _ = model(x)
    assert logvar is None and mu.shape == (5, 3)
    assert torch.equal(first, second)
    assert not math.isnan(float(first.detach().sum()))


def test_visualize_entry_point_runs_as_a_real_process(tmp_path, runs, synthetic_data_dir):
    checkpoint = str(runs["vae"] / "checkpoint_best.safetensors")
    output = tmp_path / "m.png"
    done = subprocess.run(
        [str(BIN / "visualize"), "manifold", "--checkpoint", checkpoint, "--size", "4", "--output",
         str(output), "--data-dir", str(synthetic_data_dir), "--no-download"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert output.exists()
    bad = subprocess.run([str(BIN / "visualize"), "curves", str(tmp_path / "none")],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert bad.returncode == 1 and bad.stderr.startswith("error:") and "Traceback" not in bad.stderr


def test_gallery_writes_every_readme_picture_deterministically(
    tmp_path, runs, synthetic_data_dir, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # away from the shipped outlier evaluations (tested elsewhere),
    monkeypatch.setattr("vae.shipped.PROJECT_FOLDER", tmp_path)  # here and beside the package
    arguments = [
        "visualize", "gallery", "--checkpoint", str(runs["vae"] / "checkpoint_best.safetensors"),
        "--autoencoder", str(runs["ae"] / "checkpoint_best.safetensors"),
        "--metrics", str(runs["vae"] / "metrics.jsonl"), "--data-dir", str(synthetic_data_dir),
        "--no-download",
    ]  # fmt: skip
    first = runner.invoke(app, [*arguments, "--output-dir", str(tmp_path / "a")])
    assert first.exit_code == 0, first.output
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted([
        "samples.png", "reconstructions.png", "interpolation_chain.png", "interpolation_chain.gif",
        "interpolation_pairs.png", "interpolation_pairs.gif", "traversal.png", "latent_map.png",
        "manifold.png", "training_curves.png", "latent_map_vae_vs_ae.png", "manifold_ae.png",
    ])  # fmt: skip
    runner.invoke(app, [*arguments, "--output-dir", str(tmp_path / "b")])
    for name in names:
        assert digest(tmp_path / "a" / name) == digest(tmp_path / "b" / name), name
    missing = runner.invoke(app, ["visualize", "gallery", "--autoencoder", str(tmp_path / "no")])
    assert missing.exit_code == 2 and "not found" in missing.output
    no_report = runner.invoke(app, [*arguments, "--ood-report", str(tmp_path / "none.json")])
    assert no_report.exit_code == 2 and "--ood-report" in no_report.output
    blocker = tmp_path / "a-file"
    blocker.write_text("kept")
    refused = runner.invoke(app, [*arguments, "--output-dir", str(blocker)])
    assert refused.exit_code == 2 and "is a file, not a folder" in refused.output
    assert blocker.read_text() == "kept"


def _noise_folder(tmp_path: Path) -> Path:
    """Twenty 28-pixel images of uniform noise: outliers for a model of shapes."""
    import numpy as np
    from PIL import Image

    folder = tmp_path / "noise"
    folder.mkdir(exist_ok=True)
    generator = np.random.default_rng(0)
    for index in range(20):
        pixels = generator.integers(0, 256, (28, 28), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{index}.png")
    return folder
