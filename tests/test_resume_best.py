"""A resumed run ends with the checkpoint_best and metrics an uninterrupted run would have, however
the run was cut (a shorter run extended with more epochs, or a stop mid-epoch) and wherever the
cut falls against the beta warm-up."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from vae.checkpoint import read_metadata, read_tensors
from vae.errors import TrainingInterrupted
from vae.reporting import Reporter
from vae.training import prepare_resume, train


class Messages(Reporter):
    """A reporter that keeps the messages and warnings it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def message(self, text: str) -> None:
        self.lines.append(text)

    def warning(self, text: str) -> None:
        self.lines.append(f"warning: {text}")


def _best(run: Path) -> tuple[dict[str, torch.Tensor], int]:
    path = run / "checkpoint_best.safetensors"
    return read_tensors(path, "model."), read_metadata(path)["epoch"]


def _lrs(run: Path) -> list[float]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["lr"] for line in lines]


def _assert_same_best(resumed: Path, whole: Path) -> None:
    weights, epoch = _best(resumed)
    expected, expected_epoch = _best(whole)
    assert epoch == expected_epoch
    assert weights.keys() == expected.keys()
    for name, tensor in expected.items():
        assert torch.equal(weights[name], tensor), name


def _resume(config, run: Path, epochs: int, reporter: Reporter | None = None):
    resumed = prepare_resume(run, {"epochs": epochs, "data_dir": config.data.data_dir})
    return train(resumed, run, resume=True, reporter=reporter)


# Warm-up in epochs, against a 1-epoch run extended to 3: the cut after epoch 1 falls before the
# warm-up ends ("5": it outlasts the run, so the best is the final epoch), during it ("2") and
# after it ("1").
@pytest.mark.parametrize("warmup", ["5", "2", "1"])
def test_a_run_extended_on_resume_ends_with_the_uninterrupted_best(tiny_config, warmup):
    tiny_config.train.sample_every = 0
    tiny_config.objective.beta_warmup = warmup
    tiny_config.train.epochs = 3
    runs = Path(tiny_config.train.runs_dir)
    whole = train(tiny_config, runs / "whole")
    tiny_config.train.epochs = 1
    train(tiny_config, runs / "cut")
    messages = Messages()
    result = _resume(tiny_config, runs / "cut", 3, messages)
    _assert_same_best(runs / "cut", runs / "whole")
    assert result.progress.best_epoch == whole.progress.best_epoch
    assert result.progress.best_val == whole.progress.best_val
    assert any(line.startswith("done: best validation -ELBO") for line in messages.lines)
    warned = any("warm-up did not finish" in line for line in messages.lines)
    assert warned == (warmup == "5")


@pytest.mark.parametrize("stop_at_step", [3, 7, 11])  # in epoch 1, 2 and 3 (4 steps an epoch)
def test_a_run_stopped_mid_epoch_ends_with_the_uninterrupted_best(tiny_config, stop_at_step):
    tiny_config.train.sample_every = 0
    tiny_config.objective.beta_warmup = "2"
    tiny_config.train.epochs = 3
    runs = Path(tiny_config.train.runs_dir)
    train(tiny_config, runs / "whole")

    stopped: list[int] = []

    def ctrl_c(step: int) -> None:
        if step == stop_at_step:
            stopped.append(step)

    with pytest.raises(TrainingInterrupted):
        train(tiny_config, runs / "cut", step_callback=ctrl_c, stop_requested=lambda: bool(stopped))
    _resume(tiny_config, runs / "cut", 3)
    _assert_same_best(runs / "cut", runs / "whole")


def test_the_lr_column_is_the_rate_each_epoch_trained_at(tiny_config):
    tiny_config.train.sample_every = 0
    tiny_config.train.epochs = 1
    run = Path(tiny_config.train.runs_dir) / "one"
    train(tiny_config, run)
    assert _lrs(run) == [tiny_config.train.lr]  # not the 0.0 the cosine reaches after it
    _resume(tiny_config, run, 4)
    lr0 = tiny_config.train.lr
    expected = [lr0 * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(4)]
    # Epoch 1 ran on the 1-epoch schedule (lr0); the resume stretched the rest to 4 epochs.
    assert _lrs(run) == pytest.approx(expected, rel=1e-9)


# --- a damaged optimizer state ------------------------------------------------------------------


def _rewrite_last(run: Path, change) -> None:
    """checkpoint_last with its tensors changed by ``change(dict)`` (metadata kept)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    path = run / "checkpoint_last.safetensors"
    with safe_open(str(path), "pt") as opened:
        metadata = opened.metadata()
        tensors = {name: opened.get_tensor(name) for name in opened.keys()}  # noqa: SIM118
    change(tensors)
    save_file(tensors, str(path), metadata)


def _first_moment(tensors: dict[str, torch.Tensor], key: str) -> str:
    return next(name for name in sorted(tensors) if name.endswith(f".{key}"))


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda t: t.pop(_first_moment(t, "exp_avg")), "lacks or adds exp_avg"),
        (lambda t: t[_first_moment(t, "exp_avg_sq")].fill_(-1.0), "negative values"),
        (lambda t: t.update({_first_moment(t, "exp_avg"): torch.zeros(3)}), "is [3]"),
    ],
    ids=["a missing tensor", "negative second moments", "a misshapen moment"],
)
def test_a_damaged_optimizer_state_is_refused_on_resume(tiny_config, damage, reason):
    from typer.testing import CliRunner

    from conftest import one_line_error
    from vae.cli import app

    tiny_config.train.sample_every = 0
    tiny_config.train.epochs = 1
    run = Path(tiny_config.train.runs_dir) / "damaged"
    train(tiny_config, run)
    _rewrite_last(run, damage)
    before = {path.name: path.read_bytes() for path in run.iterdir() if path.is_file()}
    arguments = ["train", "--resume", str(run), "--epochs", "2"]
    result = CliRunner().invoke(app, [*arguments, "--data-dir", tiny_config.data.data_dir])
    one_line_error(result, 1, "corrupt training state", reason)
    assert {path.name: path.read_bytes() for path in run.iterdir() if path.is_file()} == before


def test_a_loss_that_fails_right_after_a_resume_blames_the_saved_state(tiny_config):
    from vae.errors import TrainingDiverged

    tiny_config.train.sample_every = 0
    tiny_config.train.epochs = 1
    run = Path(tiny_config.train.runs_dir) / "huge"

    train(tiny_config, run)

    def huge_steps(tensors: dict[str, torch.Tensor]) -> None:
        # Finite and well-formed, but first moments of 1e30 throw the weights far away.
        for name in tensors:
            if name.endswith(".exp_avg"):
                tensors[name].fill_(1e30)

    _rewrite_last(run, huge_steps)
    with pytest.raises(TrainingDiverged, match="steps after resuming: the training state in"):
        _resume(tiny_config, run, 2)
