"""Options users of the seed projects expect: SSIM losses, --kld-weight, experiment trackers and
their flag spellings."""

from __future__ import annotations

import importlib.util
import json
import struct
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from vae.aliases import rewrite_aliases
from vae.checkpoint import read_metadata
from vae.cli import app
from vae.config import RunConfig
from vae.errors import ConfigError
from vae.model import ModelSpec, build_model
from vae.objectives import elbo_terms, log_likelihood, ssim_window

runner = CliRunner()


def _fixed_images(size: int, channels: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    x = torch.rand(3, channels, size, size, generator=generator)
    blurred = torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1)
    return blurred, x


def test_ssim_loss_is_pytorch_msssim_scaled_to_the_image() -> None:
    from pytorch_msssim import ssim

    decoded, x = _fixed_images(28)
    expected = (1 - ssim(decoded, x, data_range=1.0, size_average=False, win_size=11)) * 784
    torch.testing.assert_close(-log_likelihood(decoded, x, "ssim"), expected)
    assert torch.all(-log_likelihood(x, x, "ssim") < 1e-3)  # an exact reconstruction costs nothing


def test_ms_ssim_loss_is_pytorch_msssim_with_a_window_the_scales_hold() -> None:
    from pytorch_msssim import ms_ssim

    decoded, x = _fixed_images(64, channels=3)
    assert ssim_window(64, 64, multiscale=True) == 3
    expected = (
        (1 - ms_ssim(decoded, x, data_range=1.0, size_average=False, win_size=3)) * 3 * 64 * 64
    )
    torch.testing.assert_close(-log_likelihood(decoded, x, "ms-ssim"), expected)


def test_an_ssim_model_trains_on_means_in_0_1() -> None:
    model = build_model(ModelSpec("conv", 4, 1, 28, 28, "ssim", [16], [8, 16]))
    x = torch.rand(5, 1, 28, 28)
    decoded, mu, logvar = model(x)
    assert 0 <= decoded.min() and decoded.max() <= 1
    terms = elbo_terms(decoded, x, mu, logvar, "ssim", beta=0.5)
    terms.loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_ms_ssim_on_small_images_is_refused_before_training(tiny_config: RunConfig) -> None:
    with pytest.raises(ConfigError, match="ms-ssim.*at least 48 pixels.*28x28"):
        build_model(ModelSpec("conv", 4, 1, 28, 28, "ms-ssim", [16], [8, 16]))


def _train_flags(config: RunConfig) -> list[str]:
    return [
        f"--data-dir={config.data.data_dir}", "--no-download", "--val-size=40",
        "--hidden-sizes=32", "--conv-widths=8,16", "--latent-dim=4", "--epochs=1",
        "--batch-size=50", "--device=cpu", f"--runs-dir={config.train.runs_dir}", "--quiet",
    ]  # fmt: skip


def test_ssim_run_with_kld_weight_is_evaluated_by_its_reconstruction_error(
    tiny_config: RunConfig,
) -> None:
    result = runner.invoke(
        app, ["train", "ssim", *_train_flags(tiny_config), "--loss", "ssim", "--kld-weight", "0.25"]
    )
    assert result.exit_code == 0, result.output
    best = Path(tiny_config.train.runs_dir) / "ssim" / "checkpoint_best.safetensors"
    metadata = read_metadata(best)
    assert metadata["likelihood"]["name"] == "ssim"
    assert "not a likelihood" in metadata["likelihood"]["note"]
    assert metadata["beta_schedule"]["beta_schedule"] == "constant"
    assert metadata["beta_schedule"]["beta"] == 0.25
    info = runner.invoke(app, ["info", str(best), "--json"])
    assert "not a likelihood" in info.output
    # No likelihood: evaluate reports the reconstruction error and the SSIM, never an NLL.
    output = Path(tiny_config.train.runs_dir) / "ssim-evaluation.json"
    evaluated = runner.invoke(
        app,
        ["evaluate", "--checkpoint", str(best), "--data-dir", tiny_config.data.data_dir,
         "--no-download", "--limit", "20", "--quiet", "--output", str(output)],
    )  # fmt: skip
    assert evaluated.exit_code == 0, evaluated.output
    saved = json.loads(output.read_text())
    assert set(saved["metrics"]) == {"reconstruction_error", "ssim"}
    assert 0 < saved["metrics"]["ssim"]["mean"] <= 1
    model = metadata["model"]
    values = model["channels"] * model["height"] * model["width"]
    assert saved["metrics"]["reconstruction_error"]["mean"] == pytest.approx(
        (1 - saved["metrics"]["ssim"]["mean"]) * values, rel=1e-6
    )
    assert "no likelihood" in saved["protocol"] and "nll" not in saved["metrics"]


@pytest.mark.parametrize(
    ("command", "args", "expected"),
    [
        ("train", ["--num-epochs", "3"], ["--epochs", "3"]),
        ("train", ["--n_epochs=3"], ["--epochs", "3"]),
        ("train", ["--likelihood-type", "mse"], ["--likelihood", "mse"]),
        ("train", ["--loss_type", "ssim"], ["--likelihood", "ssim"]),
        ("train", ["--sample-and-save-frequency", "5"], ["--sample-every", "5"]),
        ("train", ["--hidden-dims", "32,64"], ["--conv-widths", "32,64"]),
        ("train", ["--kld-weight", "0.1"], ["--beta-schedule", "constant", "--beta", "0.1"]),
        ("train", ["--no-wandb"], ["--tracker", "none"]),
        ("train", ["--latent_dim", "8"], ["--latent-dim", "8"]),
        ("generate", ["--checkpoint-path", "a", "--output-path", "b"], ["--checkpoint", "a", "--output", "b"]),
        ("inference", ["--output-path", "d"], ["--output-dir", "d"]),
        ("evaluate", ["--out-dataset", "mnist"], ["--ood-dataset", "mnist"]),
        ("info", ["--checkpoint-path", "x.safetensors"], ["x.safetensors"]),
        ("train", ["--", "--num-epochs"], ["--", "--num-epochs"]),
        ("generate", ["--num-epochs", "3"], ["--num-epochs", "3"]),  # not an alias there
    ],
)  # fmt: skip
def test_seed_project_spellings_become_vae_flags(
    command: str, args: list[str], expected: list[str]
) -> None:
    known = ["--epochs", "--latent-dim", "--likelihood", "--beta", "--output", "--checkpoint"]
    assert rewrite_aliases(command, args, known) == expected


def test_aliases_work_end_to_end_and_stay_out_of_help(
    tiny_config: RunConfig, tmp_path: Path
) -> None:
    result = runner.invoke(
        app,
        ["train", "aliased", *[f for f in _train_flags(tiny_config) if not f.startswith("--epochs")],
         "--num_epochs", "2", "--likelihood-type", "mse", "--no-wandb"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    best = Path(tiny_config.train.runs_dir) / "aliased" / "checkpoint_best.safetensors"
    config = read_metadata(best)["config"]
    assert config["train"]["epochs"] == 2 and config["objective"]["likelihood"] == "mse"
    picture = tmp_path / "samples.png"
    generated = runner.invoke(
        app, ["generate", "--checkpoint-path", str(best), "--output-path", str(picture)]
    )
    assert generated.exit_code == 0, generated.output
    assert picture.exists()
    described = runner.invoke(app, ["inference", "--checkpoint-path", str(best), "--info-only"])
    assert described.exit_code == 0 and "checkpoint" in described.output
    assert not (tmp_path / "images").exists()
    help_text = runner.invoke(app, ["train", "--help"]).output
    assert "--num-epochs" not in help_text and "--loss" in help_text


def _tracked_run(tiny_config: RunConfig, tracker: str) -> Path:
    result = runner.invoke(
        app,
        ["train", tracker, *[f for f in _train_flags(tiny_config) if not f.startswith("--epochs")],
         "--epochs=2", f"--tracker={tracker}"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return Path(tiny_config.train.runs_dir) / tracker


@pytest.mark.skipif(
    importlib.util.find_spec("tensorboard") is None, reason="the tensorboard extra is not installed"
)
def test_tensorboard_tracker_records_scalars_grids_config_and_final_metrics(
    tiny_config: RunConfig,
) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = _tracked_run(tiny_config, "tensorboard")
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    scalars = events.Tags()["scalars"]
    assert {"step/loss", "epoch/val_neg_elbo", "final/best_val_neg_elbo"} <= set(scalars)
    assert [e.step for e in events.Scalars("epoch/val_neg_elbo")] == [1, 2]
    assert set(events.Tags()["images"]) == {"samples", "reconstructions"}
    assert len(events.Images("samples")) == 2
    assert "config/text_summary" in events.Tags()["tensors"]


@pytest.mark.skipif(
    importlib.util.find_spec("wandb") is None, reason="the wandb extra is not installed"
)
def test_wandb_tracker_runs_offline_without_an_account(
    tiny_config: RunConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    run_dir = _tracked_run(tiny_config, "wandb")
    [offline] = list((run_dir / "wandb").glob("offline-run-*"))
    pictures = sorted(
        p.name.split("_")[0] for p in (offline / "files" / "media" / "images").iterdir()
    )
    assert pictures == ["reconstructions"] * 2 + ["samples"] * 2
    # The run file is W&B's own binary log. Training returns only once W&B has written all of it
    # (WandbTracker.run_ended), so the run's closing exit record is there, read as W&B's
    # protobuf records, and the records hold the names logged as plain strings.
    [log] = list(offline.glob("run-*.wandb"))
    content = log.read_bytes()
    kinds = [record.WhichOneof("record_type") for record in _wandb_records(content)]
    assert kinds[0] == "header" and "exit" in kinds, (len(content), kinds)
    for name in (b"step/loss", b"epoch/val_neg_elbo", b"best_val_neg_elbo", b"latent_dim"):
        assert name in content, name


def _wandb_records(content: bytes) -> list[Any]:
    """The protobuf records of a ``.wandb`` file: a 7-byte header (":W&B", magic, version), then
    LevelDB's log format (32 KiB blocks of chunks: crc32c, length, type, data; a record split over
    blocks is FIRST, MIDDLE..., LAST). W&B 0.31 ships no Python reader for it, only the protobufs."""
    from wandb.proto.wandb_internal_pb2 import Record

    assert content[:4] == b":W&B", content[:7]
    block, full, last = 32768, 1, 4
    records, pending, position = [], b"", 7
    while position + 7 <= len(content):
        room = block - position % block
        if room < 7:  # a block's tail too short for a chunk header is padding
            position += room
            continue
        _, length, kind = struct.unpack("<IHB", content[position : position + 7])
        pending += content[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (full, last):
            record = Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def test_a_tracker_that_is_not_installed_is_one_line_and_exit_2(
    tiny_config: RunConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: object) -> object:
        return None if name == "wandb" else real_find_spec(name, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    result = runner.invoke(app, ["train", "missing", *_train_flags(tiny_config), "--tracker=wandb"])
    assert result.exit_code == 2
    assert "poetry install --extras wandb" in result.output
    assert not (Path(tiny_config.train.runs_dir) / "missing").exists()
