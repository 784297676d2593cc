"""The step loop: beta annealing per step, validation with beta = 1 after each epoch, a NaN
guard, a clean stop on Ctrl-C, and one process's part of a torchrun job.

:meth:`Trainer.train_epoch` reads like pytorch/examples' ``train(epoch)``; its parts live beside
it in :mod:`vae.trainer` (the module each step runs, the metric sums, the stop protocol,
validation, a family's own steps, the files the run writes). The state it trains lives in
:class:`~vae.training_state.TrainingState`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vae.config import RunConfig
from vae.data import (
    DataSplits,
    batches_per_epoch,
    global_batch_size,
    training_batches,
    training_labels,
)
from vae.distributed import World
from vae.errors import CheckpointError
from vae.loss_name import training_loss_name
from vae.model import VAE
from vae.objectives import BetaSchedule, ElboTerms, elbo_terms
from vae.reporting import Reporter
from vae.run_folder import RunFolder
from vae.spec import model_spec
from vae.trainer.family_steps import FamilySteps
from vae.trainer.gradients import apply_gradients
from vae.trainer.metric_sums import (
    REPORT_EVERY,
    Interval,
    add_interval,
    empty_sums,
    epoch_record,
)
from vae.trainer.objective import RunObjective
from vae.trainer.run_writer import RunWriter
from vae.trainer.stepped import SteppedModule
from vae.trainer.stopping import StopProtocol, raise_diverged
from vae.trainer.validation import validate
from vae.training_state import Progress, TrainingState

StepCallback = Callable[[int], None]


@dataclass
class TrainingResult:
    """What a finished run produced."""

    run_dir: Path
    best_path: Path
    last_path: Path
    progress: Progress
    history: list[dict[str, Any]]


class Trainer:
    """Trains one run's :class:`TrainingState` on its data splits, epoch after epoch."""

    def __init__(
        self,
        config: RunConfig,
        folder: RunFolder,
        device: torch.device,
        splits: DataSplits,
        reporter: Reporter,
        step_callback: StepCallback | None,
        world: World,
    ) -> None:
        """A new run's trainer; :meth:`restore` turns it into a resumed one."""
        self.world = world
        self.config = config
        self.folder = folder
        self.device = device
        self.splits = splits
        self.reporter = reporter
        self.step_callback = step_callback
        self.spec = model_spec(config, splits.info, splits.classes)
        self.state = TrainingState(config, self.spec, device)
        self.model: VAE = self.state.model
        # The module each step runs: the model, wrapped by DDP and torch.compile in fit().
        self.stepped = SteppedModule(self.model, config, device, world)
        self.optimizer = self.state.optimizer
        self.steps_per_epoch = batches_per_epoch(len(splits.train), config.train.batch_size)
        self.beta_schedule = BetaSchedule.from_config(config.objective, self.steps_per_epoch)
        self.history: list[dict[str, Any]] = []
        self.dynamic = splits.info["binarize"] == "dynamic"
        self.family_steps = FamilySteps(self.model, splits.train, self.dynamic)
        self.loss_name = training_loss_name(config.to_dict())
        self.objective = RunObjective(config, self.loss_name)
        self.writer = RunWriter(
            folder, self.state, config, splits, self.beta_schedule, self.loss_name, world.is_main
        )
        self.stops = StopProtocol(world, device, self.writer)
        self._first_epoch = 0  # where fit() began: a resume that trains no epoch keeps its best
        self._resumed_at: int | None = None  # the step a resume restored (None: a new run)

    @property
    def progress(self) -> Progress:
        """Where training stands (replaced as a whole by :meth:`restore`)."""
        return self.state.progress

    def restore(self) -> None:
        """Continue from the run folder's ``checkpoint_last`` and its metrics so far."""
        self.state.restore(self.folder.last_checkpoint, self.config.train.epochs)
        self._resumed_at = self.progress.step
        _check_progress_fits(self.progress, self.steps_per_epoch, self.folder.last_checkpoint)
        self.history = [r for r in self.folder.read_metrics() if r["epoch"] <= self.progress.epoch]
        self.reporter.message(
            f"resuming {self.folder.path} at epoch {self.progress.epoch + 1}, "
            f"step {self.progress.step}"
        )

    # --- the run ----------------------------------------------------------------------------

    def fit(self, stop_requested: Callable[[], bool]) -> TrainingResult:
        """Train until ``config.train.epochs`` epochs are done; raise TrainingInterrupted when
        ``stop_requested`` says so (after saving) and TrainingDiverged on a non-finite loss."""
        description = self._describe() + self.stepped.wrap()
        total_steps = self.steps_per_epoch * self.config.train.epochs
        self._first_epoch = self.progress.epoch
        self.reporter.run_started(description, total_steps, self.progress.step)
        try:
            while self.progress.epoch < self.config.train.epochs:
                self.train_epoch(stop_requested)
            self._ensure_best()
            self._report_finished()
        finally:
            self.reporter.run_ended()
        self._report_done()
        return TrainingResult(
            self.folder.path,
            self.folder.best_checkpoint,
            self.folder.last_checkpoint,
            self.progress,
            self.history,
        )

    def train_epoch(self, stop_requested: Callable[[], bool]) -> None:
        """One epoch (or the rest of one, after a resume), validated and saved at its end."""
        progress = self.progress
        sums = progress.epoch_sums or empty_sums(self.objective.summed)
        self.model.train()
        # Metrics stay on the device and are read once per interval: a per-step .item() would
        # make a GPU wait for every step before the next one can be queued.
        interval = Interval(self.device, progress.step, self.objective.summed)
        for x, labels in self._batches():
            beta = self.beta_schedule(progress.step)
            terms = self._step(x, labels, beta)
            interval.add(terms, x.shape[0], progress.step)
            last_batch = progress.batch_in_epoch == self.steps_per_epoch
            if self.step_callback is not None:
                self.step_callback(progress.step)
            # Several processes can only agree to stop where they synchronise anyway.
            stop = stop_requested()
            if last_batch or interval.steps >= REPORT_EVERY or self.stops.alone(stop):
                stop = self._close_interval(interval, sums, beta, stop)
                interval = Interval(self.device, progress.step, self.objective.summed)
            else:
                stop = self.stops.alone(stop)
            if stop and not last_batch:
                self.stops.save_and_stop(progress, self.history)
        self._end_epoch(sums)
        self.stops.between_epochs(stop_requested, self.progress, self.config.train.epochs)

    # --- one step ---------------------------------------------------------------------------

    def _batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """The rest of this epoch's batches (this process's share of each), with their labels
        for a model conditioned on them (else None)."""
        train = self.splits.train
        size, seed, epoch = (
            self.config.train.batch_size,
            self.config.train.seed,
            self.progress.epoch,
        )
        start = self.progress.batch_in_epoch
        shard = self.world.shard if self.world.distributed else None
        images = training_batches(train, size, seed, epoch, self.dynamic, start, shard)
        if not self.model.family.conditional:
            return ((x, None) for x in images)
        return zip(images, training_labels(train, size, seed, epoch, start, shard), strict=True)

    def _step(self, x: torch.Tensor, labels: torch.Tensor | None, beta: float) -> ElboTerms | None:
        """One optimisation step on this process's part ``x`` of the next batch (``labels``:
        theirs, for a conditional model)."""
        batch_images = global_batch_size(
            len(self.splits.train), self.config.train.batch_size, self.progress.batch_in_epoch
        )
        loss, terms = self._loss(x, labels, batch_images, beta)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        train = self.config.train
        parameters = list(self.model.parameters())
        if not apply_gradients(parameters, self.optimizer, train.grad_clip, train.grad_skip):
            self.progress.skipped_steps += 1
        self.progress.step += 1
        self.progress.batch_in_epoch += 1
        return terms

    def _loss(
        self, x: torch.Tensor, labels: torch.Tensor | None, batch_images: int, beta: float
    ) -> tuple[torch.Tensor, ElboTerms | None]:
        """The loss to differentiate for this process's part ``x`` of a batch of
        ``batch_images`` images, and its terms.

        Each process's loss is its images' summed loss over the whole batch's size, times the
        number of processes: the average DistributedDataParallel takes over processes is then
        the single-process batch mean, however unevenly the batch was split.
        """
        noise = self.objective.noise(
            self.model, self.state.noise, batch_images, self.device, self.world
        )
        decoded, mu, logvar = self.stepped(x, noise, labels)
        if x.shape[0] == 0:
            # An empty share of a short last batch: zero gradients keep this rank in step.
            zero = decoded.sum() * 0 + sum((p * 0).sum() for p in self.model.parameters())
            return zero, None
        objective = self.config.objective
        if self.objective.samples is not None:  # the IWAE bound: noise [batch, K, latent]
            assert noise is not None and logvar is not None
            terms = self.objective.bound_terms(self.model, decoded, x, mu, logvar, noise, beta)
        else:
            terms = elbo_terms(
                decoded,
                x,
                mu,
                logvar,
                objective.likelihood,
                beta,
                objective.free_bits,
                self.model.likelihood_sigma(objective.gaussian_sigma),
                kl=self.model.kl_term(mu, logvar, noise),
            )
        if not self.world.distributed:
            return terms.loss, terms
        return terms.loss * (x.shape[0] * self.world.world_size / batch_images), terms

    def _close_interval(
        self, interval: Interval, sums: dict[str, float], beta: float, stop: bool
    ) -> bool:
        """Read an interval's metrics off the device (the NaN guard included), add them to the
        epoch's sums and report them; returns whether any process asked to stop."""
        totals, bad_step, stop = interval.read(self.world, stop)
        if bad_step is not None:
            raise_diverged(totals["loss"], bad_step, self.progress, self._resumed_at, self.folder)
        add_interval(sums, totals, interval.images)
        self.progress.epoch_sums = sums
        self.reporter.step(self.progress.step, interval.means(totals, beta))
        return stop

    # --- the end of an epoch ----------------------------------------------------------------

    def _end_epoch(self, sums: dict[str, float]) -> None:
        """Validate, move the schedules on, keep the best model and write the epoch's files."""
        progress = self.progress
        validation = validate(
            self.model,
            self.splits.val,
            self.config.objective.gaussian_sigma,
            self.world,
            self.device,
            progress.epoch + 1,
            self.folder,
            self.objective,
        )
        figure = validation[self.objective.best_key]  # the figure the run optimises
        # The epoch's record names the rate it trained at, not the next epoch's.
        trained_lr = self.optimizer.param_groups[0]["lr"]
        self.state.step_scheduler(figure)
        progress.epoch += 1
        progress.batch_in_epoch = 0
        progress.epoch_sums = {}
        # A family without a KL term to anneal (the autoencoder): every epoch is eligible.
        family = self.model.family
        eligible = not family.best_after_warmup or self.beta_schedule.warmup_done(progress.step)
        self.family_steps.end_epoch(self.world.is_main)
        is_best = eligible and (progress.best_val is None or figure < progress.best_val)
        if is_best:
            progress.best_val = figure
            progress.best_epoch = progress.epoch
            self.writer.save_best(validation)
        beta = self.beta_schedule(progress.step - 1)  # the beta of the epoch's last step
        record = epoch_record(
            progress, beta, trained_lr, sums, validation, eligible, is_best, self.loss_name.key
        )
        if self.config.train.grad_skip > 0:
            record["skipped_steps"] = progress.skipped_steps  # over the whole run so far
        self.history.append(record)
        if self.world.is_main:
            # Rank 0's files of the finished epoch, then its report.
            written = self.writer.write_epoch(self.history, validation)
            if written is not None:
                self.reporter.images_written(progress.epoch, written)
            self.reporter.epoch_ended(record)

    # --- around the epochs ------------------------------------------------------------------

    def _describe(self) -> str:
        info = self.splits.info
        return (
            f"training {self.spec.architecture} {self.model.family.label} "
            f"({self.model.parameter_count():,} parameters) on {info['dataset']} "
            f"({info['num_train']:,} train / {info['num_val']:,} val images) on {self.device}; "
            f"run folder {self.folder.path}"
        )

    def _ensure_best(self) -> None:
        """Leave a checkpoint_best even when the beta warm-up outlasted the run.

        Decided by the saved progress, not by the file: a fallback best written at the end of
        an earlier, shorter run is not recorded as best in checkpoint_last, so a resumed run
        that extends it replaces it with its own final epoch, as an uninterrupted run would
        (a resume that trains no epoch keeps the file it finds)."""
        if not self.world.is_main or self.progress.best_val is not None:
            return
        if self.progress.epoch == self._first_epoch and self.folder.best_checkpoint.exists():
            return
        # The warm-up outlasted the run: the final model is the only candidate left.
        self.reporter.warning(
            "the beta warm-up did not finish within the run; checkpoint_best is the final epoch"
        )
        final = self.history[-1]["validation"] if self.history else {}
        self.progress.best_val = final.get(self.objective.best_key)
        self.progress.best_epoch = self.progress.epoch
        self.writer.save_best(final)

    def _report_finished(self) -> None:
        last = self.history[-1] if self.history else {}
        self.reporter.run_finished(
            {
                f"best_val_{self.loss_name.key}": self.progress.best_val,
                "best_epoch": self.progress.best_epoch,
                "epochs": self.progress.epoch,
                "steps": self.progress.step,
                **{k: v for k, v in last.items() if k.startswith(("val_", "train_"))},
            }
        )

    def _report_done(self) -> None:
        best = self.progress.best_val
        if best is None:
            return
        figure = self.loss_name.figure(best)
        self.reporter.message(
            f"done: best validation {figure} (epoch {self.progress.best_epoch}); "
            f"checkpoints in {self.folder.path}"
        )


def _check_progress_fits(progress: Progress, per_epoch: int, path: Path) -> None:
    """Raise CheckpointError unless the progress restored from ``path`` is a place in a run of
    ``per_epoch`` batches per epoch: a hand-edited ``batch_in_epoch`` would otherwise skip or
    replay data silently (or, if huge, spin through an epoch's batch order for nothing)."""
    if (
        progress.batch_in_epoch > per_epoch
        or progress.step != progress.epoch * per_epoch + progress.batch_in_epoch
    ):
        raise CheckpointError(
            f"{path} has a corrupt training state (progress: epoch "
            f"{progress.epoch}, step {progress.step}, batch {progress.batch_in_epoch} do not "
            f"fit {per_epoch} batches per epoch); it cannot be resumed (checkpoint_best and "
            "the run's other files are untouched)"
        )
