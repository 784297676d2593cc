"""The training loop: beta annealing per step, validation with beta = 1, atomic checkpoints,
exact resume, a NaN guard and a clean stop on Ctrl-C."""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from vae import distributed
from vae.checkpoint import (
    BEST_NAME,
    LAST_NAME,
    OPTIMIZER_PREFIX,
    RNG_PREFIX,
    build_metadata,
    check_model_tensors,
    check_tensor_table,
    read_header,
    read_tensors,
    save_checkpoint,
)
from vae.config import PERCEPTUAL_LOSSES, RunConfig, config_to_yaml, resolve_data_dir
from vae.data import (
    SPLIT_SEED,
    DataSplits,
    ImageSet,
    batches_per_epoch,
    binarize_once,
    data_difference,
    evaluation_batches,
    global_batch_size,
    load_splits,
    to_float,
    training_batches,
)
from vae.device import bf16_autocast_supported, resolve_device
from vae.distributed import World, run_together, world_from_environment
from vae.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    TrainingDiverged,
    TrainingInterrupted,
    VAEError,
    first_line,
)
from vae.evaluation import evaluate_elbo
from vae.fileio import atomic_write_text
from vae.images import save_grid, save_reconstruction_grid
from vae.interrupts import graceful_interrupt
from vae.model import VAE, build_model
from vae.objectives import BetaSchedule, elbo_terms
from vae.plots import save_training_curves
from vae.reporting import Reporter, ReporterGroup
from vae.runlock import LOCK_NAME, run_folder_lock
from vae.spec import model_spec
from vae.trackers import check_tracker, make_tracker

CONFIG_NAME = "config.yaml"
METRICS_NAME = "metrics.jsonl"
CURVES_NAME = "curves.png"
SAMPLE_SEED = 0  # the grids written during training use fixed latents, comparable across epochs
GRID_IMAGES = 64
# Options that may change when resuming; anything else would make the resumed run a different run.
RESUMABLE_OVERRIDES = frozenset(
    {"epochs", "device", "bf16", "compile", "sample_every", "tracker", "data_dir", "download"}
)


@dataclass
class Progress:
    """Where training stands; saved in the last checkpoint so that a resume continues exactly."""

    epoch: int = 0  # epochs fully completed
    step: int = 0  # optimisation steps taken
    batch_in_epoch: int = 0  # batches of epoch ``epoch`` already done (non-zero after Ctrl-C)
    epoch_sums: dict[str, float] = field(default_factory=dict)
    best_val: float | None = None
    best_epoch: int | None = None


@dataclass
class TrainingResult:
    """What a finished run produced."""

    run_dir: Path
    best_path: Path
    last_path: Path
    progress: Progress
    history: list[dict[str, Any]]


StepCallback = Callable[[int], None]


def default_run_name(config: RunConfig) -> str:
    """e.g. ``mnist-conv-20261121-101500`` (folder datasets use their folder name)."""
    dataset = config.data.dataset
    if dataset.startswith("folder:"):
        dataset = Path(dataset[len("folder:") :]).name or "folder"
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{dataset}-{config.model.architecture}-{stamp}"


def prepare_resume(run_dir: Path, overrides: dict[str, Any]) -> RunConfig:
    """The configuration of an existing run, with the few options a resume may change."""
    if not (run_dir / LAST_NAME).exists():
        raise ConfigError(f"cannot resume {run_dir}: no {LAST_NAME} there")
    rejected = sorted(set(overrides) - RESUMABLE_OVERRIDES)
    if rejected:
        flags = ", ".join("--" + name.replace("_", "-") for name in rejected)
        allowed = ", ".join("--" + name.replace("_", "-") for name in sorted(RESUMABLE_OVERRIDES))
        raise ConfigError(f"{flags} cannot change on --resume (only {allowed} can)")
    # The checkpoint's own copy of the configuration is authoritative: config.yaml may be edited.
    metadata = read_header(run_dir / LAST_NAME).metadata
    if not isinstance(metadata.get("config"), dict):
        raise CheckpointError(f"{run_dir / LAST_NAME} has no run configuration: cannot resume")
    config = RunConfig.from_dict(metadata["config"], source=str(run_dir / LAST_NAME))
    saved_model = metadata["config"].get("model")
    if isinstance(saved_model, dict) and "prior" not in saved_model:
        config.model.prior = "standard"  # runs from before --prior existed had N(0, I)
    # A checkpoint decides no write location: the data folder (where downloads and caches go)
    # is the command line's, else $VAE_DATA_DIR, else ./data; the data found there is then
    # checked against the fingerprint the checkpoint recorded.
    config.data.data_dir = None
    return config.override(overrides).validate()


def train(
    config: RunConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    reporter: Reporter | None = None,
    step_callback: StepCallback | None = None,
    stop_requested: Callable[[], bool] | None = None,
    world: World | None = None,
) -> TrainingResult:
    """Train a VAE as ``config`` says, writing everything to ``run_dir``.

    ``step_callback(step)`` runs after every optimisation step (tests use it to simulate a
    Ctrl-C or a crash at a chosen moment). ``stop_requested`` tells whether Ctrl-C was pressed;
    by default this function installs its own handler (the CLI installs one earlier, before its
    imports, so that a Ctrl-C at start-up is handled the same way).

    ``world``: this process's place among torchrun's processes (default: read from the
    environment). Every rank trains on its part of each batch, gradients are all-reduced, and
    rank 0 alone writes files and reports; ``batch_size`` is the global batch, so a run and its
    resumes take the same steps whatever the number of processes.
    """
    world = world if world is not None else world_from_environment()
    if stop_requested is None:
        with graceful_interrupt(world.distributed) as own_stop_requested:
            return train(
                config,
                run_dir,
                resume=resume,
                reporter=reporter,
                step_callback=step_callback,
                stop_requested=own_stop_requested,
                world=world,
            )
    config.validate()
    check_tracker(config.train.tracker)  # before the slow start: a missing package is a usage error
    reporter = (reporter or Reporter()) if world.is_main else Reporter()
    run_dir = Path(run_dir)
    device = distributed.start(world, resolve_device(config.train.device))
    held = contextlib.ExitStack()
    try:

        def set_up() -> _Run:
            if world.is_main:  # one writer per run folder, taken before anything is written
                held.enter_context(run_folder_lock(run_dir))
            if not resume and run_dir.exists() and not _restartable(run_dir):
                raise ConfigError(
                    f"run directory {run_dir} already exists: continue it with --resume "
                    f"{run_dir} or choose another run name"
                )
            splits = load_splits(config.data, config.objective.likelihood)
            if resume:
                _check_same_data(run_dir / LAST_NAME, splits.info, config)
            splits = splits.to(device)
            if len(splits.val) < world.world_size:
                raise ConfigError(
                    f"{world.world_size} processes need at least as many validation images, "
                    f"got {len(splits.val)}: raise --val-size"
                )
            run = _Run(config, run_dir, device, splits, reporter, step_callback, world)
            if resume:
                run.restore()
            return run

        run = run_together(world, device, set_up)
        if world.any(stop_requested(), device):
            again = f"train --resume {run_dir}" if resume else "the same train command"
            raise TrainingInterrupted(
                f"interrupted before training started: nothing was written; start again with {again}"
            )
        if world.is_main:
            _remove_stale_temporaries(run_dir)
            run_dir.mkdir(parents=True, exist_ok=True)
            # Rewritten on resume too, so that it keeps describing the run (e.g. after --epochs grew).
            atomic_write_text(run_dir / CONFIG_NAME, config_to_yaml(config))
            tracker = make_tracker(config.train.tracker, run_dir, run_dir.name)
            if tracker is not None:
                run.reporter = ReporterGroup(run.reporter, tracker)
            run.reporter.run_configured(config.to_dict())
        try:
            result = run.fit(stop_requested)
        except (TrainingDiverged, TrainingInterrupted):
            world.barrier()  # raised by every rank at once: leave together (see below)
            raise
        # Leaving together: a rank that tears down its connections while another still
        # finishes its last collective makes the other abort.
        world.barrier()
        return result
    finally:
        held.close()
        distributed.stop(world)


def _check_same_data(path: Path, found: dict[str, Any], config: RunConfig) -> None:
    """Refuse to resume on data other than the run's (a different folder, edited files)."""
    recorded = read_header(path).metadata.get("data")
    difference = data_difference(recorded if isinstance(recorded, dict) else {}, found)
    if difference is not None:
        dataset = config.data.dataset
        where = dataset.removeprefix("folder:") if dataset.startswith("folder:") else None
        where = where or resolve_data_dir(config.data.data_dir)
        raise ConfigError(
            f"cannot resume {path.parent}: the data found under {where} is not the data it was "
            f"trained on ({difference}); pass --data-dir with the run's data"
        )


SUMMED_TERMS = ("loss", "neg_elbo", "recon", "kl")
REPORT_EVERY = 20  # steps between reads of the training metrics (and the NaN guard)


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

    def add(self, terms: Any, images: int, step: int) -> None:
        self.steps += 1
        if images == 0:  # a rank with no image of a short last batch has nothing to add
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


# What a run writes before its first checkpoint_last. A folder holding only these (a run stopped
# before it could be resumed) may be started again from scratch under the same name: the same
# configuration rewrites them, epoch 1's checkpoint_best included.
_REGENERATED = {CONFIG_NAME, METRICS_NAME, CURVES_NAME, "images", BEST_NAME}


def _restartable(run_dir: Path) -> bool:
    return all(
        item.name in _REGENERATED or item.name == LOCK_NAME or _is_temporary(item)
        for item in run_dir.iterdir()
    )


def _is_temporary(item: Path) -> bool:
    """A file that :func:`atomic_write_bytes` was writing when its process was killed."""
    return item.is_file() and item.name.startswith(".") and item.name.endswith(".tmp")


def _remove_stale_temporaries(run_dir: Path) -> None:
    if run_dir.is_dir():
        for item in run_dir.iterdir():
            if _is_temporary(item):
                item.unlink(missing_ok=True)


class _Run:
    """One training run's state. Kept private: the public surface is :func:`train`."""

    def __init__(
        self,
        config: RunConfig,
        run_dir: Path,
        device: torch.device,
        splits: DataSplits,
        reporter: Reporter,
        step_callback: StepCallback | None,
        world: World,
    ) -> None:
        self.world = world
        self.config = config
        self.run_dir = run_dir
        self.device = device
        self.splits = splits
        self.reporter = reporter
        self.step_callback = step_callback
        train_config = config.train
        torch.manual_seed(train_config.seed)
        self.spec = model_spec(config, splits.info)
        self.model: VAE = build_model(self.spec).to(device)
        if self.spec.learned_sigma:
            with torch.no_grad():
                self.model.log_sigma.fill_(math.log(config.objective.gaussian_sigma))
        self.trained: torch.nn.Module = self.model  # wrapped by DistributedDataParallel in fit()
        optimizer_class = (
            torch.optim.AdamW if train_config.optimizer == "adamw" else torch.optim.Adam
        )
        self.optimizer = optimizer_class(
            self.model.parameters(),
            lr=train_config.lr,
            weight_decay=train_config.weight_decay,
            # One fused kernel per step instead of a loop over parameter tensors.
            fused=device.type in ("cpu", "cuda"),
        )
        self.scheduler: Any = None
        if train_config.lr_schedule == "cosine":
            self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
                self.optimizer, T_max=train_config.epochs
            )
        elif train_config.lr_schedule == "plateau":
            self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.optimizer, factor=0.5, patience=3
            )
        self.steps_per_epoch = batches_per_epoch(len(splits.train), train_config.batch_size)
        self.beta_schedule = BetaSchedule.from_config(config.objective, self.steps_per_epoch)
        self.noise = torch.Generator(device=device).manual_seed(train_config.seed)
        self.progress = Progress()
        self.history: list[dict[str, Any]] = []
        self.use_bf16 = train_config.bf16 and bf16_autocast_supported(device)
        self.dynamic = splits.info["binarize"] == "dynamic"
        self._code_images: ImageSet | None = None  # an autoencoder's training images, drawn once
        # Compilation fails on the first step (a missing C++ compiler, say): caught there.
        self._compile_errors: tuple[type[Exception], ...] = ()

    # --- state ----------------------------------------------------------------------------

    def _state_tensors(self) -> dict[str, torch.Tensor]:
        tensors: dict[str, torch.Tensor] = {}
        for index, state in self.optimizer.state_dict()["state"].items():
            for key, value in state.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"{OPTIMIZER_PREFIX}{index}.{key}"] = value
        tensors[RNG_PREFIX + "torch"] = torch.get_rng_state()
        tensors[RNG_PREFIX + "noise"] = self.noise.get_state()
        if self.device.type == "cuda":
            tensors[RNG_PREFIX + "cuda"] = torch.cuda.get_rng_state(self.device)
        return tensors

    def _state_json(self) -> dict[str, Any]:
        optimizer_state = self.optimizer.state_dict()
        scalars = {
            str(index): {k: v for k, v in state.items() if not isinstance(v, torch.Tensor)}
            for index, state in optimizer_state["state"].items()
        }
        return {
            "progress": self.progress.__dict__,
            "beta": self.beta_schedule(self.progress.step),
            "optimizer": {"param_groups": optimizer_state["param_groups"], "scalars": scalars},
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
        }

    def restore(self) -> None:
        """Load model, optimizer, scheduler, progress and random states from the last checkpoint."""
        path = self.run_dir / LAST_NAME
        header = read_header(path)
        state = header.training_state
        if state is None:
            raise CheckpointError(f"{path} holds no training state (weights only): cannot resume")
        check_model_tensors(path, header)
        check_tensor_table(path, header, self.model.state_dict())
        try:
            self._restore_state(path, state)
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as error:
            # The file passed every format check, so this is a damaged or hand-edited state.
            detail = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise CheckpointError(
                f"{path} has a corrupt training state ({type(error).__name__}: {detail}); "
                "it cannot be resumed (checkpoint_best and the run's other files are untouched)"
            ) from None
        saved_train = header.metadata.get("config", {}).get("train", {})
        self._continue_with_epochs(
            saved_train.get("epochs") if isinstance(saved_train, dict) else None
        )
        self.history = [
            r
            for r in read_metrics(self.run_dir / METRICS_NAME)
            if r["epoch"] <= self.progress.epoch
        ]
        self.reporter.message(
            f"resuming {self.run_dir} at epoch {self.progress.epoch + 1}, step {self.progress.step}"
        )

    def _continue_with_epochs(self, saved_epochs: Any) -> None:
        """A resume with a new number of epochs N continues as if the run had been started with
        N: the cosine schedule is stretched (or shrunk) so that the learning rate after epoch e is
        lr0 (1 + cos(pi e / N)) / 2 from here on. Unchanged epochs change nothing (bit-exact)."""
        epochs, done = self.config.train.epochs, self.progress.epoch
        if saved_epochs == epochs:
            return
        if epochs <= done:
            raise ConfigError(
                f"--epochs {epochs} is not after epoch {done}, where {self.run_dir} stands: give "
                f"--epochs {done + 1} or more"
            )
        if isinstance(self.scheduler, torch.optim.lr_scheduler.CosineAnnealingLR):
            # The scheduler steps recursively from the current rate: setting that rate to the
            # closed form for the new length makes every later step follow the new curve.
            self.scheduler.T_max = epochs
            for group, base in zip(
                self.optimizer.param_groups, self.scheduler.base_lrs, strict=True
            ):
                group["lr"] = base * (1 + math.cos(math.pi * done / epochs)) / 2
            self.scheduler._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def _restore_state(self, path: Path, state: dict[str, Any]) -> None:
        # A hand-edited state (a string where a number belongs) would load without complaint and
        # fail steps later with a traceback; each part must have the kinds a fresh run's has.
        _check_progress(state["progress"])
        fresh = self.optimizer.state_dict()["param_groups"]
        _check_same_kind(fresh, state["optimizer"]["param_groups"], "optimizer param_groups")
        for index, scalars in state["optimizer"]["scalars"].items():
            _check_same_kind({}, scalars, f"optimizer state {index}")
            for key, value in scalars.items():
                _check_same_kind(0.0, value, f"optimizer state {index} {key}")
        if self.scheduler is not None and state.get("scheduler") is not None:
            _check_same_kind(self.scheduler.state_dict(), state["scheduler"], "scheduler")
        weights = read_tensors(path, "model.", "cpu")
        self.model.load_state_dict(weights)
        tensors = read_tensors(path, OPTIMIZER_PREFIX, "cpu")
        per_param: dict[int, dict[str, Any]] = {}
        for name, value in tensors.items():
            index, key = name.split(".", 1)
            per_param.setdefault(int(index), {})[key] = value
        for index, scalars in state["optimizer"]["scalars"].items():
            per_param.setdefault(int(index), {}).update(scalars)
        self.optimizer.load_state_dict(
            {"state": per_param, "param_groups": state["optimizer"]["param_groups"]}
        )
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        rng = read_tensors(path, RNG_PREFIX, "cpu")
        torch.set_rng_state(rng["torch"])
        self.noise.set_state(rng["noise"])
        if self.device.type == "cuda" and "cuda" in rng:
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        self.progress = Progress(**state["progress"])

    def _metadata(self, kind: str, validation: dict[str, float] | None) -> dict[str, Any]:
        return build_metadata(
            model=self.model,
            data_info=self.splits.info,
            config=self.config.to_dict(),
            epoch=self.progress.epoch,
            step=self.progress.step,
            validation=validation,
            kind=kind,
            run_name=self.run_dir.name,
        )

    def save_last(self, validation: dict[str, float] | None) -> Path:
        path = self.run_dir / LAST_NAME
        if not self.world.is_main:
            return path
        save_checkpoint(
            path,
            self.model,
            self._metadata("last", validation),
            extra_tensors=self._state_tensors(),
            training_state=self._state_json(),
        )
        return path

    def save_best(self, validation: dict[str, float]) -> Path:
        path = self.run_dir / BEST_NAME
        if self.world.is_main:
            save_checkpoint(path, self.model, self._metadata("best", validation))
        return path

    # --- loop -----------------------------------------------------------------------------

    def fit(self, stop_requested: Callable[[], bool]) -> TrainingResult:
        train_config = self.config.train
        total_steps = self.steps_per_epoch * train_config.epochs
        description = (
            f"training {self.spec.architecture} {self.spec.model_type.upper()} ({self.model.parameter_count():,} parameters) "
            f"on {self.splits.info['dataset']} ({self.splits.info['num_train']:,} train / "
            f"{self.splits.info['num_val']:,} val images) on {self.device}; run folder {self.run_dir}"
        )
        if self.world.distributed:
            description += f"; {self.world.world_size} processes"
            from torch.nn.parallel import DistributedDataParallel

            self.trained = DistributedDataParallel(
                self.model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
            )
        if train_config.compile:
            description += "; torch.compile"
            # The (DDP-wrapped) module: DDP's hooks then see the compiled graph's gradients.
            # Checkpoints still come from self.model, so their tensor names stay plain.
            self.trained = torch.compile(self.trained)
            from torch._dynamo.exc import TorchDynamoException

            self._compile_errors = (TorchDynamoException,)
        self.reporter.run_started(description, total_steps, self.progress.step)
        best_path = self.run_dir / BEST_NAME
        try:
            while self.progress.epoch < train_config.epochs:
                self._train_epoch(stop_requested)
            if self.world.is_main and not best_path.exists():
                # The warm-up outlasted the run: the final model is the only candidate left.
                self.reporter.warning(
                    "the beta warm-up did not finish within the run; checkpoint_best is the final epoch"
                )
                final = self.history[-1]["validation"] if self.history else {}
                self.progress.best_val = final.get("neg_elbo")
                self.progress.best_epoch = self.progress.epoch
                self.save_best(final)
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
        finally:
            self.reporter.run_ended()
        if self.progress.best_val is not None:
            likelihood = self.spec.likelihood
            figure = (  # a perceptual loss is not a likelihood: its sum is no ELBO, not in nats
                f"loss ({likelihood} reconstruction + KL) {self.progress.best_val:.3f}"
                if likelihood in PERCEPTUAL_LOSSES
                else f"-ELBO {self.progress.best_val:.3f} nats"
            )
            self.reporter.message(
                f"done: best validation {figure} (epoch {self.progress.best_epoch}); "
                f"checkpoints in {self.run_dir}"
            )
        return TrainingResult(
            self.run_dir, best_path, self.run_dir / LAST_NAME, self.progress, self.history
        )

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.use_bf16:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _train_epoch(self, stop_requested: Callable[[], bool]) -> None:
        train_config = self.config.train
        progress = self.progress
        epoch = progress.epoch
        world = self.world
        sums = progress.epoch_sums or {key: 0.0 for key in (*SUMMED_TERMS, "images", "seconds")}
        self.model.train()
        batches = training_batches(
            self.splits.train,
            train_config.batch_size,
            train_config.seed,
            epoch,
            self.dynamic,
            start_batch=progress.batch_in_epoch,
            shard=world.shard if world.distributed else None,
        )
        # Metrics stay on the device and are read once per interval: a per-step .item() would make
        # a GPU wait for every step before the next one can be queued.
        interval = _Interval(self.device, progress.step)
        for x in batches:
            beta = self.beta_schedule(progress.step)
            batch_images = global_batch_size(
                len(self.splits.train), train_config.batch_size, progress.batch_in_epoch
            )
            loss, terms = self._loss(x, batch_images, beta)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if train_config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), train_config.grad_clip)
            self.optimizer.step()
            progress.step += 1
            progress.batch_in_epoch += 1
            interval.add(terms, x.shape[0], progress.step)
            last_batch = progress.batch_in_epoch == self.steps_per_epoch
            if self.step_callback is not None:
                self.step_callback(progress.step)
            # Several processes can only agree to stop where they synchronise anyway.
            stop = stop_requested()
            if last_batch or interval.steps >= REPORT_EVERY or (stop and not world.distributed):
                stop = self._close_interval(interval, sums, beta, stop)
                interval = _Interval(self.device, progress.step)
            else:
                stop = stop and not world.distributed
            if stop and not last_batch:
                path = self.save_last(self.history[-1]["validation"] if self.history else None)
                world.barrier()  # torchrun stops every process once one exits: let rank 0 save
                raise TrainingInterrupted(
                    f"interrupted at epoch {epoch + 1}, step {progress.step}: saved {path}; "
                    f"continue with: train --resume {self.run_dir}"
                )
        self._end_epoch(sums)
        if world.any(stop_requested(), self.device) and progress.epoch < train_config.epochs:
            raise TrainingInterrupted(
                f"interrupted after epoch {progress.epoch}, step {progress.step}: saved "
                f"{self.run_dir / LAST_NAME}; continue with: train --resume {self.run_dir}"
            )

    def _loss(self, x: torch.Tensor, batch_images: int, beta: float) -> tuple[torch.Tensor, Any]:
        """The loss to differentiate for this process's part ``x`` of a batch of
        ``batch_images`` images, and its terms.

        The posterior noise is drawn for the whole batch from the run's generator and sliced, so
        several processes use the same noise as one would. Each process's loss is its images'
        summed loss over the whole batch's size, times the number of processes: the average
        DistributedDataParallel takes over processes is then the single-process batch mean,
        however unevenly the batch was split.
        """
        objective = self.config.objective
        noise = None
        if not self.model.is_autoencoder:
            noise = torch.randn(
                batch_images, self.spec.latent_dim, generator=self.noise, device=self.device
            )
            if self.world.distributed:
                noise = noise[self.world.shard(batch_images)]
        try:
            with self._autocast():
                decoded, mu, logvar = self.trained(x, noise=noise)
        except self._compile_errors as error:
            cause = getattr(error, "inner_exception", None) or error  # the backend's own error
            raise VAEError(
                f"--compile failed ({first_line(cause)}); train without --compile"
            ) from None
        if x.shape[0] == 0:
            # An empty share of a short last batch: zero gradients keep this rank in step.
            zero = decoded.sum() * 0 + sum((p * 0).sum() for p in self.model.parameters())
            return zero, None
        terms = elbo_terms(
            decoded,
            x,
            mu,
            logvar,
            objective.likelihood,
            beta,
            objective.free_bits,
            self.model.likelihood_sigma(objective.gaussian_sigma),
            None if self.model.prior is None else self.model.prior.log_density,
            noise,
        )
        if not self.world.distributed:
            return terms.loss, terms
        return terms.loss * (x.shape[0] * self.world.world_size / batch_images), terms

    def _close_interval(
        self, interval: _Interval, sums: dict[str, float], beta: float, stop: bool
    ) -> bool:
        """Read an interval's metrics off the device (the NaN guard included), add them to the
        epoch's sums and report them; returns whether any process asked to stop."""
        totals, bad_step, stop = interval.read(self.world, stop)
        if bad_step is not None:
            raise TrainingDiverged(
                f"loss became {totals['loss']} at epoch {self.progress.epoch + 1}, step {bad_step}; "
                f"stopped without saving: the last good checkpoints in {self.run_dir} are intact "
                "(try a lower --lr or --grad-clip)"
            )
        for key in SUMMED_TERMS:
            sums[key] += totals[key]
        sums["images"] += interval.images
        sums["seconds"] += totals["seconds"]
        self.progress.epoch_sums = sums
        images = max(interval.images, 1)
        self.reporter.step(
            self.progress.step,
            {
                **{key: totals[key] / images for key in ("loss", "recon", "kl")},
                "beta": beta,
                "images_per_second": interval.images / totals["seconds"]
                if totals["seconds"] > 0
                else 0.0,
            },
        )
        return stop

    def _end_epoch(self, sums: dict[str, float]) -> None:
        progress = self.progress
        train_config = self.config.train
        validation = self._validate()
        if not all(math.isfinite(v) for v in validation.values()):
            raise TrainingDiverged(
                f"validation -ELBO became {validation['neg_elbo']} after epoch {progress.epoch + 1}; "
                f"stopped without saving: the last good checkpoints in {self.run_dir} are intact"
            )
        if self.scheduler is not None:
            if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                self.scheduler.step(validation["neg_elbo"])
            else:
                self.scheduler.step()
        progress.epoch += 1
        progress.batch_in_epoch = 0
        progress.epoch_sums = {}
        # An autoencoder has no KL term to anneal: every epoch is eligible.
        eligible = self.model.is_autoencoder or self.beta_schedule.warmup_done(progress.step)
        if self.model.is_autoencoder and self.world.is_main:
            self._fit_code_distribution()
        is_best = eligible and (
            progress.best_val is None or validation["neg_elbo"] < progress.best_val
        )
        if is_best:
            progress.best_val = validation["neg_elbo"]
            progress.best_epoch = progress.epoch
            self.save_best(validation)
        images = max(sums["images"], 1.0)
        record: dict[str, Any] = {
            "epoch": progress.epoch,
            "step": progress.step,
            "beta": self.beta_schedule(progress.step - 1),
            "lr": self.optimizer.param_groups[0]["lr"],
            "train_loss": sums["loss"] / images,
            "train_neg_elbo": sums["neg_elbo"] / images,
            "train_recon": sums["recon"] / images,
            "train_kl": sums["kl"] / images,
            **{f"val_{key}": value for key, value in validation.items()},
            "validation": validation,
            "warmup_done": eligible,
            "best": is_best,
            "epoch_seconds": sums["seconds"],
            "images_per_second": images / sums["seconds"] if sums["seconds"] > 0 else 0.0,
        }
        self.history.append(record)
        if not self.world.is_main:
            return
        # metrics.jsonl before checkpoint_last: a kill between the two leaves a record that the
        # resume (from the previous epoch) drops and writes again, never an epoch with no record.
        atomic_write_text(
            self.run_dir / METRICS_NAME,
            "".join(json.dumps(r, sort_keys=True) + "\n" for r in self.history),
        )
        self.save_last(validation)
        save_training_curves(self.history, self.run_dir / CURVES_NAME, title=self.run_dir.name)
        if train_config.sample_every and progress.epoch % train_config.sample_every == 0:
            self._write_grids()
        self.reporter.epoch_ended(record)

    def _validate(self) -> dict[str, float]:
        """The validation ELBO (beta = 1); several processes each score a part and sum."""
        sigma = self.config.objective.gaussian_sigma
        if not self.world.distributed:
            return evaluate_elbo(self.model, self.splits.val, sigma, batch_size=1000)
        part = self.splits.val.subset(self.world.shard(len(self.splits.val)))
        means = evaluate_elbo(self.model, part, sigma, batch_size=1000)
        sums = torch.tensor(
            [value * len(part) for value in means.values()] + [float(len(part))],
            dtype=torch.float64,
            device=self.device,
        )
        *totals, count = self.world.all_reduce_sum(sums).tolist()
        return {key: total / count for key, total in zip(means, totals, strict=True)}

    @torch.no_grad()
    def _fit_code_distribution(self) -> None:
        """An autoencoder samples from a Gaussian fitted to its training codes; refit it before
        each save so that every checkpoint can generate."""
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
        self.model.eval()
        generator = torch.Generator().manual_seed(SAMPLE_SEED)
        folder = self.run_dir / "images"
        epoch = self.progress.epoch
        save_grid(
            self.model.sample(GRID_IMAGES, generator), folder / f"samples_epoch_{epoch:03d}.png"
        )
        # Grey originals, as a person knows them, encoded as they are (not the binarized draw).
        originals = to_float(self.splits.preview)
        save_reconstruction_grid(
            originals,
            self.model.reconstruct(originals),
            folder / f"reconstructions_epoch_{epoch:03d}.png",
        )
        self.model.train()
        self.reporter.images_written(
            epoch,
            {
                "samples": folder / f"samples_epoch_{epoch:03d}.png",
                "reconstructions": folder / f"reconstructions_epoch_{epoch:03d}.png",
            },
        )


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The per-epoch records of a run's ``metrics.jsonl`` ([] when the file does not exist)."""
    if not path.exists():
        return []
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise DataError(f"{path}: line {number} is not valid JSON") from None
        if not isinstance(record, dict) or not _is_count(record.get("epoch")):
            raise DataError(f"{path}: line {number} is not an epoch record")
        # What resume, the curves and the summary compute with must be numbers, not text.
        for key, value in record.items():
            numeric = key in _METRIC_NUMBERS or key.startswith(("train_", "val_"))
            inner = value.values() if key == "validation" and isinstance(value, dict) else None
            if (numeric and not _is_number(value, none=True)) or (
                key == "validation"
                and (inner is None or not all(_is_number(v, none=True) for v in inner))
            ):
                raise DataError(
                    f"{path}: line {number} has a {key} that is not a number; the file was "
                    "edited or damaged"
                )
        records.append(record)
    return records


# Fields of a metrics.jsonl record that hold numbers (besides train_* and val_*).
_METRIC_NUMBERS = frozenset({"epoch", "step", "beta", "lr", "epoch_seconds", "images_per_second"})


def _is_number(value: Any, none: bool = False) -> bool:
    return (none and value is None) or (
        isinstance(value, int | float) and not isinstance(value, bool)
    )


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_progress(raw: Any) -> None:
    """Raise ValueError unless ``raw`` is a saved Progress with numbers where numbers belong."""
    if not isinstance(raw, dict):
        raise ValueError("progress is not a table")
    counts = ("epoch", "step", "batch_in_epoch")
    if not all(_is_count(raw.get(key)) for key in counts):
        raise ValueError("progress epoch, step or batch_in_epoch is not a whole number")
    sums = raw.get("epoch_sums", {})
    if not isinstance(sums, dict) or not all(_is_number(v) for v in sums.values()):
        raise ValueError("progress epoch_sums holds something other than numbers")
    best_epoch = raw.get("best_epoch")
    if not _is_number(raw.get("best_val"), none=True) or not (
        best_epoch is None or _is_count(best_epoch)
    ):
        raise ValueError("progress best_val or best_epoch is not a number")


def _check_same_kind(fresh: Any, loaded: Any, where: str) -> None:
    """Raise ValueError unless ``loaded`` has the JSON kinds of ``fresh`` (the same state of a
    new run): numbers where it has numbers (finite where it is finite), flags where it has
    flags, lists as long. Keys only one side has pass: another torch version may add some."""
    if isinstance(fresh, bool) or isinstance(loaded, bool):
        ok = isinstance(fresh, bool) == isinstance(loaded, bool) or fresh is None
    elif isinstance(fresh, int | float):
        ok = _is_number(loaded) and (math.isfinite(loaded) or not math.isfinite(fresh))
    elif isinstance(fresh, str):
        ok = isinstance(loaded, str)
    elif fresh is None:
        ok = not isinstance(loaded, dict | list)
    elif isinstance(fresh, list | tuple):
        ok = isinstance(loaded, list | tuple) and len(loaded) == len(fresh)
        if ok:
            for position, (inner, value) in enumerate(zip(fresh, loaded, strict=True)):
                _check_same_kind(inner, value, f"{where}[{position}]")
    elif isinstance(fresh, dict):
        ok = isinstance(loaded, dict)
        if ok:
            for key in fresh.keys() & loaded.keys():
                _check_same_kind(fresh[key], loaded[key], f"{where} {key}")
    else:
        ok = True  # a kind JSON cannot hold: nothing to compare with
    if not ok:
        raise ValueError(f"{where} is {str(loaded)[:40]!r}, where a new run has {fresh!r}")
