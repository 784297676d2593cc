"""The training metrics as sums: a few steps' terms summed on the device and read once (an
interval), the epoch's sums they add up to, and the epoch's line of ``metrics.jsonl`` made
from them."""

from __future__ import annotations

import time
from typing import Any

import torch

from vae.distributed import World
from vae.objectives import ElboTerms
from vae.training_state import Progress

SUMMED_TERMS = ("loss", "neg_elbo", "recon", "kl")
# The -IWAE bound (ElboTerms.neg_iwae), summed too by a run that trains it; its record names it
# with its sample count (``train_neg_iwae_k5``: the loss name's key).
BOUND_TERM = "neg_iwae"
REPORT_EVERY = 20  # steps between reads of the training metrics (and the NaN guard)


class Interval:
    """Training metrics of a few steps, summed on the device without synchronising."""

    def __init__(
        self, device: torch.device, step: int, terms: tuple[str, ...] = SUMMED_TERMS
    ) -> None:
        # float64 (where the device has it) keeps the sums exact, so that they do not depend on
        # where an interval was cut (an interrupted and resumed run matches an uninterrupted one).
        dtype = torch.float32 if device.type == "mps" else torch.float64
        self.terms = terms
        self.sums = torch.zeros(len(terms), dtype=dtype, device=device)
        self.bad_step = torch.full((), -1, dtype=torch.long, device=device)
        self.images = 0
        self.steps = 0
        self.started = time.perf_counter()

    def add(self, terms: ElboTerms | None, images: int, step: int) -> None:
        """Add one step's terms for ``images`` images (none on a rank with no share)."""
        self.steps += 1
        if images == 0 or terms is None:  # a rank with no image of a short last batch
            return
        values = torch.stack([getattr(terms, key).detach() for key in self.terms])
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
        totals = dict(zip(self.terms, values, strict=True))
        totals["seconds"] = time.perf_counter() - self.started
        return totals, (int(bad_step) if bad_step >= 0 else None), stop

    def means(self, totals: dict[str, float], beta: float) -> dict[str, float]:
        """What the reporter shows of the interval read as ``totals``: per-image means, the
        beta and the rate."""
        images = max(self.images, 1)
        seconds = totals["seconds"]
        return {
            **{key: totals[key] / images for key in ("loss", "recon", "kl")},
            "beta": beta,
            "images_per_second": self.images / seconds if seconds > 0 else 0.0,
        }


def empty_sums(terms: tuple[str, ...] = SUMMED_TERMS) -> dict[str, float]:
    """An epoch's sums of ``terms`` before its first interval."""
    return {key: 0.0 for key in (*terms, "images", "seconds")}


def add_interval(sums: dict[str, float], totals: dict[str, float], images: int) -> None:
    """Add an interval's ``totals`` over ``images`` images to the epoch's ``sums``."""
    for key in totals:
        if key != "seconds":
            sums[key] += totals[key]
    sums["images"] += images
    sums["seconds"] += totals["seconds"]


def epoch_record(
    progress: Progress,
    beta: float,
    lr: float,
    sums: dict[str, float],
    validation: dict[str, float],
    eligible: bool,
    best: bool,
    bound_key: str | None = None,
) -> dict[str, Any]:
    """The epoch's line of metrics.jsonl (``lr``: the rate the epoch trained at; ``beta``: the
    one of its last step; ``bound_key``: the name of a trained bound's figure, its loss name's
    key)."""
    images = max(sums["images"], 1.0)
    bound = {f"train_{bound_key}": sums[BOUND_TERM] / images} if BOUND_TERM in sums else {}
    return {
        "epoch": progress.epoch,
        "step": progress.step,
        "beta": beta,
        "lr": lr,
        "train_loss": sums["loss"] / images,
        **bound,
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
