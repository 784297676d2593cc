"""Training one run, epoch after epoch: the step loop and its parts, one module each.

- :mod:`~vae.trainer.loop`: :class:`Trainer`, whose ``train_epoch`` reads like pytorch/examples'
  ``train(epoch)``, and what a finished run returns (:class:`TrainingResult`);
- :mod:`~vae.trainer.stepped`: the module each step runs (DDP, torch.compile, bf16 autocast);
- :mod:`~vae.trainer.metric_sums`: the training metrics summed on the device, read once per
  interval, and the epoch's record;
- :mod:`~vae.trainer.stopping`: the stop protocol (Ctrl-C agreed between processes, saved; a
  non-finite loss, unsaved);
- :mod:`~vae.trainer.validation`: the validation ELBO after each epoch, summed over processes;
- :mod:`~vae.trainer.family_steps`: what a model family adds at the end of an epoch;
- :mod:`~vae.trainer.run_writer`: the files an epoch writes (metrics, checkpoints, curves, grids).

Starting or resuming a run around it is :mod:`vae.training`'s.
"""

from vae.trainer.loop import StepCallback, Trainer, TrainingResult
from vae.trainer.metric_sums import REPORT_EVERY, SUMMED_TERMS
from vae.trainer.run_writer import GRID_IMAGES, SAMPLE_SEED

__all__ = [
    "GRID_IMAGES",
    "REPORT_EVERY",
    "SAMPLE_SEED",
    "SUMMED_TERMS",
    "StepCallback",
    "Trainer",
    "TrainingResult",
]
