"""The sha256 a command records is that of the bytes it used: ``evaluate`` and ``info`` read the
checkpoint once, through one open file, so a checkpoint renamed over the path meanwhile (as
``train --resume`` does with ``os.replace``) cannot lend its hash to the weights that were scored."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import vae.checkpoint
import vae.checkpoint.file
import vae.evaluation.checkpoint
import vae.info  # imported before check_model_tensors is patched: it must not keep the patch
from conftest import one_line_error
from vae.cli import app

runner = CliRunner()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def two_checkpoints(trained_run: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the shared run's best checkpoint, and a different checkpoint to rename over it."""
    path, other = tmp_path / "checkpoint_best.safetensors", tmp_path / "newer.safetensors"
    shutil.copyfile(trained_run / "checkpoint_best.safetensors", path)
    shutil.copyfile(trained_run / "checkpoint_last.safetensors", other)
    assert path.read_bytes() != other.read_bytes()
    return path, other


def test_evaluate_records_the_sha256_of_the_checkpoint_it_scored(
    two_checkpoints: tuple[Path, Path],
    synthetic_data_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path, newer = two_checkpoints
    scored = path.read_bytes()
    scoring = vae.evaluation.checkpoint.evaluate_images

    def replaced_while_scoring(*args: Any, **kwargs: Any) -> Any:
        os.replace(newer, path)  # what train --resume does to checkpoint_best meanwhile
        return scoring(*args, **kwargs)

    monkeypatch.setattr(vae.evaluation.checkpoint, "evaluate_images", replaced_while_scoring)
    output = tmp_path / "result.json"
    result = runner.invoke(
        app,
        ["evaluate", "--checkpoint", str(path), "--data-dir", str(synthetic_data_dir),
         "--no-download", "--k", "5", "--limit", "10", "--output", str(output), "--quiet"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert path.read_bytes() != scored  # the rename did happen during the evaluation
    assert json.loads(output.read_text())["checkpoint_sha256"] == _sha256(scored)


def test_info_hashes_the_file_whose_header_it_describes(
    two_checkpoints: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, newer = two_checkpoints
    described = path.read_bytes()
    check = vae.checkpoint.check_model_tensors

    def replaced_after_the_header(*args: Any) -> Any:
        os.replace(newer, path)
        return check(*args)

    monkeypatch.setattr(vae.checkpoint.file, "check_model_tensors", replaced_after_the_header)
    result = runner.invoke(app, ["info", str(path), "--json"])
    assert result.exit_code == 0, result.output
    description = json.loads(result.output)
    assert description["sha256"] == _sha256(described) != _sha256(path.read_bytes())
    assert description["file_size_bytes"] == len(described)
    assert description["has_training_state"] is False  # the header of the same (best) file


def test_a_checkpoint_cut_short_while_it_is_read_is_one_line(
    two_checkpoints: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _ = two_checkpoints
    size = path.stat().st_size
    check = vae.checkpoint.check_model_tensors

    def truncated_in_place(*args: Any) -> Any:
        os.truncate(path, size - 100)  # written in place, not renamed: the open file shrinks
        return check(*args)

    monkeypatch.setattr(vae.checkpoint.file, "check_model_tensors", truncated_in_place)
    result = runner.invoke(app, ["info", str(path)])
    one_line_error(result, 1, str(path), "changed size while it was read")


def test_the_loaded_weights_are_the_files_and_the_hash_its_bytes(trained_run: Path) -> None:
    path = trained_run / "checkpoint_last.safetensors"
    model, content = vae.checkpoint.load_checkpoint(path)
    assert content.sha256 == _sha256(path.read_bytes())
    assert content.header.training_state is not None and content.weights == {}
    stored = vae.checkpoint.read_tensors(path, vae.checkpoint.MODEL_PREFIX)
    state = model.state_dict()
    assert set(state) == set(stored)
    assert all(state[name].equal(stored[name]) for name in stored)
