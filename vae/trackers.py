"""Experiment trackers (TensorBoard, Weights & Biases) as reporters: they hear what training
reports and record it; rank 0 alone has one, like every reporter that writes."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from vae.config import TRACKERS
from vae.errors import ConfigError, Setting
from vae.reporting import Reporter

_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb"}


def check_tracker(name: str) -> None:
    """Raise ConfigError unless tracker ``name`` exists and its package is installed."""
    if name not in TRACKERS:
        raise ConfigError(
            "invalid value for ",
            Setting("tracker"),
            f": {name!r} (expected one of {', '.join(TRACKERS)})",
        )
    package = _PACKAGES.get(name)
    if package is not None and importlib.util.find_spec(package) is None:
        raise ConfigError(
            Setting("tracker"),
            f" {name} needs the {package} package, which is not installed: "
            f"poetry install --extras {name} (or pip install {package})",
        )


def make_tracker(name: str, run_dir: Path, run_name: str) -> Reporter | None:
    """The tracker ``name`` writing under ``run_dir`` (None for ``none``)."""
    check_tracker(name)
    if name == "tensorboard":
        return TensorBoardTracker(run_dir / "tensorboard")
    if name == "wandb":
        return WandbTracker(run_dir, run_name)
    return None


def _read_png(path: Path) -> Any:
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


class TensorBoardTracker(Reporter):
    """Event files in ``<run>/tensorboard``: `tensorboard --logdir runs`."""

    def __init__(self, log_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(log_dir))

    def run_configured(self, config: dict[str, Any]) -> None:
        import yaml

        text = yaml.safe_dump(config, sort_keys=False)
        self.writer.add_text("config", "```\n" + text + "\n```", 0)

    def step(self, step: int, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(f"step/{key}", value, step)

    def epoch_ended(self, record: dict[str, Any]) -> None:
        for key, value in _epoch_scalars(record).items():
            self.writer.add_scalar(f"epoch/{key}", value, record["epoch"])
        self.writer.flush()

    def images_written(self, epoch: int, images: dict[str, Path]) -> None:
        for name, path in images.items():
            self.writer.add_image(name, _read_png(path), epoch, dataformats="HWC")
        self.writer.flush()

    def run_finished(self, summary: dict[str, Any]) -> None:
        for key, value in summary.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                self.writer.add_scalar(f"final/{key}", value, 0)
        self.writer.flush()

    def run_ended(self) -> None:
        self.writer.close()


class WandbTracker(Reporter):
    """A W&B run in ``<run>/wandb``; offline (no account needed, `wandb sync` uploads it later)
    unless WANDB_MODE says otherwise."""

    def __init__(self, run_dir: Path, run_name: str) -> None:
        import wandb

        run_dir.mkdir(parents=True, exist_ok=True)
        self.wandb = wandb
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "vae"),
            name=run_name,
            dir=str(run_dir),
            mode=os.environ.get("WANDB_MODE", "offline"),  # type: ignore[arg-type]
            reinit="finish_previous",
        )
        # W&B drops a record whose step is below one already logged: everything of an epoch is
        # logged at that epoch's last optimisation step.
        self.last_step = 0

    def run_configured(self, config: dict[str, Any]) -> None:
        self.run.config.update(config, allow_val_change=True)

    def step(self, step: int, metrics: dict[str, float]) -> None:
        self.last_step = step
        self.run.log({f"step/{key}": value for key, value in metrics.items()}, step=step)

    def epoch_ended(self, record: dict[str, Any]) -> None:
        self.last_step = max(self.last_step, record["step"])
        scalars = {f"epoch/{key}": value for key, value in _epoch_scalars(record).items()}
        self.run.log(scalars, step=self.last_step)

    def images_written(self, epoch: int, images: dict[str, Path]) -> None:
        self.run.log(
            {
                name: self.wandb.Image(_read_png(path), caption=f"epoch {epoch}")
                for name, path in images.items()
            },
            step=self.last_step,
        )

    def run_finished(self, summary: dict[str, Any]) -> None:
        self.run.summary.update(summary)

    def run_ended(self) -> None:
        """Finish the W&B run and wait until its record is complete on disk (and uploaded, online).

        ``run.finish`` returns once W&B's service has the run's last record, but the service
        writes its ``.wandb`` file from a buffer that reaches the disk only when it closes the
        run, later and on its own schedule (at exit at the latest): a file read right after
        training (``wandb sync``, a test) could hold only its header. ``wandb.teardown`` waits
        for the service to close every run and stop. The tracker already owns W&B in this process
        (``reinit="finish_previous"`` ends any other run), and the next ``wandb.init`` starts a
        fresh service.
        """
        try:
            self.run.finish()
        finally:
            self.wandb.teardown()


def _epoch_scalars(record: dict[str, Any]) -> dict[str, float]:
    return {
        key: float(value)
        for key, value in record.items()
        if isinstance(value, int | float)
        and not isinstance(value, bool)
        and key not in ("epoch", "step")
    }
