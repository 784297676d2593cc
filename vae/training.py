"""Training a VAE: :func:`train` starts a run (or resumes one) in its run folder and hands it to
the :class:`~vae.trainer.Trainer`, with atomic checkpoints, exact resume, a NaN guard and a
clean stop on Ctrl-C.

The parts live in their own modules: the step loop in :mod:`vae.trainer`, what
``checkpoint_last`` holds in :mod:`vae.training_state`, the run folder's files in
:mod:`vae.run_folder`.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from vae import distributed
from vae.checkpoint import LAST_NAME, read_header
from vae.classes import check_class_labels
from vae.config import RESUMABLE_SETTINGS, RunConfig, resolve_data_dir
from vae.data import (
    FOLDER_PREFIX,
    MEMORY_PREFIX,
    DataSplits,
    ImageSet,
    data_difference,
    fingerprint_without_labels,
    load_splits,
)
from vae.device import resolve_device
from vae.distributed import World, run_together, world_from_environment
from vae.errors import (
    CheckpointError,
    ConfigError,
    Setting,
    TrainingDiverged,
    TrainingInterrupted,
    listed,
    shown,
)
from vae.interrupts import graceful_interrupt
from vae.json_values import is_count
from vae.models import known_family
from vae.reporting import Reporter, ReporterGroup
from vae.run_folder import RunFolder
from vae.trackers import check_tracker, make_tracker
from vae.trainer import StepCallback, Trainer, TrainingResult

__all__ = ["RESUMABLE_OVERRIDES", "prepare_resume", "train"]

# The settings a resume may change (marked ``resumable`` where each is defined, vae.config);
# anything else would make the resumed run a different run.
RESUMABLE_OVERRIDES = frozenset(RESUMABLE_SETTINGS)


def prepare_resume(
    run_dir: Path, overrides: dict[str, Any], source: str = "command line"
) -> RunConfig:
    """The configuration of an existing run, with the few options a resume may change
    (``source``: where they came from, for errors)."""
    last = RunFolder(Path(run_dir)).last_checkpoint
    if not last.exists():
        raise ConfigError(f"cannot resume {run_dir}: no {LAST_NAME} there")
    rejected = sorted(set(overrides) - RESUMABLE_OVERRIDES)
    if rejected:
        raise ConfigError(
            *listed(rejected),
            " cannot change on ",
            Setting("resume"),
            " (only ",
            *listed(sorted(RESUMABLE_OVERRIDES)),
            " can)",
        )
    # The checkpoint's own copy of the configuration is authoritative: config.yaml may be edited.
    metadata = read_header(last).metadata
    if not isinstance(metadata.get("config"), dict):
        raise CheckpointError(f"{last} has no run configuration: cannot resume")
    config = RunConfig.from_dict(metadata["config"], source=str(last))
    saved_model = metadata["config"].get("model")
    if isinstance(saved_model, dict) and "prior" not in saved_model:
        config.model.prior = "standard"  # runs from before --prior existed had N(0, I)
    # A checkpoint decides no write location: the data folder (where downloads and caches go)
    # is the command line's, else $VAE_DATA_DIR, else ./data; the data found there is then
    # checked against the fingerprint the checkpoint recorded.
    config.data.data_dir = None
    config.data.cache_dir = None
    if config.data.val_size is None:
        # Runs from before the size was recorded: the size they validated on (their default
        # then was min(5000, 10 %) whatever the limit, and the data check compares it).
        data = metadata.get("data")
        recorded = data.get("num_val") if isinstance(data, dict) else None
        if is_count(recorded) and recorded > 0:
            config.data.val_size = recorded
    return config.override(overrides, source).validate()


def train(
    config: RunConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    reporter: Reporter | None = None,
    step_callback: StepCallback | None = None,
    stop_requested: Callable[[], bool] | None = None,
    world: World | None = None,
    images: ImageSet | None = None,
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

    ``images``: the images of a ``memory:`` dataset (given in Python: see
    :mod:`vae.data.in_memory`), split as a ``folder:`` dataset is; a resume checks them against
    the fingerprint its checkpoint recorded.
    """
    world = world if world is not None else world_from_environment()
    run = functools.partial(_train, config, run_dir, resume, reporter, step_callback)
    if stop_requested is not None:
        return run(stop_requested, world, images)
    with graceful_interrupt(world.distributed) as own_stop_requested:
        return run(own_stop_requested, world, images)


def _train(
    config: RunConfig,
    run_dir: str | Path,
    resume: bool,
    reporter: Reporter | None,
    step_callback: StepCallback | None,
    stop_requested: Callable[[], bool],
    world: World,
    images: ImageSet | None,
) -> TrainingResult:
    """:func:`train` once a stop handler is in place."""
    config.validate()
    check_tracker(config.train.tracker)  # before the slow start: a missing package is a usage error
    reporter = (reporter or Reporter()) if world.is_main else Reporter()
    folder = RunFolder(Path(run_dir))
    device = distributed.start(world, resolve_device(config.train.device))
    held = contextlib.ExitStack()
    try:

        def set_up() -> Trainer:
            if world.is_main:  # one writer per run folder, taken before anything is written
                held.enter_context(folder.lock())
            return _set_up(config, folder, resume, device, reporter, step_callback, world, images)

        trainer = run_together(world, device, set_up)
        if world.any(stop_requested(), device):
            again = f"train --resume {folder.path}" if resume else "the same train command"
            raise TrainingInterrupted(
                f"interrupted before training started: nothing was written; start again with {again}"
            )
        if world.is_main:
            _start_writing(trainer, config)
        return _fit_together(trainer, stop_requested, world)
    finally:
        held.close()
        distributed.stop(world)


def _set_up(
    config: RunConfig,
    folder: RunFolder,
    resume: bool,
    device: torch.device,
    reporter: Reporter,
    step_callback: StepCallback | None,
    world: World,
    images: ImageSet | None,
) -> Trainer:
    """Check the folder and the data, then build the trainer (restored when resuming)."""
    folder.check_can_start(resume)
    if resume and images is None and config.data.dataset.startswith(MEMORY_PREFIX):
        raise ConfigError(
            f"cannot resume {folder.path}: it was trained on images given in Python "
            f"({config.data.dataset}); resume it from Python with the same images: "
            f"vae.train(data=..., run_dir=..., resume=True)"
        )
    splits = load_splits(config.data, config.objective.likelihood, reporter, images)
    check_class_labels(config, splits)
    if resume:
        _check_same_data(folder.last_checkpoint, splits, config)
    # config.yaml and the checkpoints record the validation size used, not the rule that chose
    # it: a later rule cannot change the run's data.
    config.data.val_size = splits.info["num_val"]
    splits = splits.to(device)
    if len(splits.val) < world.world_size:
        raise ConfigError(
            f"{world.world_size} processes need at least as many validation images, "
            f"got {len(splits.val)}: raise ",
            Setting("val_size"),
        )
    trainer = Trainer(config, folder, device, splits, reporter, step_callback, world)
    if config.model.architecture == "conv":
        # Likewise the conv widths used, not "auto": a later rule cannot change the run's model.
        config.model.conv_widths = list(trainer.spec.conv_widths)
    if resume:
        trainer.restore()
    return trainer


def _start_writing(trainer: Trainer, config: RunConfig) -> None:
    """Rank 0's first writes: the folder and its config.yaml, then the tracker's run."""
    folder = trainer.folder
    folder.prepare(config)
    tracker = make_tracker(config.train.tracker, folder.path, folder.path.name)
    if tracker is not None:
        trainer.reporter = ReporterGroup(trainer.reporter, tracker)
    trainer.reporter.run_configured(config.to_dict())


def _fit_together(
    trainer: Trainer, stop_requested: Callable[[], bool], world: World
) -> TrainingResult:
    """Run the trainer; every rank leaves at once, whether it finished or stopped.

    A rank that tears down its connections while another still finishes its last collective
    makes the other abort."""
    try:
        result = trainer.fit(stop_requested)
    except (TrainingDiverged, TrainingInterrupted):
        world.barrier()  # raised by every rank at once: leave together
        raise
    world.barrier()
    return result


def _check_same_data(path: Path, splits: DataSplits, config: RunConfig) -> None:
    """Refuse to resume on data other than the run's (a different folder, edited files)."""
    metadata = read_header(path).metadata
    recorded = metadata.get("data")
    recorded = recorded if isinstance(recorded, dict) else {}
    difference = data_difference(recorded, splits.info)
    if difference is not None and _folder_without_labels(recorded, splits, metadata):
        difference = None
    model = metadata.get("model")
    classes = model.get("classes") if isinstance(model, dict) else None
    if (
        difference is None
        and isinstance(classes, list)
        and classes
        and classes != list(splits.classes or [])
    ):
        # The fingerprint holds the labels' numbers, not their names: a renamed class folder.
        difference = (
            f"class names {shown(list(splits.classes or []))} where the run had {shown(classes)}"
        )
    if difference is not None:
        dataset = config.data.dataset
        if dataset.startswith(MEMORY_PREFIX):
            raise ConfigError(
                f"cannot resume {path.parent}: the images given are not the ones it was "
                f"trained on ({difference}); give the run's own images ({dataset}) as data"
            )
        if dataset.startswith("folder:"):
            # The folder's path is the run's own setting: only its images can be put back.
            folder = dataset.removeprefix("folder:")
            raise ConfigError(
                f"cannot resume {path.parent}: the images in {folder} are not the ones it was "
                f"trained on ({difference}); put the run's images back in {folder}"
            )
        raise ConfigError(
            f"cannot resume {path.parent}: the data found under "
            f"{resolve_data_dir(config.data.data_dir)} is not the data it was trained on "
            f"({difference}); pass ",
            Setting("data_dir"),
            " with the run's data",
        )


def _folder_without_labels(
    recorded: dict[str, Any], splits: DataSplits, metadata: dict[str, Any]
) -> bool:
    """Whether a run on a ``folder:`` dataset recorded the fingerprint of its images without
    the labels folders give today (it began before sub-folders were classes): the same data,
    for any model that does not train on the labels."""
    model = metadata.get("model")
    family = known_family(model.get("model_type")) if isinstance(model, dict) else None
    fingerprint = recorded.get("fingerprint")
    return (
        (family is None or not family.conditional)
        and str(recorded.get("dataset", "")).startswith(FOLDER_PREFIX)
        and splits.train.labels is not None
        and data_difference(recorded, splits.info | {"fingerprint": fingerprint}) is None
        and fingerprint == fingerprint_without_labels(splits)
    )
