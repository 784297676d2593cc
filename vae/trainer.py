"""The step loop: beta annealing per step, validation with beta = 1 after each epoch, a NaN
guard, a clean stop on Ctrl-C, and one process's part of a torchrun job.

:meth:`Trainer.train_epoch` reads like pytorch/examples' ``train(epoch)``; sharding, guards and
reporting are the small helpers around it. The state it trains lives in
:class:`~vae.training_state.TrainingState`, the files it writes in
:class:`~vae.run_folder.RunFolder`.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vae.checkpoint import build_metadata, save_checkpoint
from vae.config import RunConfig
from vae.data import (
    SPLIT_SEED,
    DataSplits,
    ImageSet,
    batches_per_epoch,
    binarize_once,
    evaluation_batches,
    global_batch_size,
    to_float,
    training_batches,
)
from vae.device import bf16_autocast_supported
from vae.distributed import World
from vae.errors import (
    CheckpointError,
    Setting,
    TrainingDiverged,
    TrainingInterrupted,
    VAEError,
    first_line,
)
from vae.evaluation import evaluate_elbo
from vae.loss_name import training_loss_name
from vae.model import VAE
from vae.objectives import BetaSchedule, ElboTerms, elbo_terms
from vae.reporting import Reporter
from vae.run_folder import RunFolder
from vae.sampling import sample_from_model
from vae.spec import model_spec
from vae.training_state import Progress, TrainingState

SAMPLE_SEED = 0  # the grids written during training use fixed latents, comparable across epochs
GRID_IMAGES = 64
SUMMED_TERMS = ("loss", "neg_elbo", "recon", "kl")
REPORT_EVERY = 20  # steps between reads of the training metrics (and the NaN guard)

StepCallback = Callable[[int], None]


@dataclass
class TrainingResult:
    """What a finished run produced."""

    run_dir: Path
    best_path: Path
    last_path: Path
    progress: Progress
    history: list[dict[str, Any]]


class _Interval:
    """Training metrics of a few steps, summed on the device without synchronising."""

    def __init__(self, device: torch.device, step: int) -> None:
        # float64 (where the device has it) keeps the sums exact, so that they do not depend on
        # where an interval was cut (an interrupted and resumed run matches an uninterrupted one).
        dtype = torch.float32 if device.type == "mps" else torch.float64
        self.sums = torch.zeros(len(SUMMED_TERMS), dtype=dtype, device=device)
        self.bad_step = torch.full((), -1, dtype=torch.long, device=device)
        self.images = 0
        self.steps = 0
        self.started = time.perf_counter()

    def add(self, terms: ElboTerms | None, images: int, step: int) -> None:
        """Add one step's terms for ``images`` images (none on a rank with no share)."""
        self.steps += 1
        if images == 0 or terms is None:  # a rank with no image of a short last batch
            return
        values = torch.stack([getattr(terms, key).detach() for key in SUMMED_TERMS])
        # The first non-finite step is remembered so that the guard can name it.
        finite = torch.isfinite(values[0])
        self.bad_step = torch.where(finite | (self.bad_step >= 0), self.bad_step, step)
        self.sums += values.to(self.sums.dtype) * images
        self.images += images

    def read(self, world: World, stop: bool) -> tuple[dict[str, float], int | None, bool]:
        """(summed metrics, first non-finite step or None, stop) over all ranks: one
        synchronisation per interval, which is also where the ranks agree to stop together."""
        if world.distributed:
            sums = torch.cat([self.sums, self.sums.new_tensor([float(self.images)])])
            flags = torch.stack([self.bad_step.to(sums.dtype), sums.new_tensor(float(stop))])
            world.all_reduce_sum(sums)
            world.all_reduce_max(flags)
            values, (bad_step, stop_value) = sums.tolist(), flags.tolist()
            self.images, stop = int(values.pop()), bool(stop_value)
        else:
            values = self.sums.tolist()  # the one synchronisation of the interval
            bad_step = self.bad_step.item()
        totals = dict(zip(SUMMED_TERMS, values, strict=True))
        totals["seconds"] = time.perf_counter() - self.started
        return totals, (int(bad_step) if bad_step >= 0 else None), stop


def _empty_sums() -> dict[str, float]:
    return {key: 0.0 for key in (*SUMMED_TERMS, "images", "seconds")}


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
        self.spec = model_spec(config, splits.info)
        self.state = TrainingState(config, self.spec, device)
        self.model: VAE = self.state.model
        # The module each step runs: the model, wrapped by DDP and torch.compile in fit().
        self.stepped: torch.nn.Module = self.model
        self.optimizer = self.state.optimizer
        self.steps_per_epoch = batches_per_epoch(len(splits.train), config.train.batch_size)
        self.beta_schedule = BetaSchedule.from_config(config.objective, self.steps_per_epoch)
        self.history: list[dict[str, Any]] = []
        self.use_bf16 = config.train.bf16 and bf16_autocast_supported(device)
        self.dynamic = splits.info["binarize"] == "dynamic"
        self._code_images: ImageSet | None = None  # an autoencoder's training images, drawn once
        # Compilation fails on the first step (a missing C++ compiler, say): caught there.
        self._compile_errors: tuple[type[Exception], ...] = ()
        self.loss_name = training_loss_name(config.to_dict())
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
        self._check_progress_fits()
        self.history = [r for r in self.folder.read_metrics() if r["epoch"] <= self.progress.epoch]
        self.reporter.message(
            f"resuming {self.folder.path} at epoch {self.progress.epoch + 1}, "
            f"step {self.progress.step}"
        )

    def _check_progress_fits(self) -> None:
        """Raise CheckpointError unless the restored progress is a place in this run's epochs:
        a hand-edited ``batch_in_epoch`` would otherwise skip or replay data silently (or, if
        huge, spin through an epoch's batch order for nothing)."""
        progress, per_epoch = self.progress, self.steps_per_epoch
        if (
            progress.batch_in_epoch > per_epoch
            or progress.step != progress.epoch * per_epoch + progress.batch_in_epoch
        ):
            raise CheckpointError(
                f"{self.folder.last_checkpoint} has a corrupt training state (progress: epoch "
                f"{progress.epoch}, step {progress.step}, batch {progress.batch_in_epoch} do not "
                f"fit {per_epoch} batches per epoch); it cannot be resumed (checkpoint_best and "
                "the run's other files are untouched)"
            )

    # --- the run ----------------------------------------------------------------------------

    def fit(self, stop_requested: Callable[[], bool]) -> TrainingResult:
        """Train until ``config.train.epochs`` epochs are done; raise TrainingInterrupted when
        ``stop_requested`` says so (after saving) and TrainingDiverged on a non-finite loss."""
        description = self._describe() + self._wrap_model()
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
        sums = progress.epoch_sums or _empty_sums()
        self.model.train()
        # Metrics stay on the device and are read once per interval: a per-step .item() would
        # make a GPU wait for every step before the next one can be queued.
        interval = _Interval(self.device, progress.step)
        for x in self._batches():
            beta = self.beta_schedule(progress.step)
            terms = self._step(x, beta)
            interval.add(terms, x.shape[0], progress.step)
            last_batch = progress.batch_in_epoch == self.steps_per_epoch
            if self.step_callback is not None:
                self.step_callback(progress.step)
            # Several processes can only agree to stop where they synchronise anyway.
            stop = stop_requested()
            if last_batch or interval.steps >= REPORT_EVERY or self._stops_alone(stop):
                stop = self._close_interval(interval, sums, beta, stop)
                interval = _Interval(self.device, progress.step)
            else:
                stop = self._stops_alone(stop)
            if stop and not last_batch:
                self._save_and_stop()
        self._end_epoch(sums)
        self._stop_between_epochs(stop_requested)

    # --- one step ---------------------------------------------------------------------------

    def _batches(self) -> Iterator[torch.Tensor]:
        """The rest of this epoch's batches (this process's share of each)."""
        return training_batches(
            self.splits.train,
            self.config.train.batch_size,
            self.config.train.seed,
            self.progress.epoch,
            self.dynamic,
            start_batch=self.progress.batch_in_epoch,
            shard=self.world.shard if self.world.distributed else None,
        )

    def _step(self, x: torch.Tensor, beta: float) -> ElboTerms | None:
        """One optimisation step on this process's part ``x`` of the next batch."""
        batch_images = global_batch_size(
            len(self.splits.train), self.config.train.batch_size, self.progress.batch_in_epoch
        )
        loss, terms = self._loss(x, batch_images, beta)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.train.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.train.grad_clip)
        self.optimizer.step()
        self.progress.step += 1
        self.progress.batch_in_epoch += 1
        return terms

    def _loss(
        self, x: torch.Tensor, batch_images: int, beta: float
    ) -> tuple[torch.Tensor, ElboTerms | None]:
        """The loss to differentiate for this process's part ``x`` of a batch of
        ``batch_images`` images, and its terms.

        Each process's loss is its images' summed loss over the whole batch's size, times the
        number of processes: the average DistributedDataParallel takes over processes is then
        the single-process batch mean, however unevenly the batch was split.
        """
        noise = self._posterior_noise(batch_images)
        decoded, mu, logvar = self._forward(x, noise)
        if x.shape[0] == 0:
            # An empty share of a short last batch: zero gradients keep this rank in step.
            zero = decoded.sum() * 0 + sum((p * 0).sum() for p in self.model.parameters())
            return zero, None
        objective = self.config.objective
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

    def _posterior_noise(self, batch_images: int) -> torch.Tensor | None:
        """The reparameterisation noise of this process's images (None for a family whose
        posterior is a point, the autoencoder's).

        It is drawn for the whole batch from the run's generator and sliced, so several
        processes use the same noise as one would."""
        if not self.model.family.stochastic:
            return None
        noise = torch.randn(
            batch_images, self.spec.latent_dim, generator=self.state.noise, device=self.device
        )
        if self.world.distributed:
            noise = noise[self.world.shard(batch_images)]
        return noise

    def _forward(
        self, x: torch.Tensor, noise: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The trained module's (decoded, mu, logvar), a compile failure told as a usage error."""
        try:
            with self._autocast():
                return self.stepped(x, noise=noise)
        except self._compile_errors as error:
            cause = getattr(error, "inner_exception", None) or error  # the backend's own error
            raise VAEError(
                Setting("compile"),
                f" failed ({first_line(cause)}); train without ",
                Setting("compile"),
            ) from None

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.use_bf16:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # --- reporting and stopping within an epoch --------------------------------------------

    def _stops_alone(self, stop: bool) -> bool:
        """Whether a requested stop may happen at once: one process needs no agreement."""
        return stop and not self.world.distributed

    def _close_interval(
        self, interval: _Interval, sums: dict[str, float], beta: float, stop: bool
    ) -> bool:
        """Read an interval's metrics off the device (the NaN guard included), add them to the
        epoch's sums and report them; returns whether any process asked to stop."""
        totals, bad_step, stop = interval.read(self.world, stop)
        if bad_step is not None:
            where = (
                f"loss became {totals['loss']} at epoch {self.progress.epoch + 1}, step {bad_step}"
            )
            saved = f"stopped without saving: the last good checkpoints in {self.folder.path} are intact"
            if self._resumed_at is not None and bad_step - self._resumed_at <= REPORT_EVERY:
                # Within the first steps of a resume the likely cause is the restored state.
                raise TrainingDiverged(
                    f"{where}, {bad_step - self._resumed_at} steps after resuming: the training "
                    f"state in {self.folder.last_checkpoint} may be damaged; {saved} (if the "
                    "state is sound, try a lower ",
                    Setting("lr"),
                    ")",
                )
            raise TrainingDiverged(
                f"{where}; {saved} (try a lower ", Setting("lr"), " or ", Setting("grad_clip"), ")"
            )
        for key in SUMMED_TERMS:
            sums[key] += totals[key]
        sums["images"] += interval.images
        sums["seconds"] += totals["seconds"]
        self.progress.epoch_sums = sums
        images = max(interval.images, 1)
        seconds = totals["seconds"]
        self.reporter.step(
            self.progress.step,
            {
                **{key: totals[key] / images for key in ("loss", "recon", "kl")},
                "beta": beta,
                "images_per_second": interval.images / seconds if seconds > 0 else 0.0,
            },
        )
        return stop

    def _save_and_stop(self) -> None:
        """Save checkpoint_last mid-epoch and stop (Ctrl-C, agreed by every process)."""
        path = self.save_last(self.history[-1]["validation"] if self.history else None)
        self.world.barrier()  # torchrun stops every process once one exits: let rank 0 save
        raise TrainingInterrupted(
            f"interrupted at epoch {self.progress.epoch + 1}, step {self.progress.step}: saved "
            f"{path}; continue with: train --resume {self.folder.path}"
        )

    def _stop_between_epochs(self, stop_requested: Callable[[], bool]) -> None:
        """Stop after a saved epoch when any process asked to (and epochs remain)."""
        progress = self.progress
        if (
            self.world.any(stop_requested(), self.device)
            and progress.epoch < self.config.train.epochs
        ):
            raise TrainingInterrupted(
                f"interrupted after epoch {progress.epoch}, step {progress.step}: saved "
                f"{self.folder.last_checkpoint}; continue with: train --resume {self.folder.path}"
            )

    # --- the end of an epoch ----------------------------------------------------------------

    def _end_epoch(self, sums: dict[str, float]) -> None:
        """Validate, move the schedules on, keep the best model and write the epoch's files."""
        validation = self._validate()
        # The epoch's record names the rate it trained at, not the next epoch's.
        trained_lr = self.optimizer.param_groups[0]["lr"]
        self.state.step_scheduler(validation["neg_elbo"])
        progress = self.progress
        progress.epoch += 1
        progress.batch_in_epoch = 0
        progress.epoch_sums = {}
        # A family without a KL term to anneal (the autoencoder): every epoch is eligible.
        family = self.model.family
        eligible = not family.best_after_warmup or self.beta_schedule.warmup_done(progress.step)
        if family.refits_codes and self.world.is_main:
            self._refit_from_codes()
        is_best = eligible and (
            progress.best_val is None or validation["neg_elbo"] < progress.best_val
        )
        if is_best:
            progress.best_val = validation["neg_elbo"]
            progress.best_epoch = progress.epoch
            self.save_best(validation)
        record = self._epoch_record(sums, validation, eligible, is_best, trained_lr)
        self.history.append(record)
        if self.world.is_main:
            self._write_epoch(record, validation)

    def _epoch_record(
        self,
        sums: dict[str, float],
        validation: dict[str, float],
        eligible: bool,
        best: bool,
        lr: float,
    ) -> dict[str, Any]:
        """The epoch's line of metrics.jsonl (``lr``: the rate the epoch trained at)."""
        images = max(sums["images"], 1.0)
        return {
            "epoch": self.progress.epoch,
            "step": self.progress.step,
            "beta": self.beta_schedule(self.progress.step - 1),
            "lr": lr,
            "train_loss": sums["loss"] / images,
            "train_neg_elbo": sums["neg_elbo"] / images,
            "train_recon": sums["recon"] / images,
            "train_kl": sums["kl"] / images,
            **{f"val_{key}": value for key, value in validation.items()},
            "validation": validation,
            "warmup_done": eligible,
            "best": best,
            "epoch_seconds": sums["seconds"],
            "images_per_second": images / sums["seconds"] if sums["seconds"] > 0 else 0.0,
        }

    def _write_epoch(self, record: dict[str, Any], validation: dict[str, float]) -> None:
        """Rank 0's files of a finished epoch, then its report."""
        # metrics.jsonl before checkpoint_last: a kill between the two leaves a record that the
        # resume (from the previous epoch) drops and writes again, never an epoch with no record.
        self.folder.write_metrics(self.history)
        self.save_last(validation)
        self.folder.write_curves(self.history, self.loss_name)
        sample_every = self.config.train.sample_every
        if sample_every and self.progress.epoch % sample_every == 0:
            self._write_grids()
        self.reporter.epoch_ended(record)

    def _validate(self) -> dict[str, float]:
        """The validation ELBO (beta = 1), refused when not finite; several processes each score
        a part and sum."""
        sigma = self.config.objective.gaussian_sigma
        if not self.world.distributed:
            validation = evaluate_elbo(self.model, self.splits.val, sigma, batch_size=1000)
        else:
            part = self.splits.val.subset(self.world.shard(len(self.splits.val)))
            means = evaluate_elbo(self.model, part, sigma, batch_size=1000)
            sums = torch.tensor(
                [value * len(part) for value in means.values()] + [float(len(part))],
                dtype=torch.float64,
                device=self.device,
            )
            *totals, count = self.world.all_reduce_sum(sums).tolist()
            validation = {key: total / count for key, total in zip(means, totals, strict=True)}
        if not all(math.isfinite(v) for v in validation.values()):
            raise TrainingDiverged(
                f"validation -ELBO became {validation['neg_elbo']} after epoch "
                f"{self.progress.epoch + 1}; stopped without saving: the last good checkpoints "
                f"in {self.folder.path} are intact"
            )
        return validation

    @torch.no_grad()
    def _refit_from_codes(self) -> None:
        """What the family fits to its training codes (an autoencoder samples from a Gaussian
        fitted to them), refitted before each save so that every checkpoint can generate."""
        self.model.eval()
        if self._code_images is None:
            train = self.splits.train
            if self.dynamic:
                train = binarize_once(train, SPLIT_SEED)  # the kind of image the model trains on
            self._code_images = train
        codes = torch.cat(
            [self.model.encode(x)[0] for x in evaluation_batches(self._code_images, 1000)]
        )
        self.model.fit_code_distribution(codes)
        self.model.train()

    @torch.no_grad()
    def _write_grids(self) -> None:
        """Samples from fixed latents and reconstructions of the preview images."""
        self.model.eval()
        samples = sample_from_model(self.model, GRID_IMAGES, SAMPLE_SEED)
        # Grey originals, as a person knows them, encoded as they are (not the binarized draw).
        originals = to_float(self.splits.preview)
        reconstructions = self.model.reconstruct(originals)
        written = self.folder.write_grids(self.progress.epoch, samples, originals, reconstructions)
        self.model.train()
        self.reporter.images_written(self.progress.epoch, written)

    # --- checkpoints ------------------------------------------------------------------------

    def save_last(self, validation: dict[str, float] | None) -> Path:
        """Write checkpoint_last (rank 0 only), from which a resume continues exactly."""
        path = self.folder.last_checkpoint
        if self.world.is_main:
            metadata = self._metadata("last", validation)
            self.state.save(path, metadata, self.beta_schedule(self.progress.step))
        return path

    def save_best(self, validation: dict[str, float]) -> Path:
        """Write checkpoint_best (rank 0 only): the weights with their metadata."""
        path = self.folder.best_checkpoint
        if self.world.is_main:
            save_checkpoint(path, self.model, self._metadata("best", validation))
        return path

    def _metadata(self, kind: str, validation: dict[str, float] | None) -> dict[str, Any]:
        return build_metadata(
            model=self.model,
            data_info=self.splits.info,
            config=self.config.to_dict(),
            epoch=self.progress.epoch,
            step=self.progress.step,
            validation=validation,
            kind=kind,
            run_name=self.folder.path.name,
        )

    # --- around the epochs ------------------------------------------------------------------

    def _describe(self) -> str:
        info = self.splits.info
        return (
            f"training {self.spec.architecture} {self.model.family.label} "
            f"({self.model.parameter_count():,} parameters) on {info['dataset']} "
            f"({info['num_train']:,} train / {info['num_val']:,} val images) on {self.device}; "
            f"run folder {self.folder.path}"
        )

    def _wrap_model(self) -> str:
        """Wrap the trained module in DDP and torch.compile as the run asks; returns what to add
        to the run's description."""
        added = ""
        if self.world.distributed:
            added += f"; {self.world.world_size} processes"
            from torch.nn.parallel import DistributedDataParallel

            self.stepped = DistributedDataParallel(
                self.model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
            )
        if self.config.train.compile:
            added += "; torch.compile"
            # The (DDP-wrapped) module: DDP's hooks then see the compiled graph's gradients.
            # Checkpoints still come from self.model, so their tensor names stay plain.
            self.stepped = torch.compile(self.stepped)
            from torch._dynamo.exc import TorchDynamoException

            self._compile_errors = (TorchDynamoException,)
        return added

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
        self.progress.best_val = final.get("neg_elbo")
        self.progress.best_epoch = self.progress.epoch
        self.save_best(final)

    def _report_finished(self) -> None:
        last = self.history[-1] if self.history else {}
        self.reporter.run_finished(
            {
                "best_val_neg_elbo": self.progress.best_val,
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
