"""An evaluation's progress, kept in a file beside its output so that a long evaluation (k = 5000
on 10,000 images takes hours on a CPU) stopped by Ctrl-C, a kill or a reboot continues where it
stopped when the same command runs again, and reports the figures an uninterrupted run gives.

The file (``OUTPUT.progress.safetensors``: safetensors, never a pickle) holds the per-image
scores of the repeats finished, those of the repeat under way up to a batch boundary, and the
state of that repeat's noise generator there; its metadata names everything the figures depend
on (the checkpoint's sha256, the images' and labels' sha256, k, the seeds, the batch size...),
and a file made with other settings is refused rather than mixed in. It is written atomically
at most every ``interval`` seconds and once more on Ctrl-C; ``evaluate`` removes it once the
output is written.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vae.errors import ConfigError
from vae.fileio import (
    EVALUATION_PROGRESS,
    PROGRESS_METADATA_KEY,
    atomic_write_bytes,
    progress_path,
)

# Per-image scores a repeat keeps (``ImageScores``'s tensors); a key absent from a repeat (an NLL
# for a Gaussian likelihood) is None there.
SCORE_KEYS = ("neg_elbo", "recon", "kl", "nll", "squared_error", "posterior_means")
# Seconds between writes: a k = 5000 batch of 100 MNIST images takes about 50 s on one core.
DEFAULT_INTERVAL = 60.0


def tensor_digest(tensor: torch.Tensor | None) -> str | None:
    """sha256 of a tensor's bytes (None for None): the images and labels a progress file is of."""
    if tensor is None:
        return None
    return hashlib.sha256(tensor.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


def evaluation_identity(
    checkpoint_sha256: str,
    dataset: str,
    model: Any,
    images: torch.Tensor,
    labels: torch.Tensor | None,
    k: int,
    repeats: int,
    options: dict[str, Any],
) -> dict[str, Any]:
    """Everything an evaluation's figures depend on, as JSON values: what a progress file must
    match to be resumed (``options``: the protocol's binarization, seed, batch size and sigma)."""
    from vae.evaluation.scoring import max_decodes_for

    device = next(model.parameters()).device
    return {
        "checkpoint_sha256": checkpoint_sha256,
        "dataset": dataset,
        "images_sha256": tensor_digest(images),
        "labels_sha256": tensor_digest(labels),
        "num_images": int(images.shape[0]),
        **options,
        "k": k,
        "repeats": repeats,
        "max_decodes": max_decodes_for(device),
        "device": device.type,
        "likelihood": model.spec.likelihood,
        "latent_dim": model.spec.latent_dim,
    }


@dataclass
class Resumed:
    """What a progress file gives back: the per-image scores of each finished repeat, and of the
    repeat under way its scores so far (one tensor per key), the images they cover and its noise
    generator's state after them (None when no repeat is under way)."""

    finished: list[dict[str, torch.Tensor | None]]
    current: dict[str, torch.Tensor | None] = field(default_factory=dict)
    done: int = 0
    generator_state: torch.Tensor | None = None


@dataclass
class EvaluationProgress:
    """The progress file of one evaluation, identified by ``identity`` (JSON values)."""

    path: Path
    identity: dict[str, Any]
    interval: float = field(default_factory=lambda: DEFAULT_INTERVAL)
    _written: float = field(default_factory=time.monotonic)
    _pending: tuple[list[dict[str, Any]], dict[str, Any], int, torch.Tensor] | None = None

    def load(self) -> Resumed | None:
        """The progress saved by an earlier run of the same evaluation, None when there is none;
        ConfigError for a file of another evaluation or one that is not a progress file."""
        if not self.path.exists():
            return None
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(self.path), framework="pt") as handle:
                described = json.loads((handle.metadata() or {})[PROGRESS_METADATA_KEY])
                tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
        except (OSError, KeyError, ValueError, TypeError, SafetensorError) as error:
            raise ConfigError(
                f"{self.path} is not a vae evaluation progress file ({error}): move it away, "
                "or write the evaluation to another --output"
            ) from None
        saved = described.get("identity") if isinstance(described, dict) else None
        if saved != self.identity:
            raise ConfigError(
                f"{self.path} holds the progress of another evaluation "
                f"({_difference(saved, self.identity)}): run the command that made it to "
                "finish it, or delete the file to start over"
            )
        resumed = _resumed(described, tensors, self.identity)
        if resumed is None:
            raise ConfigError(
                f"{self.path} is damaged (its scores do not fit its settings): delete it to "
                "start over"
            )
        return resumed

    def batch_done(
        self,
        finished: list[dict[str, Any]],
        current: dict[str, list[torch.Tensor]],
        done: int,
        generator: torch.Generator,
    ) -> None:
        """Note that ``done`` images of the repeat under way are scored (``current``: its
        scores, a list of batches per key) and the generator stands after them; written when
        ``interval`` seconds have passed since the last write."""
        batches = min(len(parts) for parts in current.values())
        snapshot = {key: parts[:batches] for key, parts in current.items()}
        # Copies: the caller's list grows when the repeat ends, possibly before the next note.
        self._pending = (list(finished), snapshot, done, generator.get_state())
        if time.monotonic() - self._written >= self.interval:
            self.flush()

    def repeat_done(self, finished: list[dict[str, Any]], last: bool) -> None:
        """Note that a repeat ended (``finished``: every finished repeat's scores); written at
        once after the ``last`` one (what follows, an outlier pass, is not kept)."""
        self._pending = (list(finished), {}, 0, torch.empty(0, dtype=torch.uint8))
        if last or time.monotonic() - self._written >= self.interval:
            self.flush()

    def flush(self) -> None:
        """Write what was last noted, if anything is unwritten."""
        if self._pending is None:
            return
        from safetensors.torch import save

        finished, current, done, state = self._pending
        tensors: dict[str, torch.Tensor] = {}
        for index, scores in enumerate(finished):
            tensors |= _stored(scores, f"repeat{index}")
        joined = {key: torch.cat(parts) if parts else None for key, parts in current.items()}
        tensors |= _stored(joined, "current")
        if state.numel():
            tensors["current.generator"] = state
        described = {"identity": self.identity, "finished": len(finished), "done": done}
        data = save(tensors, metadata={PROGRESS_METADATA_KEY: json.dumps(described)})
        atomic_write_bytes(self.path, data, replaces=EVALUATION_PROGRESS)
        self._pending = None
        self._written = time.monotonic()


def _resumed(
    described: dict[str, Any], tensors: dict[str, torch.Tensor], identity: dict[str, Any]
) -> Resumed | None:
    """The progress a file's metadata and tensors describe, None unless every count, score and
    the generator state fit the evaluation ``identity`` names: the likelihood's five kinds of
    score, float64, finite, one per image (posterior means one row of ``latent_dim``), and a
    generator state exactly when a repeat is under way."""
    finished_count, done = described.get("finished"), described.get("done")
    images, repeats = identity["num_images"], identity["repeats"]
    if not (isinstance(finished_count, int) and 0 <= finished_count <= repeats):
        return None
    if not (isinstance(done, int) and 0 <= done <= images):
        return None
    if finished_count == repeats and done:
        return None
    finished = [_scores(tensors, f"repeat{index}") for index in range(finished_count)]
    current = _scores(tensors, "current")
    counts = [images] * finished_count + [done]
    keys = score_keys(identity["likelihood"])
    for scores, count in zip([*finished, current], counts, strict=True):
        if not count:
            if any(value is not None for value in scores.values()):
                return None
            continue
        if {key for key, value in scores.items() if value is not None} != set(keys):
            return None
        for key in keys:
            value = scores[key]
            assert value is not None
            shape = (count, identity["latent_dim"]) if key == "posterior_means" else (count,)
            if value.dtype != torch.float64 or tuple(value.shape) != shape:
                return None
            if not bool(torch.isfinite(value).all()):
                return None
    state = tensors.get("current.generator")
    if (state is not None) != (done > 0):
        return None
    # The noise generator of the device named in the identity (a CUDA one's state is not a CPU
    # one's: a run resumes on the kind of device it started on).
    shape = torch.Generator(device=identity["device"]).get_state().shape
    if state is not None and (state.dtype != torch.uint8 or state.shape != shape):
        return None
    return Resumed(finished, current, done, state)


def score_keys(likelihood: str) -> tuple[str, ...]:
    """The per-image scores a repeat keeps for a model of this likelihood: the Gaussian one has
    a squared error where the others have an NLL."""
    last = "squared_error" if likelihood == "mse" else "nll"
    return ("neg_elbo", "recon", "kl", "posterior_means", last)


def _stored(scores: dict[str, Any], prefix: str) -> dict[str, torch.Tensor]:
    return {
        f"{prefix}.{key}": value.detach().cpu().contiguous()
        for key, value in scores.items()
        if value is not None
    }


def _scores(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor | None]:
    return {key: tensors.get(f"{prefix}.{key}") for key in SCORE_KEYS}


def _difference(saved: Any, wanted: dict[str, Any]) -> str:
    """The first setting that differs, as 'k 1000, not 5000'."""
    if not isinstance(saved, dict):
        return "its settings are unreadable"
    for key, value in wanted.items():
        if saved.get(key) != value:
            return f"{key} {_short(saved.get(key))}, not {_short(value)}"
    return "its settings differ"


def _short(value: Any) -> str:
    text = str(value)
    return text[:12] + "..." if len(text) > 16 else text


__all__ = [
    "EvaluationProgress",
    "Resumed",
    "evaluation_identity",
    "progress_path",
    "score_keys",
    "tensor_digest",
]
