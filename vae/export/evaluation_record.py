"""The evaluation JSON a model card reports: given, or the most thorough one beside the checkpoint."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

from vae.errors import ConfigError
from vae.json_values import is_count, is_number

# An evaluation JSON is a few kilobytes; a larger file beside a checkpoint is not one.
_MAX_EVALUATION_BYTES = 16 * 1024 * 1024


# What differs between evaluations of one protocol under different seeds, or of one evaluation
# resumed over several sittings: everything else must agree for their figures to be pooled.
_PER_RUN_FIELDS = frozenset(
    {"checkpoint", "command", "seconds", "resumed_image_scores", "seeds", "repeats", "metrics"}
)


def find_evaluation(
    checkpoint: Path, sha256: str, given: str | Path | None
) -> tuple[dict[str, Any] | None, list[Path]]:
    """The evaluation record the card reports and the files it comes from: ``given`` (which
    must be of this checkpoint), else the most thorough of those beside the checkpoint made of
    it (see ``best_record``), files that differ only in their seeds pooled into one record
    (see ``pool_seeds``): a protocol's three seeds written one file each are reported as the
    protocol reports them, their mean."""
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
        return record, [path]
    found = []
    for path in sorted(checkpoint.parent.glob("evaluation*.json")):
        record = _read_evaluation(path)
        if record is not None and record["checkpoint_sha256"] == sha256:
            found.append((path, record))
    if not found:
        return None, []
    paths, record = best_record(pool_seeds(found))
    return record, paths


def best_record(
    found: list[tuple[list[Path], dict[str, Any]]],
) -> tuple[list[Path], dict[str, Any]]:
    """Of several evaluations of one checkpoint (each with the files it comes from), the most
    thorough: the most test images, then the most importance samples (k), then the most
    repeats (seeds); a tie goes to the first by file name."""

    def thoroughness(item: tuple[list[Path], dict[str, Any]]) -> tuple[float, ...]:
        record = item[1]
        return tuple(
            -float(value) if isinstance(value := record.get(key), int | float) else 0.0
            for key in ("num_images", "k", "repeats")
        )

    return min(found, key=lambda item: (thoroughness(item), item[0][0].name))


def pool_seeds(
    found: list[tuple[Path, dict[str, Any]]],
) -> list[tuple[list[Path], dict[str, Any]]]:
    """The evaluations ``found`` (in file-name order), those that differ only in their seeds
    (and in what each run records of itself: its command, time, sittings) pooled into one
    record per protocol: its seeds and each metric's values joined in seed order, their mean
    and standard deviation taken again. A file pools only with files whose seeds it does not
    repeat; files of more seeds are placed first, so that single seeds fill in around them."""
    pooled: list[tuple[list[Path], dict[str, Any]]] = []
    for path, record in sorted(
        found, key=lambda item: -len(_whole_numbers(item[1].get("seeds")) or [])
    ):
        for index, (paths, joined) in enumerate(pooled):
            merged = _joined(joined, record)
            if merged is not None:
                pooled[index] = (sorted([*paths, path], key=lambda each: each.name), merged)
                break
        else:
            pooled.append(([path], record))
    return pooled


def _joined(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any] | None:
    """``first`` and ``second`` as one record of all their seeds, or None when they are not
    the same evaluation under other seeds."""

    def shared(record: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in record.items() if key not in _PER_RUN_FIELDS}

    seeds = [_whole_numbers(first.get("seeds")), _whole_numbers(second.get("seeds"))]
    values = [_metric_values(first), _metric_values(second)]
    if shared(first) != shared(second) or None in seeds or None in values:
        return None
    assert seeds[0] is not None and seeds[1] is not None and values[0] and values[1]
    if set(seeds[0]) & set(seeds[1]) or values[0].keys() != values[1].keys():
        return None
    every_seed = seeds[0] + seeds[1]
    order = sorted(range(len(every_seed)), key=every_seed.__getitem__)
    metrics = {}
    for name in values[0]:
        joined = values[0][name] + values[1][name]
        metrics[name] = _summary([joined[position] for position in order])
        if metrics[name] is None:
            return None
    in_order = [every_seed[position] for position in order]
    return {**shared(first), "seeds": in_order, "repeats": len(in_order), "metrics": metrics}


def _whole_numbers(value: Any) -> list[int] | None:
    """``value`` when it is a non-empty list of whole numbers (a record's seeds), else None."""
    if isinstance(value, list) and value and all(is_count(item) for item in value):
        return value
    return None


def _metric_values(record: dict[str, Any]) -> dict[str, list[float]] | None:
    """Each metric's per-repeat values, one per seed; None when a record lacks them."""
    seeds = record.get("seeds")
    found = {}
    for name, summary in record["metrics"].items():
        values = summary.get("values") if isinstance(summary, dict) else None
        if not (
            isinstance(values, list)
            and isinstance(seeds, list)
            and len(values) == len(seeds)
            and all(is_number(value) for value in values)
        ):
            return None
        found[name] = [float(value) for value in values]
    return found or None


def _summary(values: list[float]) -> dict[str, Any] | None:
    """Mean, sample standard deviation and values, as ``evaluate`` summarises its repeats;
    None when no float holds them (figures near the float's limit)."""
    try:
        mean = statistics.fmean(values)
        spread = statistics.stdev(values) if len(values) > 1 else None
    except (OverflowError, ValueError):
        return None
    if not math.isfinite(mean) or (spread is not None and not math.isfinite(spread)):
        return None
    return {"mean": mean, "std": spread, "values": values}


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
        if is_number(mean):
            figures.append((str(name), float(mean)))
    units = record.get("active_units")
    if isinstance(units, int) and not isinstance(units, bool):
        figures.append(("active_units", units))
    return figures
