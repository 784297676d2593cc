"""What a new user trips over (issue 20): offline inference, honest grids, resume with more
epochs, names from other projects."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from vae.cli import app
from vae.config import DataConfig
from vae.data import load_splits
from vae.errors import DataError

runner = CliRunner()
TINY = [
    "--limit", "60", "--val-size", "20", "--epochs", "2", "--batch-size", "30",
    "--latent-dim", "2", "--hidden-sizes", "8", "--conv-widths", "2,4", "--beta-warmup", "0",
    "--device", "cpu", "--no-download", "--prior-components", "3",
]  # fmt: skip
CELL = 28 + 2  # an MNIST image and its padding in a grid


@pytest.fixture
def run(trained_run):
    """The session's shared run (tests/conftest.py: 2 epochs, a 3-component mixture prior)."""
    return trained_run


def pixel_values(path, row: int) -> set[int]:
    """The values of the images in grid row ``row`` (padding excluded)."""
    with Image.open(path) as picture:
        pixels = np.asarray(picture.convert("L"))
    top = 2 + row * CELL
    band = pixels[top : top + 28]
    cells = [band[:, 2 + c * CELL : 2 + c * CELL + 28] for c in range(pixels.shape[1] // CELL)]
    return set(np.unique(np.concatenate([c.ravel() for c in cells])).tolist())


# --- offline inference ---------------------------------------------------------------------


def test_offline_inference_writes_the_samples_then_explains(run, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        ["inference", "--checkpoint", str(run / "checkpoint_best.safetensors"), "--output-dir",
         str(out), "--data-dir", str(tmp_path / "no-data"), "--no-download"],
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert (out / "samples.png").read_bytes().startswith(b"\x89PNG")
    assert not (out / "reconstructions.png").exists()
    lines = result.output.strip().splitlines()
    assert lines[0].startswith("wrote 64 samples"), lines
    assert lines[1].startswith("error: no reconstructions: dataset 'mnist' is not in"), lines
    assert len(lines) == 2
    assert not (tmp_path / "no-data").exists()


def test_a_failed_download_says_why_and_removes_the_folders_it_made(tmp_path, monkeypatch):
    import torchvision.datasets as tv

    def offline(self):
        self.raw_folder_path = tmp_path / "data" / "MNIST" / "raw"
        self.raw_folder_path.mkdir(parents=True)
        (self.raw_folder_path / "train-images-idx3-ubyte.gz").write_bytes(b"partial")
        raise RuntimeError(
            "Error downloading train-images-idx3-ubyte.gz:\nTried https://a/, got:\n"
            "<urlopen error [Errno -2] Name or service not known>\n"
        )

    monkeypatch.setattr(tv.MNIST, "download", offline)
    config = DataConfig(dataset="mnist", data_dir=str(tmp_path / "data"), download=True)
    with pytest.raises(DataError) as caught:
        load_splits(config, "bce")
    message = str(caught.value)
    assert "\n" not in message
    assert "Tried https://a/, got: <urlopen error [Errno -2] Name or service not known>" in message
    assert not (tmp_path / "data").exists()


def test_a_failed_load_keeps_folders_that_existed(tmp_path, monkeypatch):
    import torchvision.datasets as tv

    def offline(self):
        raise RuntimeError("Error downloading x:\nno network")

    monkeypatch.setattr(tv.MNIST, "download", offline)
    (tmp_path / "data" / "MNIST").mkdir(parents=True)
    (tmp_path / "data" / "MNIST" / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="no network"):
        load_splits(DataConfig(dataset="mnist", data_dir=str(tmp_path / "data")), "bce")
    assert (tmp_path / "data" / "MNIST" / "notes.txt").read_text() == "mine"


# --- grids show grey originals ---------------------------------------------------------------


def test_reconstruction_grids_show_grey_originals(run, tmp_path, synthetic_data_dir):
    """The synthetic images have grey bars (value 200); a binarized original has only 0 and 255."""
    common = ["inference", "--checkpoint", str(run / "checkpoint_best.safetensors"),
              "--mode", "reconstruct", "--data-dir", str(synthetic_data_dir), "--no-download",
              "--num-images", "16"]  # fmt: skip
    result = runner.invoke(app, [*common, "--output-dir", str(tmp_path / "grey")])
    assert result.exit_code == 0, result.output
    assert 200 in pixel_values(tmp_path / "grey" / "reconstructions.png", row=0)
    result = runner.invoke(
        app, [*common, "--output-dir", str(tmp_path / "binary"), "--binarize-input"]
    )
    assert result.exit_code == 0, result.output
    assert pixel_values(tmp_path / "binary" / "reconstructions.png", row=0) <= {0, 255}


def test_training_grids_show_grey_originals(run):
    assert 200 in pixel_values(run / "images" / "reconstructions_epoch_001.png", row=0)


def test_interpolation_ends_are_grey_originals(run, tmp_path, synthetic_data_dir):
    common = ["visualize", "interpolate", "--checkpoint", str(run / "checkpoint_best.safetensors"),
              "--data-dir", str(synthetic_data_dir), "--no-download", "--pairs", "6"]  # fmt: skip
    result = runner.invoke(app, [*common, "--output", str(tmp_path / "grey.png")])
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "grey.png") as picture:
        first_column = np.asarray(picture.convert("L"))[:, 2:30]
    assert 200 in set(np.unique(first_column).tolist())
    result = runner.invoke(app, [*common, "--output", str(tmp_path / "b.png"), "--binarize-input"])
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "b.png") as picture:
        first_column = np.asarray(picture.convert("L"))[:, 2:30]
    # Only the binarized images and the white padding.
    assert set(np.unique(first_column).tolist()) <= {0, 255}


# --- resume with another number of epochs ------------------------------------------------------


def _lrs(run_dir) -> list[float]:
    from vae.run_folder import read_metrics

    return [record["lr"] for record in read_metrics(run_dir / "metrics.jsonl")]


def test_resume_with_more_epochs_continues_the_longer_cosine(tmp_path, synthetic_data_dir):
    data = ["--data-dir", str(synthetic_data_dir)]
    common = ["--runs-dir", str(tmp_path), *data, *TINY, "--sample-every", "0", "--quiet"]
    assert runner.invoke(app, ["train", "short", *common]).exit_code == 0
    assert runner.invoke(app, ["train", "long", *common, "--epochs", "4"]).exit_code == 0
    lr0 = 2e-3
    resumed = runner.invoke(
        app, ["train", "--resume", str(tmp_path / "short"), "--epochs", "4", "--quiet", *data]
    )
    assert resumed.exit_code == 0, resumed.output
    # metrics.jsonl's lr is the rate each epoch trained at: lr0 (1 + cos(pi (e - 1) / N)) / 2.
    lrs, long = _lrs(tmp_path / "short"), _lrs(tmp_path / "long")
    assert lrs[1] == pytest.approx(lr0 * 0.5, rel=1e-9)  # epoch 2 of the 2-epoch schedule
    # Epoch 3 trained at lr0 / 2 (a 4-epoch run's rate after epoch 2): the cosine's recursive
    # step from there gives the 4-epoch curve; the 2-epoch schedule had reached 0.
    assert long[2] == pytest.approx(lr0 * 0.5, rel=1e-9)
    assert lrs[2] == pytest.approx(lr0 * 0.5, rel=1e-9)
    assert lrs[3] == pytest.approx(lr0 * (1 + np.cos(np.pi * 3 / 4)) / 2, rel=1e-9)
    assert lrs[2:] == pytest.approx(long[2:], rel=1e-9, abs=1e-15)


def test_resume_with_fewer_epochs_than_done_is_refused(tmp_path, run, synthetic_data_dir):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    before = {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file()}
    data = ["--data-dir", str(synthetic_data_dir)]
    result = runner.invoke(app, ["train", "--resume", str(copy), "--epochs", "1", *data])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [
        f"error: --epochs 1 is not after epoch 2, where {copy} stands: give --epochs 3 or more"
    ]
    assert {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file()} == before


# --- names from other projects -----------------------------------------------------------------


def test_a_pth_name_points_to_the_safetensors_twin(run, tmp_path):
    import shutil

    shutil.copyfile(run / "checkpoint_best.safetensors", tmp_path / "model.safetensors")
    result = runner.invoke(app, ["info", str(tmp_path / "model.pth")])
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"error: checkpoint not found: {tmp_path / 'model.pth'} ({tmp_path / 'model.safetensors'} "
        "exists: vae checkpoints are .safetensors files)"
    )


def test_a_real_pytorch_pickle_is_refused_with_the_reason_and_never_unpickled(tmp_path):
    import torch

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):  # what a hostile pickle does when it is loaded
            return (marker.write_text, ("code ran",))

    for name, obj in (("weights.pth", {"w": torch.zeros(2)}), ("hostile.pt", Payload())):
        torch.save(obj, tmp_path / name)
        for command in (["info", str(tmp_path / name)],
                        ["generate", "--checkpoint", str(tmp_path / name), "--output",
                         str(tmp_path / "out.png")]):  # fmt: skip
            result = runner.invoke(app, command)
            assert result.exit_code == 1, result.output
            lines = result.output.strip().splitlines()
            assert len(lines) == 1 and "is a PyTorch pickle" in lines[0], result.output
            assert "runs any code" in lines[0] and "Converting PyTorch weights" in lines[0]
    assert not marker.exists()


def test_the_default_checkpoint_outside_the_project_says_where_to_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # Installed without the project folder beside it (from anywhere else, it is found there).
    monkeypatch.setattr("vae.shipped.PROJECT_FOLDER", tmp_path / "no-project")
    result = runner.invoke(app, ["generate", "--output", str(tmp_path / "s.png")])
    assert result.exit_code == 1
    assert "run the command from the project folder, or pass --checkpoint" in result.output


# --- smaller things ----------------------------------------------------------------------------


def test_output_suffix_decides_the_format(run, tmp_path):
    checkpoint = str(run / "checkpoint_best.safetensors")
    for name, signature in (("s.jpg", b"\xff\xd8\xff"), ("s.JPEG", b"\xff\xd8\xff"),
                            ("s.png", b"\x89PNG")):  # fmt: skip
        result = runner.invoke(
            app, ["generate", "--checkpoint", checkpoint, "--output", str(tmp_path / name)]
        )
        assert result.exit_code == 0, result.output
        assert (tmp_path / name).read_bytes().startswith(signature), name
        with Image.open(tmp_path / name) as picture:
            assert picture.size == (8 * CELL + 2, 8 * CELL + 2)
    for name in ("s.bmp", "samples"):
        result = runner.invoke(
            app, ["generate", "--checkpoint", checkpoint, "--output", str(tmp_path / name)]
        )
        assert result.exit_code == 2, result.output
        assert "name it .png or .jpg" in result.output
        assert not (tmp_path / name).exists()
    result = runner.invoke(
        app,
        ["visualize", "curves", str(run), "--output", str(tmp_path / "c.jpg")],
    )
    assert result.exit_code == 0 and (tmp_path / "c.jpg").read_bytes()[:3] == b"\xff\xd8\xff"


def test_counts_are_singular_for_one(run, tmp_path, synthetic_data_dir):
    result = runner.invoke(
        app,
        ["inference", "--checkpoint", str(run / "checkpoint_best.safetensors"), "--num-images", "1",
         "--num-samples", "1", "--grid-size", "1", "--output-dir", str(tmp_path),
         "--data-dir", str(synthetic_data_dir), "--no-download"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "wrote 1 sample to" in result.output and "wrote 1 reconstruction to" in result.output


def test_a_perceptual_run_names_its_loss_not_an_elbo(tmp_path, synthetic_data_dir):
    result = runner.invoke(
        app,
        ["train", "s", "--runs-dir", str(tmp_path), "--data-dir", str(synthetic_data_dir), *TINY,
         "--epochs", "1", "--loss", "ssim", "--image-size", "32", "--sample-every", "0"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "done: best validation loss (SSIM reconstruction + KL)" in result.output
    assert "-ELBO" not in result.output.split("done:")[1]


def test_outlier_scores_are_kept_and_the_histograms_redrawn_without_scoring(
    run, tmp_path, synthetic_data_dir, monkeypatch
):
    from vae.evaluation import protocols
    from vae.ood import read_scores_csv
    from vae.visualize import redraw_outlier_histograms

    noise = tmp_path / "noise"
    noise.mkdir()
    generator = np.random.default_rng(0)
    for index in range(12):
        Image.fromarray(generator.integers(0, 256, (28, 28), dtype=np.uint8)).save(
            noise / f"{index}.png"
        )
    report = tmp_path / "ood.json"
    result = runner.invoke(
        app,
        ["evaluate", "--checkpoint", str(run / "checkpoint_best.safetensors"), "--k", "4",
         "--limit", "16", "--data-dir", str(synthetic_data_dir), "--no-download", "--quiet",
         "--ood-dataset", f"folder:{noise}", "--histogram", str(tmp_path / "first.png"),
         "--output", str(report)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    saved = json.loads(report.read_text())
    assert saved["ood"]["scores_file"] == "ood_scores.csv"
    scores = read_scores_csv(tmp_path / "ood_scores.csv")
    assert set(scores) == set(saved["ood"]["scores"]) == {"raw", "complexity_png", "complexity_bz2"}
    assert [len(part) for part in scores["raw"]] == [16, 12]
    # The AUROC from the stored scores is the one reported.
    from vae.ood import auroc

    assert auroc(*scores["raw"]) == pytest.approx(saved["ood"]["scores"]["raw"]["auroc"])

    def no_scoring(*args, **kwargs):
        raise AssertionError("scored again")

    monkeypatch.setattr(protocols, "score_images", no_scoring)  # where the protocols call it
    out = tmp_path / "gallery"
    out.mkdir()
    path = redraw_outlier_histograms(report, out)
    assert path == out / "first.png"
    assert path.read_bytes() == (tmp_path / "first.png").read_bytes()
    (tmp_path / "ood_scores.csv").write_text("set,raw\nin,oops\n")
    with pytest.raises(DataError, match="cannot read outlier scores"):
        redraw_outlier_histograms(report, out)
