"""The run folder: the names of the files a training run writes, the rules for when a folder may
be (re)started, and the reading and writing of its files.

Training writes through :class:`RunFolder`; the pictures (``visualize curves``) read
``metrics.jsonl`` through :func:`read_metrics` without importing training.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vae.checkpoint import BEST_NAME, LAST_NAME
from vae.config import config_to_yaml
from vae.errors import ConfigError, DataError, Setting
from vae.fileio import atomic_write_text
from vae.images import save_grid, save_reconstruction_grid
from vae.json_values import is_count, is_number
from vae.loss_name import ELBO, LossName
from vae.plots import save_training_curves
from vae.runlock import LOCK_NAME, run_folder_lock

if TYPE_CHECKING:
    import torch

    from vae.config import RunConfig

CONFIG_NAME = "config.yaml"
METRICS_NAME = "metrics.jsonl"
CURVES_NAME = "curves.png"
IMAGES_NAME = "images"

# What a run writes before its first checkpoint_last. A folder holding only these (a run stopped
# before it could be resumed) may be started again from scratch under the same name: the same
# configuration rewrites them, epoch 1's checkpoint_best included.
_REGENERATED = {CONFIG_NAME, METRICS_NAME, CURVES_NAME, IMAGES_NAME, BEST_NAME}

# Fields of a metrics.jsonl record that hold numbers (besides train_* and val_*).
_METRIC_NUMBERS = frozenset({"epoch", "step", "beta", "lr", "epoch_seconds", "images_per_second"})


def default_run_name(config: RunConfig) -> str:
    """e.g. ``mnist-conv-20261121-101500`` (folder datasets use their folder name)."""
    dataset = config.data.dataset
    if dataset.startswith("folder:"):
        dataset = Path(dataset[len("folder:") :]).name or "folder"
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{dataset}-{config.model.architecture}-{stamp}"


@dataclass(frozen=True)
class RunFolder:
    """One run's folder: where each of its files lives, and how each is written."""

    path: Path

    @property
    def last_checkpoint(self) -> Path:
        """The checkpoint a resume continues from (written at every epoch end and on Ctrl-C)."""
        return self.path / LAST_NAME

    @property
    def best_checkpoint(self) -> Path:
        """The checkpoint of the epoch with the best validation loss after the warm-up."""
        return self.path / BEST_NAME

    def sample_grid(self, epoch: int) -> Path:
        """Where the grid of samples drawn after ``epoch`` goes."""
        return self.path / IMAGES_NAME / f"samples_epoch_{epoch:03d}.png"

    def reconstruction_grid(self, epoch: int) -> Path:
        """Where the grid of reconstructions made after ``epoch`` goes."""
        return self.path / IMAGES_NAME / f"reconstructions_epoch_{epoch:03d}.png"

    def lock(self) -> contextlib.AbstractContextManager[None]:
        """Hold the folder's one-writer lock (see :mod:`vae.runlock`)."""
        return run_folder_lock(self.path)

    def check_can_start(self, resume: bool) -> None:
        """Refuse to start a new run over a folder holding another run's files, or one whose
        images/ folder is a link (the grids would be written wherever it points)."""
        images = self.path / IMAGES_NAME
        if images.is_symlink() or (images.exists() and not images.is_dir()):
            raise ConfigError(
                f"{images} is not a folder of the run (a link or a file): vae writes a run's "
                "files only inside its folder; remove it"
            )
        if not resume and self.path.exists() and not self._restartable():
            raise ConfigError(
                f"run directory {self.path} already exists: continue it with ",
                Setting("resume"),
                f" {self.path} or choose another run name",
            )

    def prepare(self, config: RunConfig) -> None:
        """Clear what a killed writer left behind, create the folder and write ``config.yaml``."""
        self._remove_stale_temporaries()
        self.path.mkdir(parents=True, exist_ok=True)
        # Rewritten on resume too, so that it keeps describing the run (e.g. after --epochs grew).
        atomic_write_text(self.path / CONFIG_NAME, config_to_yaml(config))

    def read_metrics(self) -> list[dict[str, Any]]:
        """The run's per-epoch records so far (see :func:`read_metrics`)."""
        return read_metrics(self.path / METRICS_NAME)

    def write_metrics(self, history: list[dict[str, Any]]) -> None:
        """Replace ``metrics.jsonl`` with ``history``, one JSON record per epoch."""
        atomic_write_text(
            self.path / METRICS_NAME,
            "".join(json.dumps(r, sort_keys=True) + "\n" for r in history),
        )

    def write_curves(self, history: list[dict[str, Any]], loss: LossName = ELBO) -> None:
        """Redraw ``curves.png`` from the per-epoch records of a run training ``loss``."""
        save_training_curves(history, self.path / CURVES_NAME, title=self.path.name, loss=loss)

    def write_grids(
        self,
        epoch: int,
        samples: torch.Tensor,
        originals: torch.Tensor,
        reconstructions: torch.Tensor,
    ) -> dict[str, Path]:
        """Save the epoch's sample and reconstruction grids; returns the files by kind."""
        written = {
            "samples": self.sample_grid(epoch),
            "reconstructions": self.reconstruction_grid(epoch),
        }
        save_grid(samples, written["samples"])
        save_reconstruction_grid(originals, reconstructions, written["reconstructions"])
        return written

    def _restartable(self) -> bool:
        return all(
            item.name in _REGENERATED or item.name == LOCK_NAME or _is_temporary(item)
            for item in self.path.iterdir()
        )

    def _remove_stale_temporaries(self) -> None:
        if self.path.is_dir():
            for item in self.path.iterdir():
                if _is_temporary(item):
                    item.unlink(missing_ok=True)


def _is_temporary(item: Path) -> bool:
    """A file that :func:`atomic_write_bytes` was writing when its process was killed."""
    return item.is_file() and item.name.startswith(".") and item.name.endswith(".tmp")


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The per-epoch records of a run's ``metrics.jsonl`` ([] when the file does not exist)."""
    if not path.exists():
        return []
    records = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{path} is not a metrics.jsonl file (not UTF-8 text)") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, RecursionError):  # RecursionError: nested thousands deep
            raise DataError(f"{path}: line {number} is not valid JSON") from None
        if not isinstance(record, dict) or not is_count(record.get("epoch")):
            raise DataError(f"{path}: line {number} is not an epoch record")
        _check_record_numbers(path, number, record)
        records.append(record)
    return records


def _check_record_numbers(path: Path, number: int, record: dict[str, Any]) -> None:
    """What resume, the curves and the summary compute with must be numbers, not text."""
    for key, value in record.items():
        numeric = key in _METRIC_NUMBERS or key.startswith(("train_", "val_"))
        inner = value.values() if key == "validation" and isinstance(value, dict) else None
        if (numeric and not is_number(value, none=True)) or (
            key == "validation"
            and (inner is None or not all(is_number(v, none=True) for v in inner))
        ):
            raise DataError(
                f"{path}: line {number} has a {key} that is not a number; the file was "
                "edited or damaged"
            )
