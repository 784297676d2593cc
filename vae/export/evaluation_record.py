"""The evaluation JSON a model card reports: given, or the most thorough one beside the checkpoint."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from vae.errors import ConfigError

# An evaluation JSON is a few kilobytes; a larger file beside a checkpoint is not one.
_MAX_EVALUATION_BYTES = 16 * 1024 * 1024


def find_evaluation(
    checkpoint: Path, sha256: str, given: str | Path | None
) -> tuple[dict[str, Any] | None, Path | None]:
    """The evaluation record the card reports and its file: ``given`` (which must be of this
    checkpoint), else the best of those beside the checkpoint made of it (see ``best_record``)."""
    if given is not None:
        path = Path(given)
        record = _read_evaluation(path)
        if record is None:
            raise ConfigError(
                f"{path} is not a vae evaluation JSON (write one with evaluate --output FILE.json)"
            )
        if record["checkpoint_sha256"] != sha256:
            raise ConfigError(
                f"{path} evaluates another checkpoint (its checkpoint_sha256 is not that of "
                f"{checkpoint})"
            )
        return record, path
    found = []
    for path in sorted(checkpoint.parent.glob("evaluation*.json")):
        record = _read_evaluation(path)
        if record is not None and record["checkpoint_sha256"] == sha256:
            found.append((path, record))
    if not found:
        return None, None
    path, record = best_record(found)
    return record, path


def best_record(found: list[tuple[Path, dict[str, Any]]]) -> tuple[Path, dict[str, Any]]:
    """Of several evaluations of one checkpoint, the most thorough: the most test images, then
    the most importance samples (k), then the most repeats; a tie goes to the first by name."""

    def thoroughness(item: tuple[Path, dict[str, Any]]) -> tuple[float, ...]:
        record = item[1]
        return tuple(
            -float(value) if isinstance(value := record.get(key), int | float) else 0.0
            for key in ("num_images", "k", "repeats")
        )

    return min(found, key=lambda item: (thoroughness(item), item[0].name))


def _read_evaluation(path: Path) -> dict[str, Any] | None:
    """The evaluation record in ``path``, or None when it is not one (unreadable, too large, not
    JSON, or without figures)."""
    try:
        if not path.is_file() or path.stat().st_size > _MAX_EVALUATION_BYTES:
            return None
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    if not (
        isinstance(record, dict)
        and isinstance(record.get("checkpoint_sha256"), str)
        and isinstance(record.get("metrics"), dict)
    ):
        return None
    return record


def evaluation_figures(record: dict[str, Any]) -> list[tuple[str, float | int]]:
    """(metric, value) of an evaluation record: each metric's mean (over repeats), then the
    active units; only finite numbers."""
    figures: list[tuple[str, float | int]] = []
    for name, summary in sorted(record["metrics"].items()):
        mean = summary.get("mean") if isinstance(summary, dict) else None
        if isinstance(mean, int | float) and not isinstance(mean, bool) and math.isfinite(mean):
            figures.append((str(name), float(mean)))
    units = record.get("active_units")
    if isinstance(units, int) and not isinstance(units, bool):
        figures.append(("active_units", units))
    return figures
