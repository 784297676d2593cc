"""What a run writes as it trains, on rank 0 only (other processes write nothing): each epoch's
``metrics.jsonl``, ``checkpoint_last`` (with the training state), ``checkpoint_best``, the
curves and the sample and reconstruction grids. Where the files live is
:class:`~vae.run_folder.RunFolder`'s; what goes into them is decided here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from vae.checkpoint import build_metadata, save_checkpoint
from vae.config import RunConfig
from vae.data import DataSplits, to_float
from vae.loss_name import LossName
from vae.objectives import BetaSchedule
from vae.run_folder import RunFolder
from vae.sampling import sample_from_model
from vae.training_state import TrainingState

SAMPLE_SEED = 0  # the grids written during training use fixed latents, comparable across epochs
GRID_IMAGES = 64


class RunWriter:
    """Writes one run's files from its :class:`TrainingState` (its model and progress, read
    when a file is written); a process other than rank 0 (``is_main`` false) writes none."""

    def __init__(
        self,
        folder: RunFolder,
        state: TrainingState,
        config: RunConfig,
        splits: DataSplits,
        beta_schedule: BetaSchedule,
        loss_name: LossName,
        is_main: bool,
    ) -> None:
        self.folder = folder
        self.state = state
        self.config = config
        self.splits = splits
        self.beta_schedule = beta_schedule
        self.loss_name = loss_name
        self.is_main = is_main

    def write_epoch(
        self, history: list[dict[str, Any]], validation: dict[str, float]
    ) -> dict[str, Path] | None:
        """A finished epoch's files (rank 0 calls it); returns the grids written, if due."""
        # metrics.jsonl before checkpoint_last: a kill between the two leaves a record that the
        # resume (from the previous epoch) drops and writes again, never an epoch with no record.
        self.folder.write_metrics(history)
        self.save_last(validation)
        self.folder.write_curves(history, self.loss_name)
        sample_every = self.config.train.sample_every
        if sample_every and self.state.progress.epoch % sample_every == 0:
            return self._write_grids()
        return None

    def save_last(self, validation: dict[str, float] | None) -> Path:
        """Write checkpoint_last (rank 0 only), from which a resume continues exactly."""
        path = self.folder.last_checkpoint
        if self.is_main:
            metadata = self._metadata("last", validation)
            self.state.save(path, metadata, self.beta_schedule(self.state.progress.step))
        return path

    def save_best(self, validation: dict[str, float]) -> Path:
        """Write checkpoint_best (rank 0 only): the weights with their metadata."""
        path = self.folder.best_checkpoint
        if self.is_main:
            save_checkpoint(path, self.state.model, self._metadata("best", validation))
        return path

    def _metadata(self, kind: str, validation: dict[str, float] | None) -> dict[str, Any]:
        return build_metadata(
            model=self.state.model,
            data_info=self.splits.info,
            config=self.config.to_dict(),
            epoch=self.state.progress.epoch,
            step=self.state.progress.step,
            validation=validation,
            kind=kind,
            run_name=self.folder.path.name,
        )

    @torch.no_grad()
    def _write_grids(self) -> dict[str, Path]:
        """Samples from fixed latents and reconstructions of the preview images."""
        model = self.state.model
        model.eval()
        samples = sample_from_model(model, GRID_IMAGES, SAMPLE_SEED)
        # Grey originals, as a person knows them, encoded as they are (not the binarized draw).
        originals = to_float(self.splits.preview)
        # A conditional model's with the images' own labels (ignored by any other).
        reconstructions = model.reconstruct(originals, self.splits.preview_labels)
        written = self.folder.write_grids(
            self.state.progress.epoch, samples, originals, reconstructions
        )
        model.train()
        return written
