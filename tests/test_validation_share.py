"""A run with --limit validates a proportionate share of the images it trains on, records the size
it used in config.yaml, and runs from before the size was recorded still resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vae.data.splits import DEFAULT_VAL_SIZE, default_val_size
from vae.training import prepare_resume, train


@pytest.mark.parametrize(
    "available, limit, expected",
    [
        (60_000, None, 5000),  # MNIST: min(5000, 10 %)
        (60_000, 2000, 182),  # 5000 / 55000 of 2,000
        (60_000, 55_000, 5000),  # a limit that keeps every image changes nothing
        (60_000, 1, 1),
        (240, None, 24),
        (240, 100, 11),  # 24 / 216 of 100
    ],
)
def test_the_default_validation_size_is_a_share_of_the_images_trained_on(
    available, limit, expected
):
    assert default_val_size(available, limit) == expected
    assert 1 <= default_val_size(available, limit) <= DEFAULT_VAL_SIZE


def test_a_limited_run_validates_its_share_and_records_it(tiny_config):
    tiny_config.data.val_size = None
    tiny_config.data.limit = 100
    tiny_config.train.epochs = 1
    tiny_config.train.sample_every = 0
    result = train(tiny_config, Path(tiny_config.train.runs_dir) / "limited")
    saved = yaml.safe_load((result.run_dir / "config.yaml").read_text())
    assert saved["data"]["val_size"] == 11  # synthetic MNIST: 240 images, default 24 of them
    from vae.checkpoint import read_metadata

    assert read_metadata(result.best_path)["data"]["num_val"] == 11


def test_a_run_recorded_without_its_validation_size_still_resumes(tiny_config):
    """Before the size was recorded, a limited run validated min(5000, 10 %) of every image."""
    from test_hostile_checkpoints import with_metadata

    tiny_config.data.val_size = 24  # what the old rule gave this data, whatever the limit
    tiny_config.data.limit = 100
    tiny_config.train.sample_every = 0
    tiny_config.train.epochs = 1
    run = Path(tiny_config.train.runs_dir) / "old"
    train(tiny_config, run)
    last = run / "checkpoint_last.safetensors"
    last.write_bytes(
        with_metadata(last.read_bytes(), lambda vae: vae["config"]["data"].update(val_size=None))
    )
    resumed = prepare_resume(run, {"epochs": 2, "data_dir": tiny_config.data.data_dir})
    assert resumed.data.val_size == 24
    result = train(resumed, run, resume=True)
    assert [r["epoch"] for r in result.history] == [1, 2]
