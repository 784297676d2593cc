"""The training state: everything ``checkpoint_last`` holds so that a resumed run continues
exactly where it stopped (model, optimizer, learning-rate scheduler, progress, random states).

:class:`TrainingState` builds it fresh from a configuration, turns it into checkpoint tensors
and JSON, and reads it back, refusing a damaged or hand-edited state with a clear message.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from vae.checkpoint import (
    OPTIMIZER_PREFIX,
    RNG_PREFIX,
    check_model_tensors,
    check_tensor_table,
    read_header,
    read_tensors,
    save_checkpoint,
)
from vae.errors import CheckpointError, ConfigError, Setting
from vae.json_values import check_same_kind, is_count, is_number
from vae.model import VAE, build_model

if TYPE_CHECKING:
    from vae.config import RunConfig
    from vae.spec import ModelSpec

# What a damaged or hand-edited state raises while it is checked or loaded into torch.
_CORRUPT_STATE_ERRORS = (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError)


@dataclass
class Progress:
    """Where training stands; saved in the last checkpoint so that a resume continues exactly."""

    epoch: int = 0  # epochs fully completed
    step: int = 0  # optimisation steps taken
    batch_in_epoch: int = 0  # batches of epoch ``epoch`` already done (non-zero after Ctrl-C)
    epoch_sums: dict[str, float] = field(default_factory=dict)
    best_val: float | None = None
    best_epoch: int | None = None
    skipped_steps: int = 0  # steps ``grad_skip`` left without an update, over the whole run


class TrainingState:
    """The model with its optimizer, scheduler, posterior-noise generator and progress."""

    def __init__(self, config: RunConfig, spec: ModelSpec, device: torch.device) -> None:
        """A new run's state: the model initialised from ``config.train.seed``."""
        train_config = config.train
        self.device = device
        torch.manual_seed(train_config.seed)
        self.model: VAE = build_model(spec).to(device)
        if spec.learned_sigma:
            with torch.no_grad():
                self.model.log_sigma.fill_(math.log(config.objective.gaussian_sigma))
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
        self.scheduler = _scheduler(train_config.lr_schedule, self.optimizer, train_config.epochs)
        self.noise = torch.Generator(device=device).manual_seed(train_config.seed)
        self.progress = Progress()

    def step_scheduler(self, validation_loss: float) -> None:
        """Move the learning-rate schedule on by one epoch (a plateau schedule reads the loss)."""
        if self.scheduler is None:
            return
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(validation_loss)
        else:
            self.scheduler.step()

    # --- into checkpoint_last ---------------------------------------------------------------

    def save(self, path: Path, metadata: dict[str, Any], beta: float) -> None:
        """Write the model and the rest of the state to ``path`` (a ``checkpoint_last``)."""
        save_checkpoint(
            path,
            self.model,
            metadata,
            extra_tensors=self._tensors(),
            training_state=self._json(beta),
        )

    def _tensors(self) -> dict[str, torch.Tensor]:
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

    def _json(self, beta: float) -> dict[str, Any]:
        optimizer_state = self.optimizer.state_dict()
        scalars = {
            str(index): {k: v for k, v in state.items() if not isinstance(v, torch.Tensor)}
            for index, state in optimizer_state["state"].items()
        }
        return {
            "progress": self.progress.__dict__,
            "beta": beta,
            "optimizer": {"param_groups": optimizer_state["param_groups"], "scalars": scalars},
            "scheduler": _scheduler_json(self.scheduler),
        }

    # --- out of checkpoint_last -------------------------------------------------------------

    def restore(self, path: Path, epochs: int) -> None:
        """Load model, optimizer, scheduler, progress and random states from ``path``, then
        continue with ``epochs`` epochs (see :meth:`_continue_with_epochs`)."""
        header = read_header(path)
        state = header.training_state
        if state is None:
            raise CheckpointError(f"{path} holds no training state (weights only): cannot resume")
        check_model_tensors(path, header)
        check_tensor_table(path, header, self.model.state_dict())
        try:
            self._restore(path, state)
        except _CORRUPT_STATE_ERRORS as error:
            # The file passed every format check, so this is a damaged or hand-edited state.
            detail = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise CheckpointError(
                f"{path} has a corrupt training state ({type(error).__name__}: {detail}); "
                "it cannot be resumed (checkpoint_best and the run's other files are untouched)"
            ) from None
        saved_train = header.metadata.get("config", {}).get("train", {})
        self._continue_with_epochs(
            epochs, saved_train.get("epochs") if isinstance(saved_train, dict) else None, path
        )

    def _restore(self, path: Path, state: dict[str, Any]) -> None:
        self._check_kinds(state)
        self.model.load_state_dict(read_tensors(path, "model.", "cpu"))
        per_param: dict[int, dict[str, Any]] = {}
        for name, value in read_tensors(path, OPTIMIZER_PREFIX, "cpu").items():
            index, key = name.split(".", 1)
            per_param.setdefault(int(index), {})[key] = value
        for index, scalars in state["optimizer"]["scalars"].items():
            per_param.setdefault(int(index), {}).update(scalars)
        amsgrad = bool(state["optimizer"]["param_groups"][0].get("amsgrad"))
        _check_optimizer_state(per_param, list(self.model.parameters()), amsgrad)
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

    def _check_kinds(self, state: dict[str, Any]) -> None:
        """Raise ValueError unless each part of a saved state has the kinds a fresh run's has.

        A hand-edited state (a string where a number belongs) would load without complaint and
        fail steps later with a traceback."""
        _check_progress(state["progress"])
        fresh = self.optimizer.state_dict()["param_groups"]
        check_same_kind(fresh, state["optimizer"]["param_groups"], "optimizer param_groups")
        for index, scalars in state["optimizer"]["scalars"].items():
            check_same_kind({}, scalars, f"optimizer state {index}")
            for key, value in scalars.items():
                check_same_kind(0.0, value, f"optimizer state {index} {key}")
        if self.scheduler is not None and state.get("scheduler") is not None:
            check_same_kind(self.scheduler.state_dict(), state["scheduler"], "scheduler")

    def _continue_with_epochs(self, epochs: int, saved_epochs: Any, path: Path) -> None:
        """A resume with a new number of epochs N continues as if the run had been started with
        N: the cosine schedule is stretched (or shrunk) so that the learning rate after epoch e is
        lr0 (1 + cos(pi e / N)) / 2 from here on. Unchanged epochs change nothing (bit-exact)."""
        done = self.progress.epoch
        if saved_epochs == epochs:
            return
        if epochs <= done:
            raise ConfigError(
                Setting("epochs"),
                f" {epochs} is not after epoch {done}, where {path.parent} stands: give ",
                Setting("epochs"),
                f" {done + 1} or more",
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


def _scheduler_json(scheduler: Any) -> dict[str, Any] | None:
    """The scheduler's state as JSON that vae's own header reader accepts: without its
    non-finite numbers (ReduceLROnPlateau's ``mode_worse``, and ``best`` before a first step,
    are infinity, which JSON cannot hold). Loading leaves those at a fresh scheduler's values,
    which are the same infinities (torch rebuilds ``mode_worse`` on load anyway)."""
    if scheduler is None:
        return None
    return {
        key: value
        for key, value in scheduler.state_dict().items()
        if not (isinstance(value, float) and not math.isfinite(value))
    }


def _scheduler(kind: str, optimizer: torch.optim.Optimizer, epochs: int) -> Any:
    """The learning-rate scheduler ``--lr-schedule`` names (None for a constant rate)."""
    if kind == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    if kind == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=3)
    return None


# Adam's moment estimates: the second ones are averages of squares, never negative.
_SECOND_MOMENTS = ("exp_avg_sq", "max_exp_avg_sq")


def _check_optimizer_state(
    per_param: dict[int, dict[str, Any]], parameters: list[torch.Tensor], amsgrad: bool
) -> None:
    """Raise ValueError unless the saved Adam (or AdamW) state is whole and sane: every entry
    for every parameter (or none at all, before the first step), moments shaped like their
    parameters, and second moments not negative (non-finite tensors are refused on reading). torch checks none of this on load; a
    missing tensor fails inside the first step (KeyError) and a damaged one shows up as a loss
    of NaN, blamed on the learning rate."""
    if not per_param:
        return
    if set(per_param) != set(range(len(parameters))):
        raise ValueError(f"optimizer state covers {len(per_param)} of {len(parameters)} parameters")
    expected = {"step", "exp_avg", "exp_avg_sq", *(("max_exp_avg_sq",) if amsgrad else ())}
    for index, entries in per_param.items():
        if set(entries) != expected:
            wrong = sorted(expected ^ set(entries))
            raise ValueError(f"optimizer state {index} lacks or adds {', '.join(wrong)}")
        for key, value in entries.items():
            if not isinstance(value, torch.Tensor) or value.ndim == 0:
                continue  # the step count, checked by kind in _check_kinds
            if value.shape != parameters[index].shape:
                raise ValueError(
                    f"optimizer state {index}.{key} is {list(value.shape)}, its parameter "
                    f"{list(parameters[index].shape)}"
                )
            if key in _SECOND_MOMENTS and (value < 0).any():
                raise ValueError(f"optimizer state {index}.{key} holds negative values")


def _check_progress(raw: Any) -> None:
    """Raise ValueError unless ``raw`` is a saved Progress with numbers where numbers belong."""
    if not isinstance(raw, dict):
        raise ValueError("progress is not a table")
    counts = ("epoch", "step", "batch_in_epoch")
    if not all(is_count(raw.get(key)) for key in counts):
        raise ValueError("progress epoch, step or batch_in_epoch is not a whole number")
    if not is_count(raw.get("skipped_steps", 0)):  # a checkpoint of before grad_skip has none
        raise ValueError("progress skipped_steps is not a whole number")
    sums = raw.get("epoch_sums", {})
    if not isinstance(sums, dict) or not all(is_number(v) for v in sums.values()):
        raise ValueError("progress epoch_sums holds something other than numbers")
    best_epoch = raw.get("best_epoch")
    if not is_number(raw.get("best_val"), none=True) or not (
        best_epoch is None or is_count(best_epoch)
    ):
        raise ValueError("progress best_val or best_epoch is not a number")
