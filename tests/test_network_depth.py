"""The default conv network fits the image: ``conv_widths`` "auto" gives stride-2 stages until the
feature map is at most 8x8, resolved once in ``model_spec`` and recorded as explicit widths in
config.yaml and the checkpoint; explicit widths win, and the shipped checkpoints are unchanged."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import one_line_error
from vae.checkpoint import read_metadata
from vae.cli import app
from vae.config import RunConfig, load_config_file
from vae.model_spec import ModelSpec
from vae.plan import conv_feature_sizes
from vae.spec import expected_tensors, model_spec
from vae.training import prepare_resume, train

REPO = Path(__file__).resolve().parents[1]
SHIPPED = [
    "checkpoint_best.safetensors",
    "standard-prior/checkpoint_best.safetensors",
    "fashionmnist/checkpoint_best.safetensors",
    "ae/checkpoint_best.safetensors",
]
runner = CliRunner()


def _spec(config: RunConfig, side: int, channels: int = 3) -> ModelSpec:
    return model_spec(config, {"channels": channels, "height": side, "width": side})


def _parameters(spec: ModelSpec) -> int:
    return sum(math.prod(tensor.shape) for tensor in expected_tensors(spec).values())


@pytest.mark.parametrize(
    ("side", "widths", "final"),
    [
        (28, [32, 64], 7),
        (32, [32, 64], 8),
        (64, [32, 64, 128], 8),
        (96, [32, 64, 128, 256], 6),
        (256, [32, 64, 128, 256, 256], 8),
    ],
)
def test_the_default_widths_follow_the_image_size(side: int, widths: list[int], final: int):
    config = RunConfig().validate()
    assert config.model.conv_widths is None  # "auto": resolved from the image size
    spec = _spec(config, side)
    assert spec.conv_widths == widths
    assert conv_feature_sizes(side, side, len(widths))[-1] == (final, final)


def test_explicit_widths_win_over_the_rule():
    config = RunConfig().override({"conv_widths": "32,64"}).validate()
    assert _spec(config, 256).conv_widths == [32, 64]
    assert _spec(RunConfig().override({"conv_widths": "auto"}), 64).conv_widths == [32, 64, 128]
    assert _spec(RunConfig.from_dict({"model": {"conv_widths": "auto"}}), 28).conv_widths == [
        32,
        64,
    ]


def test_an_empty_list_of_widths_is_still_refused(tmp_path: Path):
    result = runner.invoke(app, ["train", "--conv-widths", "", "--runs-dir", str(tmp_path)])
    one_line_error(result, 2, "--conv-widths", "one or more positive integers")
    assert not any(tmp_path.iterdir())


def test_a_default_model_at_256_px_in_colour_stays_under_30m_parameters():
    config = RunConfig().validate()
    parameters = _parameters(_spec(config, 256))
    assert parameters <= 30_000_000, parameters
    # Two stages on a 64x64 map (the widths every size had before) took nine times that.
    old = _parameters(_spec(RunConfig().override({"conv_widths": "32,64"}), 256))
    assert old == 268_849_079


@pytest.mark.parametrize("name", SHIPPED)
def test_the_shipped_checkpoints_record_their_widths_and_rebuild_the_same_spec(name: str):
    metadata = read_metadata(REPO / "pretrained" / name)
    recorded = ModelSpec.from_dict(metadata["model"])
    assert recorded.conv_widths == [32, 64] and recorded.height == 28
    assert metadata["config"]["model"]["conv_widths"] == [32, 64]
    config = RunConfig.from_dict(metadata["config"])
    assert model_spec(config, metadata["data"]).conv_widths == recorded.conv_widths
    # A default-settings run today builds the same network at their size.
    assert _spec(RunConfig().validate(), 28, channels=1).conv_widths == [32, 64]


def _colour_folder(folder: Path, count: int = 12, side: int = 64) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(count):
        array = rng.integers(0, 256, size=(side, side, 3), dtype=np.uint8)
        Image.fromarray(array).save(folder / f"{index:02d}.png")
    return folder


def _folder_config(tmp_path: Path, photos: Path) -> RunConfig:
    config = RunConfig()
    config.data.dataset = f"folder:{photos}"
    config.data.data_dir = str(tmp_path / "data")
    config.data.image_size = 64
    config.data.val_size = 2
    config.data.decode_workers = 0
    config.model.hidden_sizes = [16]
    config.model.latent_dim = 4
    config.model.prior = "standard"
    config.objective.likelihood = "mse"
    config.objective.beta_warmup = "0"
    config.train.epochs = 1
    config.train.batch_size = 16  # the whole training split: one step an epoch
    config.train.device = "cpu"
    config.train.sample_every = 0
    config.train.runs_dir = str(tmp_path / "runs")
    return config


def test_a_64_px_colour_model_gets_three_stages_and_records_them(tmp_path: Path):
    config = _folder_config(tmp_path, _colour_folder(tmp_path / "photos"))
    result = train(config, tmp_path / "runs" / "auto")
    assert len(result.history) == 1
    spec = read_metadata(result.last_path)["model"]
    assert spec["conv_widths"] == [32, 64, 128] and spec["height"] == 64
    # config.yaml and the checkpoint's configuration hold the widths used, not "auto".
    assert load_config_file(result.run_dir / "config.yaml").model.conv_widths == [32, 64, 128]
    assert read_metadata(result.last_path)["config"]["model"]["conv_widths"] == [32, 64, 128]


def test_a_run_recorded_with_explicit_widths_resumes_with_them(tmp_path: Path):
    config = _folder_config(tmp_path, _colour_folder(tmp_path / "photos"))
    config.model.conv_widths = [8, 16]  # what the rule would not choose at 64 px
    result = train(config, tmp_path / "runs" / "explicit")
    resumed = prepare_resume(result.run_dir, {"epochs": 2, "data_dir": config.data.data_dir})
    assert resumed.model.conv_widths == [8, 16]
    more = train(resumed, result.run_dir, resume=True)
    assert [record["epoch"] for record in more.history] == [1, 2]
    assert read_metadata(more.last_path)["model"]["conv_widths"] == [8, 16]
    assert load_config_file(result.run_dir / "config.yaml").model.conv_widths == [8, 16]
