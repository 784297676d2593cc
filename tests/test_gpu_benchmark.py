"""benchmarks/gpu.py's logic, on the CPU at tiny size (the figures themselves need a GPU)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import gpu  # noqa: E402


def test_synthetic_data_has_the_shapes_the_loaders_read(tmp_path):
    from vae.config import DataConfig
    from vae.data import load_raw

    gpu.make_data(tmp_path, gpu.TINY)
    for dataset, shape, count in (
        ("mnist", (1, 28, 28), gpu.TINY.mnist_train),
        ("svhn", (3, 32, 32), gpu.TINY.cifar_train),
    ):
        train, test = load_raw(DataConfig(dataset=dataset, data_dir=str(tmp_path), download=False))
        assert tuple(train.images.shape) == (count, *shape)
        assert len(test) == gpu.TINY.test
    mat = scipy.io.loadmat(tmp_path / "svhn" / "train_32x32.mat")
    assert mat["X"].dtype == np.uint8 and mat["y"].min() >= 1


def test_a_training_part_reports_the_runs_own_epoch_figures(tmp_path):
    gpu.make_data(tmp_path, gpu.TINY)
    figure = gpu.run_part(
        "MNIST default recipe",
        "batch 32",
        lambda: gpu.training_epochs(tmp_path, {"batch_size": 32}, gpu.TINY, "cpu"),
    )
    assert figure.images_per_second > 0 and figure.epoch_seconds > 0
    assert figure.part == "MNIST default recipe" and "s wall" in figure.note


def test_a_failing_part_is_a_row_not_a_lost_report(tmp_path, capsys):
    def fails() -> gpu.Figure:
        raise RuntimeError("CUDA error: out of memory")

    figure = gpu.run_part("CIFAR-10 recipe", "batch 256", fails)
    assert figure.images_per_second is None
    assert figure.note.startswith("failed: RuntimeError: CUDA error: out of memory")
    table = gpu.markdown([figure], "test machine")
    assert "| CIFAR-10 recipe | batch 256 | - | - | failed: RuntimeError" in table
    assert table.startswith("Machine: test machine")


def test_without_a_gpu_it_says_so_and_exits_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(gpu, "_gpu_count", lambda: 0)
    assert gpu.main(["--smoke", "--out", str(tmp_path)]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err
    assert not (tmp_path / "gpu.json").exists()


@pytest.mark.parametrize("argv", [["--smoke", "--tiny"]])
def test_sizes_are_one_choice(argv):
    with pytest.raises(SystemExit):
        gpu.main(argv)


def test_the_report_is_json_and_markdown(tmp_path, monkeypatch):
    rows = [gpu.Figure("evaluate", "k = 20", 12.5, None, "1 s wall")]
    monkeypatch.setattr(gpu, "measure", lambda *args, **kwargs: rows)
    assert gpu.main(["--tiny", "--device", "cpu", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "gpu.json").read_text())
    assert report["figures"][0]["images_per_second"] == 12.5
    assert report["sizes"]["eval_k"] == gpu.TINY.eval_k
    assert "| evaluate | k = 20 | 12 | - | 1 s wall |" in (tmp_path / "gpu.md").read_text()
