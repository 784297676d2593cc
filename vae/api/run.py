"""Training from Python: :func:`train` takes the ``train`` command's settings by their names
(``latent_dim=16``, the one definition in vae.config) and images in memory or any dataset vae
reads, writes the same run folder, and returns a :class:`Run`."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vae.api.model import Model, load
from vae.config import OPTIONS, RunConfig
from vae.data import MEMORY_PREFIX, images_in_memory, memory_dataset
from vae.errors import ConfigError, Setting, listed

# Where errors say a setting came from.
SOURCE = "vae.train"
# The settings that say where vae reads a dataset's files: meaningless for images given.
FILE_SETTINGS = (
    "dataset",
    "data_dir",
    "download",
    "storage",
    "cache_dir",
    "decode_workers",
    "hf_split",
    "hf_image_column",
    "hf_label_column",
)


@dataclass(frozen=True)
class Run:
    """What :func:`train` returns: the run folder, its checkpoints and each epoch's record (the
    lines of its ``metrics.jsonl``)."""

    run_dir: Path
    best_checkpoint: Path
    last_checkpoint: Path
    epochs_done: int
    best_epoch: int | None
    history: list[dict[str, Any]] = field(repr=False)

    def load(self, which: str = "best", device: str = "cpu") -> Model:
        """The run's ``best`` (lowest validation loss after the warm-up) or ``last`` model."""
        if which not in ("best", "last"):
            raise ConfigError(f"invalid value for which: {which!r} (expected best or last)")
        return load(self.best_checkpoint if which == "best" else self.last_checkpoint, device)


def train(
    data: Any = None,
    *,
    run_dir: str | Path,
    data_name: str | None = None,
    resume: bool = False,
    quiet: bool = False,
    **settings: Any,
) -> Run:
    """Train a model as ``vae train`` does, writing the same run folder at ``run_dir``.

    ``data``: images in memory, either a uint8 tensor or NumPy array [N, C, H, W], a float
    one in [0, 1] (stored as uint8, so quantized to 8 bits: round(255 x)), or a torch
    ``Dataset`` whose items are an image or (image, label): a tensor [C, H, W], an array or a
    PIL image. A fixed tenth is held out as the test split, as for a ``folder:`` dataset, and
    validation images are carved from the rest. The run records the data as ``memory:NAME``
    (``data_name``, default ``tensor``, ``array`` or the Dataset's class name) with its
    fingerprint: vae has no files to read it from again, so ``evaluate`` and the picture
    commands take its images with ``--input``. Without ``data``, the ``dataset`` setting says
    what to read (``mnist`` by default), as on the command line.

    ``settings``: any setting of ``vae train`` by its name (``epochs=5``, ``latent_dim=16``,
    ``hidden_sizes=[256]``, ``prior="standard"``; docs/commands/train.md lists them).

    ``resume=True`` continues the run at ``run_dir`` exactly where it stopped; only the
    settings ``train --resume`` allows may be given, and a run on images given in Python
    needs the same images again (checked against its fingerprint).

    ``quiet``: no progress bar or epoch tables (messages still show).

    Errors are the command's one-line messages, raised as :class:`vae.VAEError` (a
    ConfigError for a bad setting, a DataError for data that does not fit); Ctrl-C saves the
    last checkpoint and raises TrainingInterrupted.
    """
    from vae.reporting import RichReporter
    from vae.training import prepare_resume
    from vae.training import train as train_run

    _check_names(settings)
    folder = Path(run_dir)
    if data is not None:
        given = sorted(set(settings) & {*FILE_SETTINGS, "runs_dir"})
        if given:
            raise ConfigError(
                "data given in Python is read from no files: leave out ",
                *listed(given),
            )
    elif data_name is not None:
        raise ConfigError("data_name names data given in Python: give data too")
    if resume:
        config = prepare_resume(folder, settings, SOURCE)
        _check_resumed_data(folder, config, data, data_name)
    else:
        if "runs_dir" in settings:
            raise ConfigError("give run_dir, the run's own folder, not ", Setting("runs_dir"))
        values = dict(settings)
        if data is not None:
            values["dataset"] = memory_dataset(data, data_name)
        config = RunConfig().override(values, SOURCE).validate(given=values)
    images = images_in_memory(data) if data is not None else None
    result = train_run(
        config, folder, resume=resume, reporter=RichReporter(quiet=quiet), images=images
    )
    return Run(
        run_dir=result.run_dir,
        best_checkpoint=result.best_path,
        last_checkpoint=result.last_path,
        epochs_done=result.progress.epoch,
        best_epoch=result.progress.best_epoch,
        history=result.history,
    )


def _check_names(settings: dict[str, Any]) -> None:
    """Refuse a keyword that names no setting, suggesting the closest one."""
    for name in settings:
        if name not in OPTIONS:
            close = difflib.get_close_matches(name, OPTIONS, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(
                f"{SOURCE}: unknown setting {name!r}{hint}; the settings are train's options "
                "by their Python names (docs/commands/train.md)"
            )


def _check_resumed_data(folder: Path, config: RunConfig, data: Any, name: str | None) -> None:
    """A resumed run gets data in Python exactly when it was trained on data given in Python,
    under the same name (the images themselves are checked against its fingerprint)."""
    recorded = config.data.dataset
    in_memory = recorded.startswith(MEMORY_PREFIX)
    if data is not None and not in_memory:
        raise ConfigError(
            f"cannot resume {folder}: it was trained on {recorded}, which vae reads itself; "
            "resume it without data"
        )
    if in_memory and name is not None and MEMORY_PREFIX + name != recorded:
        raise ConfigError(
            f"cannot resume {folder}: its data is named {recorded[len(MEMORY_PREFIX) :]!r}, "
            f"not {name!r}; data_name cannot change on resume"
        )
