"""``--dataset hf:NAME_OR_PATH``: a tiny Hugging Face dataset built here and saved to disk (with
``save_to_disk`` and as parquet files), read offline; no download."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from conftest import one_line_error
from vae.config import DataConfig
from vae.data import load_splits
from vae.errors import DataError

datasets = pytest.importorskip("datasets")


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No network, and the library's own cache under tmp_path (never the home folder)."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True, raising=False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")


def _png(index: int) -> bytes:
    array = np.zeros((12, 12, 3), dtype=np.uint8)
    array[..., index % 3] = 40 + 7 * index
    array[2:10, 2:10] = 250 - 5 * index
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _dataset(count: int, first: int = 0, extra_image: bool = False) -> object:
    features = {"img": datasets.Image(), "digit": datasets.ClassLabel(names=["a", "b", "c"])}
    columns: dict[str, list[object]] = {
        "img": [{"bytes": _png(first + i), "path": None} for i in range(count)],
        "digit": [(first + i) % 3 for i in range(count)],
    }
    if extra_image:
        features["mask"] = datasets.Image()
        columns["mask"] = columns["img"]
    return datasets.Dataset.from_dict(columns, features=datasets.Features(features))


@pytest.fixture
def saved(tmp_path: Path) -> dict[str, Path]:
    """The same train (20) / test (6) images saved with save_to_disk and as parquet."""
    splits = datasets.DatasetDict({"train": _dataset(20), "test": _dataset(6, first=20)})
    on_disk = tmp_path / "on-disk"
    splits.save_to_disk(str(on_disk))
    parquet = tmp_path / "parquet" / "data"
    parquet.mkdir(parents=True)
    for name, split in splits.items():
        split.to_parquet(str(parquet / f"{name}-00000-of-00001.parquet"))
    return {"disk": on_disk, "parquet": parquet.parent}


def _config(path: Path, tmp_path: Path, **options: object) -> DataConfig:
    settings: dict[str, object] = {"image_size": 8, "val_size": 4, **options}
    return DataConfig(dataset=f"hf:{path}", cache_dir=str(tmp_path / "cache"), **settings)


def test_a_saved_dataset_and_its_parquet_files_load_the_same_labelled_splits(
    saved: dict[str, Path], tmp_path: Path
) -> None:
    disk = load_splits(_config(saved["disk"], tmp_path), "mse")
    parquet = load_splits(_config(saved["parquet"], tmp_path, storage="mapped"), "mse")
    assert (disk.info["num_train"], disk.info["num_val"], disk.info["num_test"]) == (16, 4, 6)
    assert disk.train.images.shape[1:] == (3, 8, 8)
    assert disk.info["fingerprint"] == parquet.info["fingerprint"]  # the same pixels and labels
    assert parquet.train.mapped and torch.equal(disk.test.images, parquet.test.images[0:6])
    assert disk.test.labels is not None and disk.test.labels.tolist() == [2, 0, 1, 2, 0, 1]
    assert list((tmp_path / "cache").glob("hf-*/train-*.safetensors"))


def test_a_dataset_with_one_split_gets_a_fixed_tenth_as_test_and_trains(
    tmp_path: Path,
) -> None:
    from vae.cli import app

    folder = tmp_path / "one-split"
    _dataset(30).save_to_disk(str(folder))  # a Dataset, not a DatasetDict
    splits = load_splits(_config(folder, tmp_path), "mse")
    assert (splits.info["num_train"], splits.info["num_test"]) == (23, 3)
    result = CliRunner().invoke(
        app,
        ["train", "hf", "--dataset", f"hf:{folder}", "--cache-dir", str(tmp_path / "cache"),
         "--runs-dir", str(tmp_path / "runs"), "--image-size", "8", "--val-size", "4",
         "--likelihood", "mse", "--epochs", "1", "--batch-size", "8", "--latent-dim", "2",
         "--hidden-sizes", "8", "--conv-widths", "4", "--prior", "standard", "--device", "cpu",
         "--quiet"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (tmp_path / "runs" / "hf" / "checkpoint_best.safetensors").exists()


def test_columns_and_splits_that_cannot_be_guessed_are_one_line_naming_the_flag(
    tmp_path: Path, saved: dict[str, Path]
) -> None:
    from vae.cli import app

    two_images = tmp_path / "two-images"
    _dataset(5, extra_image=True).save_to_disk(str(two_images))
    with pytest.raises(DataError, match="image columns img, mask: name the column with"):
        load_splits(_config(two_images, tmp_path), "mse")
    chosen = load_splits(_config(two_images, tmp_path, hf_image_column="mask", val_size=1), "mse")
    assert len(chosen.train) == 4
    with pytest.raises(DataError, match="no split 'training' \\(it has train, test\\)"):
        load_splits(_config(saved["disk"], tmp_path, hf_split="training"), "mse")
    result = CliRunner().invoke(
        app,
        ["train", "--dataset", f"hf:{two_images}", "--cache-dir", str(tmp_path / "cache"),
         "--runs-dir", str(tmp_path / "runs"), "--hf-image-column", "picture"],
    )  # fmt: skip
    one_line_error(result, 1, "no column 'picture'", "--hf-image-column")
    missing = CliRunner().invoke(
        app, ["train", "--dataset", f"hf:{tmp_path / 'nothing'}", "--runs-dir", str(tmp_path)]
    )
    one_line_error(missing, 1, "cannot load Hugging Face dataset")
