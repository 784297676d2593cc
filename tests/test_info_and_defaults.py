"""Issue 29: `info` shows numbers exactly and a checkpoint_last's training state; the shipped
model is found from any folder; the seed projects' --num_workers and --no-accel are accepted."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from conftest import REPO, assert_runs_without_torch, grid_cells, one_line_error
from vae.checkpoint import DEFAULT_CHECKPOINT, build_metadata, read_header, save_checkpoint
from vae.cli import app
from vae.model import build_model
from vae.spec import ModelSpec

runner = CliRunner()
BIN = Path(sys.executable).parent
SHIPPED = REPO / DEFAULT_CHECKPOINT


def _row(output: str, name: str) -> str:
    """The value cell of the table row whose field is exactly ``name``."""
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.split("│")]
        if len(cells) == 4 and cells[1] == name:
            return cells[2]
    raise AssertionError(f"no row {name!r} in:\n{output}")


def _write_checkpoint(path: Path, config: dict, **extra_metadata) -> Path:
    spec = ModelSpec(architecture="mlp", latent_dim=2, channels=1, height=28, width=28,
                     likelihood="bce", hidden_sizes=[8])  # fmt: skip
    model = build_model(spec)
    metadata = build_metadata(
        model=model, data_info={"dataset": "mnist"}, config=config, epoch=1, step=1,
        validation=None, kind="best", run_name="exact",
    )  # fmt: skip
    save_checkpoint(path, model, {**metadata, **extra_metadata})
    return path


# --- info -------------------------------------------------------------------------------------


def test_info_shows_small_rates_exactly(tmp_path):
    checkpoint = _write_checkpoint(
        tmp_path / "exact.safetensors", {"train": {"lr": 0.00025, "weight_decay": 1e-5}}
    )
    result = runner.invoke(app, ["info", str(checkpoint)])
    assert result.exit_code == 0, result.output
    assert _row(result.output, "config.train.lr") == "0.00025"  # was 0.0003
    assert _row(result.output, "config.train.weight_decay") == "1e-05"  # was 0.0000
    described = json.loads(runner.invoke(app, ["info", str(checkpoint), "--json"]).output)
    assert described["config"]["train"] == {"lr": 0.00025, "weight_decay": 1e-5}


def test_info_leaves_out_settings_the_run_never_read(tmp_path):
    """A run's saved configuration holds every setting; the table shows those its family,
    prior and objective read (a plain VAE's latent_groups would mislead), the JSON all."""
    config = {
        "model": {"latent_dim": 2, "prior": "standard", "latent_groups": 1, "cell_channels": 32,
                  "prior_components": 500, "pseudo_inputs": 500},
        "objective": {"objective": "elbo", "iw_samples": 5},
    }  # fmt: skip
    checkpoint = _write_checkpoint(tmp_path / "vae.safetensors", config)
    result = runner.invoke(app, ["info", str(checkpoint)])
    assert result.exit_code == 0, result.output
    assert _row(result.output, "config.model.latent_dim") == "2"
    assert _row(result.output, "config.objective.objective") == "elbo"
    for unread in ("model.latent_groups", "model.cell_channels", "model.prior_components",
                   "model.pseudo_inputs", "objective.iw_samples"):  # fmt: skip
        with pytest.raises(AssertionError, match="no row"):
            _row(result.output, f"config.{unread}")
    described = json.loads(runner.invoke(app, ["info", str(checkpoint), "--json"]).output)
    assert described["config"] == config
    # An IWAE run's sample count is read: shown.
    config["objective"]["objective"] = "iwae"
    iwae = _write_checkpoint(tmp_path / "iwae.safetensors", config)
    assert (
        _row(runner.invoke(app, ["info", str(iwae)]).output, "config.objective.iw_samples") == "5"
    )


def test_info_on_a_checkpoint_last_shows_its_training_state(trained_run):
    last = trained_run / "checkpoint_last.safetensors"
    state = read_header(last).training_state
    assert state is not None
    result = runner.invoke(app, ["info", str(last)])
    assert result.exit_code == 0, result.output
    output = result.output
    assert _row(output, "training_state").startswith("what train --resume restores")
    for key, value in state["progress"].items():
        if not isinstance(value, dict):
            assert _row(output, f"progress.{key}") == repr(value), key
    assert _row(output, "beta") == repr(state["beta"])
    group = state["optimizer"]["param_groups"][0]
    assert _row(output, "optimizer.param_groups.0.lr") == repr(group["lr"])
    assert _row(output, "optimizer.param_groups.0.betas") == ", ".join(map(repr, group["betas"]))
    count = len(group["params"])  # the parameter indices, shown as their range: said so
    assert _row(output, "optimizer.param_groups.0.params") == f"0 to {count - 1} ({count} values)"
    for key, value in state["scheduler"].items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            assert _row(output, f"scheduler.{key}") == repr(value), key
    described = json.loads(runner.invoke(app, ["info", str(last), "--json"]).output)
    assert described["training_state"] == state and described["has_training_state"] is True
    best = json.loads(
        runner.invoke(
            app, ["info", str(trained_run / "checkpoint_best.safetensors"), "--json"]
        ).output
    )
    assert "training_state" not in best and best["has_training_state"] is False
    assert_runs_without_torch("info_app", ["info", str(last)])  # the table, not only --json


def test_metadata_cannot_stand_in_for_the_files_own_facts(tmp_path):
    checkpoint = _write_checkpoint(
        tmp_path / "liar.safetensors", {}, sha256="0" * 64, training_state={"progress": "fake"}
    )
    described = json.loads(runner.invoke(app, ["info", str(checkpoint), "--json"]).output)
    assert described["sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert "training_state" not in described and described["has_training_state"] is False


# --- the shipped model from any folder ----------------------------------------------------------


@pytest.mark.skipif(not SHIPPED.is_file(), reason="the shipped model is not in this checkout")
def test_generate_from_another_folder_uses_the_shipped_model(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    found = subprocess.run(
        [str(BIN / "generate"), "--output", str(tmp_path / "found.png")],
        cwd=elsewhere, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert found.returncode == 0, found.stderr
    given = subprocess.run(
        [str(BIN / "generate"), "--checkpoint", str(SHIPPED), "--output", str(tmp_path / "given.png")],
        cwd=elsewhere, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert given.returncode == 0, given.stderr
    assert (tmp_path / "found.png").read_bytes() == (tmp_path / "given.png").read_bytes()
    assert grid_cells(tmp_path / "found.png").shape[:2] == (8, 8)
    assert list(elsewhere.iterdir()) == []  # nothing written where it ran


@pytest.mark.skipif(not SHIPPED.is_file(), reason="the shipped model is not in this checkout")
def test_generate_from_another_folder_stays_torch_free(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert_runs_without_torch("generate_app", ["generate", "--output", str(tmp_path / "s.png")])
    assert (tmp_path / "s.png").is_file()


def test_the_current_folders_shipped_model_comes_first(tmp_path, monkeypatch, trained_run):
    local = tmp_path / DEFAULT_CHECKPOINT
    local.parent.mkdir()
    local.write_bytes((trained_run / "checkpoint_best.safetensors").read_bytes())
    monkeypatch.chdir(tmp_path)
    described = runner.invoke(app, ["generate", "--info-only"])
    assert described.exit_code == 0, described.output
    assert _row(described.output, "run_name") == "tiny"  # this folder's, not the project's


@pytest.mark.skipif(not SHIPPED.is_file(), reason="the shipped model is not in this checkout")
def test_a_checkpoint_given_is_read_as_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(
        app, ["generate", "--checkpoint", str(DEFAULT_CHECKPOINT), "--output", "s.png"]
    )
    one_line_error(result, 1, "checkpoint not found", f"the shipped model is {SHIPPED}")
    assert not (tmp_path / "s.png").exists()


def test_another_shipped_file_named_from_elsewhere_or_its_folder_gets_a_hint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    hvae = Path("pretrained") / "hvae" / "checkpoint_best.safetensors"
    result = runner.invoke(app, ["generate", "--checkpoint", str(hvae), "--output", "s.png"])
    one_line_error(result, 1, "checkpoint not found", f"the shipped file is {REPO / hvae}")
    result = runner.invoke(app, ["info", str(REPO / hvae.parent)])
    one_line_error(result, 1, "not a file", f"a run folder? its checkpoint is {REPO / hvae}")
    result = runner.invoke(app, ["info", str(tmp_path)])  # a folder without one: no hint
    one_line_error(result, 1, "not a file")
    assert "run folder" not in result.output
    assert not (tmp_path / "s.png").exists()


def test_no_shipped_model_anywhere_is_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("vae.shipped.PROJECT_FOLDER", tmp_path / "no-project")
    result = runner.invoke(app, ["generate", "--output", str(tmp_path / "s.png")])
    one_line_error(result, 1, "neither ./pretrained nor", "or pass --checkpoint")


def test_every_default_naming_a_shipped_file_is_found_the_same_way():
    """Each option of every command whose default is under pretrained/ resolves it with the one
    rule (vae.shipped), so no command is left needing the project folder as its current one."""
    import typer.main

    from vae.cli.common import checkpoint_source, shipped_default

    def commands(command, path=()):
        yield path, command
        for name, sub in getattr(command, "commands", {}).items():
            yield from commands(sub, (*path, name))

    shipped = []
    for path, command in commands(typer.main.get_command(app)):
        for param in command.params:
            if isinstance(param.default, Path) and param.default.parts[:1] == ("pretrained",):
                callback = getattr(param.callback, "__wrapped__", None)
                # checkpoint_source hands a default to shipped_default (and fetches hf://).
                assert callback in (shipped_default, checkpoint_source), (path, param.name)
                shipped.append((path, param.name))
    assert (("generate",), "checkpoint") in shipped
    assert (("visualize", "gallery"), "autoencoder") in shipped


# --- the seed projects' flags -------------------------------------------------------------------


def test_num_workers_and_no_accel_are_train_settings(tmp_path, synthetic_data_dir):
    flags = ["--runs-dir", str(tmp_path), "--data-dir", str(synthetic_data_dir), "--no-download",
             "--limit", "80", "--val-size", "40", "--epochs", "1", "--batch-size", "40",
             "--latent-dim", "2", "--hidden-sizes", "8", "--conv-widths", "4,8", "--quiet"]  # fmt: skip
    result = runner.invoke(app, ["train", "seeded", *flags, "--num_workers", "2", "--no-accel"])
    assert result.exit_code == 0, result.output
    config = yaml.safe_load((tmp_path / "seeded" / "config.yaml").read_text())
    assert config["data"]["decode_workers"] == 2 and config["train"]["device"] == "cpu"
    # PyTorch's num_workers=0 (load in this process) is accepted: it decodes in this process.
    in_process = runner.invoke(app, ["train", "zero", *flags, "--num-workers=0"])
    assert in_process.exit_code == 0, in_process.output
    config = yaml.safe_load((tmp_path / "zero" / "config.yaml").read_text())
    assert config["data"]["decode_workers"] == 0
    refused = runner.invoke(app, ["train", "other", *flags, "--num-workers=-1"])
    one_line_error(refused, 2, "--decode-workers", "-1")
    assert not (tmp_path / "other").exists()
