"""How a run stops early: on Ctrl-C, where every process agrees to stop, with checkpoint_last
saved; on a non-finite training loss, without saving, so that the last good checkpoints stay."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn

import torch

from vae.distributed import World
from vae.errors import Setting, TrainingDiverged, TrainingInterrupted
from vae.run_folder import RunFolder
from vae.trainer.metric_sums import REPORT_EVERY
from vae.trainer.run_writer import RunWriter
from vae.training_state import Progress


class StopProtocol:
    """When a requested stop (Ctrl-C) may happen, and what it saves and says.

    One process stops at once; several can only agree to stop where they synchronise anyway
    (an interval's read, the end of an epoch)."""

    def __init__(self, world: World, device: torch.device, writer: RunWriter) -> None:
        self.world = world
        self.device = device
        self.writer = writer

    def alone(self, stop: bool) -> bool:
        """Whether a requested stop may happen at once: one process needs no agreement."""
        return stop and not self.world.distributed

    def save_and_stop(self, progress: Progress, history: list[dict[str, Any]]) -> NoReturn:
        """Save checkpoint_last mid-epoch and stop (Ctrl-C, agreed by every process)."""
        path = self.writer.save_last(history[-1]["validation"] if history else None)
        self.world.barrier()  # torchrun stops every process once one exits: let rank 0 save
        raise TrainingInterrupted(
            f"interrupted at epoch {progress.epoch + 1}, step {progress.step}: saved "
            f"{path}; continue with: train --resume {self.writer.folder.path}"
        )

    def between_epochs(
        self, stop_requested: Callable[[], bool], progress: Progress, epochs: int
    ) -> None:
        """Stop after a saved epoch when any process asked to (and epochs remain)."""
        if self.world.any(stop_requested(), self.device) and progress.epoch < epochs:
            folder = self.writer.folder
            raise TrainingInterrupted(
                f"interrupted after epoch {progress.epoch}, step {progress.step}: saved "
                f"{folder.last_checkpoint}; continue with: train --resume {folder.path}"
            )


def raise_diverged(
    loss: float, bad_step: int, progress: Progress, resumed_at: int | None, folder: RunFolder
) -> NoReturn:
    """Stop on the first non-finite training loss (at ``bad_step``), saving nothing.

    ``resumed_at``: the step a resume restored (None for a new run)."""
    where = f"loss became {loss} at epoch {progress.epoch + 1}, step {bad_step}"
    saved = f"stopped without saving: the last good checkpoints in {folder.path} are intact"
    if resumed_at is not None and bad_step - resumed_at <= REPORT_EVERY:
        # Within the first steps of a resume the likely cause is the restored state.
        raise TrainingDiverged(
            f"{where}, {bad_step - resumed_at} steps after resuming: the training "
            f"state in {folder.last_checkpoint} may be damaged; {saved} (if the "
            "state is sound, try a lower ",
            Setting("lr"),
            ")",
        )
    raise TrainingDiverged(
        f"{where}; {saved} (try a lower ", Setting("lr"), " or ", Setting("grad_clip"), ")"
    )
