"""The conditional VAE (``--model cvae``): labels from every kind of labelled data (folders with
one sub-folder per class included), a tiny run whose loss falls and whose sampler draws the class
asked for, the checkpoint round trip, exact resume, every command and the Python API with labels,
the explorer's class picker, and the one-line refusals."""

from __future__ import annotations

import base64
import io
import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from starlette.testclient import TestClient
from typer.testing import CliRunner

import vae
from conftest import assert_runs_without_torch, grid_cells, make_tiny_config, one_line_error
from vae.checkpoint import read_header, read_metadata, read_tensors
from vae.cli import app
from vae.config import DataConfig
from vae.data import load_splits, lookup
from vae.errors import ConfigError, DataError, TrainingInterrupted, VAEError
from vae.explore.app import build_app
from vae.explore.decoder import Decoder
from vae.explore.encoder import Encoder
from vae.reporting import Reporter
from vae.sampling import sample_images
from vae.training import prepare_resume, train

runner = CliRunner()

SIDE = 16
CLASSES = ("bar", "column", "square")


def pattern(name: str, dy: int = 0, dx: int = 0) -> np.ndarray:
    """A class's drawing, shifted by (dy, dx): a bar across the top, a column on the right, a
    square in the middle, white on black."""
    image = np.zeros((SIDE, SIDE), np.uint8)
    if name == "bar":
        image[2 + dy : 6 + dy, 1:15] = 255
    elif name == "column":
        image[1:15, 10 + dx : 14 + dx] = 255
    else:
        image[5 + dy : 11 + dy, 4 + dx : 10 + dx] = 255
    return image


def write_patterns(folder: Path, per_class: int = 50, seed: int = 0) -> Path:
    """One sub-folder per class, each image its class's pattern shifted by up to a pixel."""
    generator = np.random.default_rng(seed)
    for name in CLASSES:
        (folder / name).mkdir(parents=True)
        for index in range(per_class):
            dy, dx = generator.integers(-1, 2, size=2)
            Image.fromarray(pattern(name, dy, dx)).save(folder / name / f"{index:03d}.png")
    return folder


TRAIN_FLAGS = [
    "--model", "cvae", "--architecture", "mlp", "--hidden-sizes", "64", "--latent-dim", "2",
    "--image-size", str(SIDE), "--channels", "1", "--prior", "standard", "--epochs", "15",
    "--batch-size", "8", "--lr", "0.01", "--beta-warmup", "1", "--val-size", "15",
    # A KL weight above 1 leaves the class to the label: z keeps only what it must (the shift).
    "--beta", "4",
    "--device", "cpu", "--quiet", "--sample-every", "5",
]  # fmt: skip


@pytest.fixture(scope="module")
def patterns(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_patterns(tmp_path_factory.mktemp("patterns") / "shapes")


@pytest.fixture(scope="module")
def cvae_run(tmp_path_factory: pytest.TempPathFactory, patterns: Path) -> Path:
    """A cvae trained through ``vae train`` on the three patterns (read-only)."""
    runs = tmp_path_factory.mktemp("cvae-runs")
    result = runner.invoke(
        app,
        ["train", "shapes", "--runs-dir", str(runs), "--dataset", f"folder:{patterns}",
         "--cache-dir", str(runs / "cache"), *TRAIN_FLAGS],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return runs / "shapes"


def best(run: Path) -> Path:
    return run / "checkpoint_best.safetensors"


def nearest_class(images: np.ndarray) -> list[str]:
    """The class whose unshifted pattern each image [N, H, W] in [0, 1] is closest to."""
    templates = np.stack([pattern(name) / 255.0 for name in CLASSES])
    distances = ((images[:, None] - templates[None]) ** 2).sum((2, 3))
    return [CLASSES[index] for index in distances.argmin(1)]


# --- labels of the data --------------------------------------------------------------------------


def test_a_folder_with_one_sub_folder_per_class_is_labelled_by_them(tmp_path, patterns):
    config = DataConfig(
        dataset=f"folder:{patterns}", image_size=SIDE, channels=1, cache_dir=str(tmp_path)
    )
    splits = load_splits(config, "bce")
    assert splits.classes == CLASSES
    assert splits.train.labels is not None and splits.test.labels is not None
    # Each image is labelled by the sub-folder it sits in: its class's pattern is nearest.
    images = splits.test.images.float().numpy()[:, 0] / 255
    assert nearest_class(images) == [CLASSES[int(label)] for label in splits.test.labels]


def test_a_folder_with_an_image_at_its_top_stays_unlabelled(tmp_path):
    folder = write_patterns(tmp_path / "mixed", per_class=4)
    Image.fromarray(pattern("bar")).save(folder / "loose.png")
    splits = load_splits(DataConfig(dataset=f"folder:{folder}", image_size=SIDE, channels=1,
                                    cache_dir=str(tmp_path / "cache")), "bce")  # fmt: skip
    assert splits.classes is None and splits.train.labels is None


def test_labels_come_from_the_paths_so_an_earlier_cache_is_read_as_it_was(tmp_path):
    """The cache holds decoded images alone: a cache written by a load (as before folders had
    labels) is reused, not decoded again, and the labels are the paths' on every load."""
    folder = write_patterns(tmp_path / "shapes", per_class=5)
    config = DataConfig(
        dataset=f"folder:{folder}", image_size=SIDE, channels=1, cache_dir=str(tmp_path / "c")
    )
    first = load_splits(config, "bce")
    shards = sorted((tmp_path / "c").rglob("*.safetensors"))
    stamps = [path.stat().st_mtime_ns for path in shards]
    second = load_splits(config, "bce")
    assert [path.stat().st_mtime_ns for path in shards] == stamps  # not written again
    assert torch.equal(first.train.labels, second.train.labels)
    assert torch.equal(first.train.images, second.train.images)
    assert first.info["fingerprint"] == second.info["fingerprint"]


def test_named_datasets_name_their_classes(synthetic_data_dir):
    splits = load_splits(DataConfig(data_dir=str(synthetic_data_dir), download=False), "bce")
    assert splits.classes == tuple(str(digit) for digit in range(10))
    fashion = lookup("fashionmnist").classes
    assert fashion[0] == "T-shirt/top" and len(fashion) == 10


def test_images_given_in_python_with_labels_number_their_classes(tmp_path):
    images = torch.randint(0, 256, (40, 1, 8, 8), dtype=torch.uint8)
    dataset = [(images[i], i % 4) for i in range(40)]
    run = vae.train(
        dataset, run_dir=tmp_path / "run", model_type="cvae", architecture="mlp",
        hidden_sizes=[8], latent_dim=2, epochs=1, val_size=4, device="cpu", quiet=True,
        sample_every=0,
    )  # fmt: skip
    assert run.load().classes == ("0", "1", "2", "3")


# --- training, sampling, round trip ----------------------------------------------------------


def test_a_tiny_run_lowers_its_loss_and_records_its_classes(cvae_run):
    records = [json.loads(line) for line in (cvae_run / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["val_neg_elbo"] < 0.8 * records[0]["val_neg_elbo"]
    metadata = read_metadata(best(cvae_run))
    assert metadata["model"]["model_type"] == "cvae"
    assert metadata["model"]["classes"] == list(CLASSES)
    shown = runner.invoke(app, ["info", str(best(cvae_run))])
    assert shown.exit_code == 0 and "bar, column, square" in shown.output


def test_the_sampler_draws_the_class_asked_for(cvae_run, tmp_path):
    """Samples decoded as class c look like class c's pattern (most of them: a third would by
    chance), by name or by index, on the torch-free path and through the Python API alike."""
    model = vae.load(best(cvae_run))
    for index, name in enumerate(CLASSES):
        for label in (name, index):
            images = model.sample(30, seed=index, labels=label)[:, 0].numpy()
            found = nearest_class(images)
            assert found.count(name) >= 27, (label, found)
        output = tmp_path / f"{name}.png"
        result = runner.invoke(
            app, ["generate", "--checkpoint", str(best(cvae_run)), "--label", name,
                  "--num-samples", "16", "--grid-size", "4", "--output", str(output)],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        cells = grid_cells(output, side=SIDE).reshape(-1, SIDE, SIDE) / 255.0
        assert nearest_class(cells).count(name) >= 14


def test_labels_in_turn_and_one_row_per_class(cvae_run, tmp_path):
    checkpoint = str(best(cvae_run))
    output = tmp_path / "turns.png"
    result = runner.invoke(app, ["generate", "--checkpoint", checkpoint, "--labels",
                                 "square,0", "--num-samples", "8", "--grid-size", "8",
                                 "--output", str(output)])  # fmt: skip
    assert result.exit_code == 0, result.output
    cells = grid_cells(output, side=SIDE)[0] / 255.0
    found = nearest_class(cells)
    assert found[0::2].count("square") >= 3 and found[1::2].count("bar") >= 3, found
    rows = tmp_path / "rows.png"
    result = runner.invoke(app, ["generate", "--checkpoint", checkpoint, "--per-class", "5",
                                 "--output", str(rows)])  # fmt: skip
    assert result.exit_code == 0 and "5 samples of each of 3 classes" in result.output
    with Image.open(rows) as picture:
        assert picture.height == 3 * (SIDE + 2) + 2  # one row per class
    # The same latents in every row: with the same seed, row c is --label c's first five.
    model = vae.load(checkpoint)
    expected = model.sample(5, seed=0, labels="column")
    per_class = sample_images(checkpoint, 5, 0, per_class=True)
    np.testing.assert_array_equal(per_class[5:10], expected.numpy())


def test_generate_with_a_label_needs_no_torch(cvae_run, tmp_path):
    argv = ["generate", "--checkpoint", str(best(cvae_run)), "--label", "bar",
            "--output", str(tmp_path / "s.png")]  # fmt: skip
    assert_runs_without_torch("generate_app", argv)


def test_the_checkpoint_round_trips(cvae_run, tmp_path):
    model = vae.load(best(cvae_run))
    copy = vae.load(model.save(tmp_path / "copy.safetensors"))
    assert copy.classes == CLASSES and copy.family == "cvae"
    images = (torch.from_numpy(np.stack([pattern(n) for n in CLASSES]))[:, None]).float() / 255
    for one in (model, copy):
        torch.testing.assert_close(
            one.reconstruct(images, labels=[0, 1, 2]), model.reconstruct(images, labels=[0, 1, 2])
        )
    assert torch.equal(copy.sample(6, seed=4), model.sample(6, seed=4))
    # The label changes what is decoded from one latent.
    code = model.encode(images[:1], labels="bar").mean
    as_bar, as_square = model.decode(code, labels="bar"), model.decode(code, labels="square")
    assert nearest_class(as_bar[:, 0].numpy()) == ["bar"]
    assert nearest_class(as_square[:, 0].numpy()) == ["square"]


# --- exact resume ----------------------------------------------------------------------------


def cvae_config(data_dir: Path, runs: Path):
    config = make_tiny_config(data_dir, runs)
    config.model.model_type = "cvae"
    config.train.epochs = 2
    config.train.lr_schedule = "cosine"
    return config


@pytest.mark.parametrize("stop_at_step", [3, 5])  # mid-epoch, second epoch
def test_a_run_stopped_and_resumed_equals_the_uninterrupted_one(
    tmp_path, synthetic_data_dir, stop_at_step
):
    reference = train(cvae_config(synthetic_data_dir, tmp_path), tmp_path / "reference")

    def ctrl_c(step: int) -> None:
        if step == stop_at_step:
            os.kill(os.getpid(), signal.SIGINT)

    folder = tmp_path / "stopped"
    with pytest.raises(TrainingInterrupted):
        train(cvae_config(synthetic_data_dir, tmp_path), folder, step_callback=ctrl_c)
    state = read_header(folder / "checkpoint_last.safetensors").training_state
    assert state["progress"]["step"] == stop_at_step
    resumed = train(
        prepare_resume(folder, {"data_dir": str(synthetic_data_dir)}), folder, resume=True
    )
    expected = read_tensors(reference.last_path, "")
    got = read_tensors(resumed.last_path, "")
    assert expected.keys() == got.keys()
    for name in expected:
        if not name.startswith("rng."):
            assert torch.equal(expected[name], got[name]), name
    assert (
        read_metadata(resumed.best_path)["validation"]
        == read_metadata(reference.best_path)["validation"]
    )


def test_an_older_folder_run_without_labels_resumes(tmp_path, monkeypatch):
    """A VAE run on a folder started before sub-folders were classes recorded the fingerprint
    of its images alone: it resumes on the same images, now labelled."""
    folder = write_patterns(tmp_path / "shapes", per_class=10)
    config = make_tiny_config(tmp_path, tmp_path / "runs")
    config.data.dataset = f"folder:{folder}"
    config.data.image_size, config.data.channels = SIDE, 1
    config.data.cache_dir = str(tmp_path / "cache")
    config.model.architecture = "mlp"
    config.data.val_size = 5
    monkeypatch.setattr("vae.data.folder._sub_folder_labels", lambda files, folder: (None, None))

    def ctrl_c(step: int) -> None:
        if step == 1:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TrainingInterrupted):
        train(config, tmp_path / "old", step_callback=ctrl_c)
    monkeypatch.undo()
    resumed = train(prepare_resume(tmp_path / "old", {}), tmp_path / "old", resume=True)
    assert resumed.progress.epoch == config.train.epochs
    # Other images are still refused.
    for path in (folder / "bar").iterdir():
        Image.fromarray(pattern("square")).save(path)
    with pytest.raises(ConfigError, match="are not the ones it was trained on"):
        train(prepare_resume(tmp_path / "old", {"epochs": 3}), tmp_path / "old", resume=True)


def test_a_resume_after_a_class_folder_was_renamed_is_refused(tmp_path):
    """The fingerprint holds each image's class number; the names are checked too, so the
    checkpoints of one run never disagree on what class 2 is called."""
    folder = write_patterns(tmp_path / "shapes", per_class=10)
    config = make_tiny_config(tmp_path, tmp_path / "runs")
    config.model.model_type = "cvae"
    config.data.dataset = f"folder:{folder}"
    config.data.image_size, config.data.channels = SIDE, 1
    config.data.cache_dir = str(tmp_path / "cache")
    config.model.architecture, config.model.prior = "mlp", "standard"
    config.data.val_size = 5

    def ctrl_c(step: int) -> None:
        if step == 1:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TrainingInterrupted):
        train(config, tmp_path / "run", step_callback=ctrl_c)
    last = tmp_path / "run" / "checkpoint_last.safetensors"
    before = last.read_bytes()
    (folder / "square").rename(folder / "squares")  # the same order, another name
    with pytest.raises(ConfigError, match="class names .*'squares'.* where the run had .*'square'"):
        train(prepare_resume(tmp_path / "run", {}), tmp_path / "run", resume=True)
    assert last.read_bytes() == before


def test_two_processes_train_the_same_cvae_as_one(tmp_path, synthetic_data_dir):
    """torchrun: each rank's share of a batch comes with its own labels."""
    from test_distributed import _flags, _torchrun

    config = cvae_config(synthetic_data_dir, tmp_path)
    config.train.bf16, config.train.sample_every, config.train.batch_size = False, 0, 40
    single = train(config, tmp_path / "single")
    result = _torchrun(2, "ddp", *_flags(config), "--model=cvae")
    assert result.returncode == 0, result.stderr[-2000:]
    expected = read_tensors(single.last_path, "model.")
    got = read_tensors(tmp_path / "ddp" / "checkpoint_last.safetensors", "model.")
    assert expected.keys() == got.keys() and any("hidden1" in name for name in expected)
    for name, weights in expected.items():
        torch.testing.assert_close(got[name], weights, atol=1e-4, rtol=1e-4)


# --- evaluate, pictures, explorer ------------------------------------------------------------


def test_evaluate_reports_the_likelihood_given_the_label_in_its_own_keys(cvae_run, patterns):
    output = cvae_run.parent / "evaluation.json"
    result = runner.invoke(
        app, ["evaluate", "--checkpoint", str(best(cvae_run)), "--dataset",
              f"folder:{patterns}", "--k", "20", "--quiet", "--output", str(output)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "NLL given the label" in result.output
    record = json.loads(output.read_text())
    output.unlink()
    metrics = record["metrics"]
    assert {"nll_given_label", "nll_given_label_bits_per_dim", "neg_elbo_given_label"} <= set(
        metrics
    )
    assert not {"nll", "neg_elbo", "nll_bits_per_dim"} & set(metrics)
    assert metrics["nll_given_label"]["mean"] <= metrics["neg_elbo_given_label"]["mean"] + 1e-6
    assert "given its own class label" in record["protocol"]
    # The same figure as the Python API's log p(x|y) of those images with their labels.
    splits = load_splits(DataConfig(dataset=f"folder:{patterns}", image_size=SIDE, channels=1,
                                    cache_dir=str(cvae_run.parent / "cache")), "bce")  # fmt: skip
    model = vae.load(best(cvae_run))
    log_px = model.log_likelihood(
        splits.test.images, k=20, binarize=True, labels=splits.test.labels
    )
    assert abs(-float(log_px.mean()) - metrics["nll_given_label"]["mean"]) < 1e-4


def test_the_pictures_show_each_image_as_its_class_or_the_one_asked(cvae_run, patterns, tmp_path):
    checkpoint, dataset = str(best(cvae_run)), f"folder:{patterns}"
    for command in (
        ["interpolate", "--chain", "0,1,2", "--steps", "4"],
        ["interpolate", "--pairs", "2", "--steps", "4"],
        ["traverse", "--include-inactive"],
        ["latent-map"],
        ["manifold", "--size", "3", "--label", "square"],
    ):
        output = tmp_path / f"{command[0]}.png"
        result = runner.invoke(app, ["visualize", *command, "--checkpoint", checkpoint,
                                     "--dataset", dataset, "--output", str(output)])  # fmt: skip
        assert result.exit_code == 0, (command, result.output)
    # Files have no labels: the class is asked for, and each is drawn as that class.
    files = tmp_path / "files"
    files.mkdir()
    for name in CLASSES:
        Image.fromarray(pattern(name)).save(files / f"{name}.png")
    result = runner.invoke(app, ["visualize", "traverse", "--checkpoint", checkpoint, "--input",
                                 str(files), "--include-inactive", "--output",
                                 str(tmp_path / "t.png")])  # fmt: skip
    one_line_error(result, 1, "no labels", "--label", "--dataset")
    result = runner.invoke(app, ["visualize", "manifold", "--checkpoint", checkpoint, "--input",
                                 str(files), "--label", "column", "--size", "3", "--output",
                                 str(tmp_path / "m.png")])  # fmt: skip
    assert result.exit_code == 0, result.output
    cells = grid_cells(tmp_path / "m.png", side=SIDE).reshape(-1, SIDE, SIDE) / 255.0
    assert nearest_class(cells).count("column") >= 7
    result = runner.invoke(app, ["inference", "--checkpoint", checkpoint, "--dataset", dataset,
                                 "--output-dir", str(tmp_path / "inference")])  # fmt: skip
    assert result.exit_code == 0, result.output
    # inference's --label: the files reconstructed, and the samples drawn, as that class.
    result = runner.invoke(app, ["inference", "--checkpoint", checkpoint, "--input", str(files),
                                 "--label", "square", "--num-samples", "8", "--grid-size", "8",
                                 "--output-dir", str(tmp_path / "files-out")])  # fmt: skip
    assert result.exit_code == 0 and "note:" not in result.output, result.output
    samples = grid_cells(tmp_path / "files-out" / "samples.png", side=SIDE)[0] / 255.0
    assert nearest_class(samples).count("square") >= 7


def test_the_explorer_has_a_class_picker(cvae_run, patterns):
    checkpoint = best(cvae_run)
    encoder = Encoder(checkpoint, dataset=f"folder:{patterns}", download=False)
    encoder.load(Reporter())
    client = TestClient(
        build_app(Decoder(checkpoint), encoder, Reporter()), base_url="http://127.0.0.1"
    )
    described = client.get("/api/model").json()
    assert described["classes"] == list(CLASSES)
    z = [0.0, 0.0]
    for index, name in enumerate(CLASSES):
        image = client.post("/api/decode", json={"z": z, "label": index}).json()["image"]
        assert nearest_class(data_url_pixels(image)[None]) == [name]
    refused = client.post("/api/decode", json={"z": z})
    assert refused.status_code == 400 and "label must be a class index" in refused.json()["error"]
    assert client.post("/api/decode", json={"z": z, "label": 3}).status_code == 400
    sampled = client.post("/api/sample", json={"seed": 2, "temperature": 1.0, "label": 1})
    assert data_url_pixels(sampled.json()["image"]).shape == (SIDE, SIDE)
    # A test image is encoded and decoded as its own class, which the picker then shows.
    strip = client.get("/api/test-images").json()["images"]
    encoded = client.post("/api/encode/test", json={"index": 0}).json()
    assert encoded["class"] == strip[0]["label"]
    buffer = io.BytesIO()
    Image.fromarray(pattern("square")).save(buffer, format="PNG")
    uploaded = client.post(
        "/api/encode/upload?label=2",
        content=buffer.getvalue(),
        headers={"Content-Type": "application/octet-stream"},
    ).json()
    assert uploaded["class"] == 2
    assert nearest_class(data_url_pixels(uploaded["reconstruction"])[None]) == ["square"]
    path = client.post("/api/interpolate", json={"a": z, "b": [1.0, 1.0], "t": [0, 1], "label": 0})
    assert path.status_code == 200 and len(path.json()["images"]) == 2


def data_url_pixels(url: str) -> np.ndarray:
    data = base64.b64decode(url.split(",", 1)[1])
    with Image.open(io.BytesIO(data)) as picture:
        return np.asarray(picture.convert("L")).astype(float) / 255.0


def test_the_explorer_refuses_a_label_for_a_model_without_classes(trained_run):
    checkpoint = trained_run / "checkpoint_best.safetensors"
    client = TestClient(
        build_app(Decoder(checkpoint), Encoder(checkpoint), Reporter()),
        base_url="http://127.0.0.1",
    )
    assert client.get("/api/model").json()["classes"] == []
    answer = client.post("/api/decode", json={"z": [0.0] * 4, "label": 0})
    assert answer.status_code == 400 and "takes no class label" in answer.json()["error"]


# --- refusals --------------------------------------------------------------------------------


def test_a_dataset_without_labels_is_refused_in_one_line(tmp_path):
    folder = tmp_path / "flat"
    folder.mkdir()
    for index in range(6):
        Image.fromarray(pattern("bar")).save(folder / f"{index}.png")
    result = runner.invoke(app, ["train", "x", "--runs-dir", str(tmp_path / "runs"), "--dataset",
                                 f"folder:{folder}", "--cache-dir", str(tmp_path / "cache"),
                                 *TRAIN_FLAGS, "--val-size", "1"])  # fmt: skip
    one_line_error(result, 1, "--model cvae", "has none", "one sub-folder per class")
    assert not (tmp_path / "runs" / "x").exists()


def test_the_vamp_prior_is_refused_for_a_cvae(tmp_path, synthetic_data_dir):
    config = cvae_config(synthetic_data_dir, tmp_path)
    config.model.prior = "vamp"
    with pytest.raises(ConfigError, match="no class label"):
        train(config, tmp_path / "vamp")


def test_labels_are_refused_for_a_model_that_takes_none(trained_run, tmp_path):
    checkpoint = str(trained_run / "checkpoint_best.safetensors")
    for flags in (["--label", "3"], ["--labels", "1,2"], ["--per-class", "2"]):
        result = runner.invoke(app, ["generate", "--checkpoint", checkpoint, *flags,
                                     "--output", str(tmp_path / "s.png")])  # fmt: skip
        one_line_error(result, 2, "needs a conditional model (model type cvae)")
    assert not (tmp_path / "s.png").exists()
    result = runner.invoke(app, ["visualize", "latent-map", "--checkpoint", checkpoint,
                                 "--label", "1", "--output", str(tmp_path / "m.png")])  # fmt: skip
    one_line_error(result, 2, "--label needs a conditional model")
    model = vae.load(checkpoint)
    with pytest.raises(ConfigError, match="labels needs a conditional model"):
        model.sample(2, labels=1)


def test_bad_labels_are_one_line(cvae_run, tmp_path, patterns):
    checkpoint = str(best(cvae_run))
    output = str(tmp_path / "s.png")
    cases = [
        (["--label", "circle"], "'circle' is not a class of this model", "bar"),
        (["--label", "3"], "'3' is not a class", "0 bar, 1 column, 2 square"),
        (["--labels", "0,,x"], "--labels: 'x' is not a class", ""),
        (["--label", "0", "--labels", "1"], "give --label or --labels, not both", ""),
        (["--per-class", "2", "--grid-size", "2"], "leave --grid-size out", ""),
        (["--per-class", "2", "--label", "bar"], "leave --label out", ""),
    ]
    for flags, *fragments in cases:
        result = runner.invoke(app, ["generate", "--checkpoint", checkpoint, *flags,
                                     "--output", output])  # fmt: skip
        one_line_error(result, 2, *fragments)
    result = runner.invoke(app, ["evaluate", "--checkpoint", checkpoint, "--dataset",
                                 f"folder:{patterns}", "--ood-dataset", "mnist"])  # fmt: skip
    one_line_error(result, 2, "--ood-dataset", "given its class")
    files = tmp_path / "files"
    files.mkdir()
    Image.fromarray(pattern("bar")).save(files / "a.png")
    result = runner.invoke(app, ["evaluate", "--checkpoint", checkpoint, "--input", str(files)])
    one_line_error(result, 1, "needs each image's class label", "has none")
    model = vae.load(checkpoint)
    images = torch.zeros(2, 1, SIDE, SIDE)
    with pytest.raises(ConfigError, match="labels are needed"):
        model.encode(images)
    with pytest.raises(ConfigError, match="one class or 2 of them"):
        model.encode(images, labels=[0, 1, 2])
    with pytest.raises(ConfigError, match="not a class of this model"):
        model.decode(torch.zeros(2, 2), labels=[0, 7])
    with pytest.raises(VAEError, match="none was given"):
        model.module.encode(images)


def test_an_hf_label_outside_the_classes_is_refused(tmp_path, synthetic_data_dir):
    """Labels that are no class index (an hf: test split's -1) are named before training."""
    from vae.classes import check_class_labels

    config = cvae_config(synthetic_data_dir, tmp_path)
    splits = load_splits(config.data, "bce")
    splits.train.labels[3] = -1
    with pytest.raises(DataError, match="the label -1, which is no class index"):
        check_class_labels(config, splits)


def test_the_exported_card_of_a_cvae_names_its_classes(cvae_run: Path, tmp_path: Path) -> None:
    import yaml

    exported = runner.invoke(app, ["export", str(cvae_run), str(tmp_path / "card")])
    assert exported.exit_code == 0, exported.output
    card = (tmp_path / "card" / "README.md").read_text(encoding="utf-8")
    front = yaml.safe_load(card.split("---\n")[1])
    assert "pipeline_tag" not in front  # not unconditional generation
    assert "| classes (the label it is conditioned on) | 3: bar, column, square |" in card
