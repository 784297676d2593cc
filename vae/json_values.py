"""Checks on values read back from JSON that a person may have edited (run metrics, a
checkpoint's training state): numbers where numbers belong, the kinds a fresh value has."""

from __future__ import annotations

import math
from typing import Any


def is_number(value: Any, none: bool = False) -> bool:
    """Whether a JSON value is a finite number (``bool``, NaN and infinities are not; ``None``
    is when ``none``): vae writes no other, and a NaN would pass every comparison as false."""
    if none and value is None:
        return True
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # a JSON integer of hundreds of digits: no float holds it
        return False


def is_count(value: Any) -> bool:
    """Whether a JSON value is a whole number of at least 0 (``bool`` is not)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def check_same_kind(fresh: Any, loaded: Any, where: str) -> None:
    """Raise ValueError unless ``loaded`` has the JSON kinds of ``fresh`` (the same state of a
    new run): numbers where it has numbers (finite where it is finite), flags where it has
    flags, lists as long. Keys only one side has pass: another torch version may add some."""
    if isinstance(fresh, bool) or isinstance(loaded, bool):
        ok = isinstance(fresh, bool) == isinstance(loaded, bool) or fresh is None
    elif isinstance(fresh, int | float):
        ok = is_number(loaded) and (math.isfinite(loaded) or not math.isfinite(fresh))
    elif isinstance(fresh, str):
        ok = isinstance(loaded, str)
    elif fresh is None:
        ok = not isinstance(loaded, dict | list)
    elif isinstance(fresh, list | tuple):
        ok = isinstance(loaded, list | tuple) and len(loaded) == len(fresh)
        if ok:
            for position, (inner, value) in enumerate(zip(fresh, loaded, strict=True)):
                check_same_kind(inner, value, f"{where}[{position}]")
    elif isinstance(fresh, dict):
        ok = isinstance(loaded, dict)
        if ok:
            for key in fresh.keys() & loaded.keys():
                check_same_kind(fresh[key], loaded[key], f"{where} {key}")
    else:
        ok = True  # a kind JSON cannot hold: nothing to compare with
    if not ok:
        raise ValueError(f"{where} is {str(loaded)[:40]!r}, where a new run has {fresh!r}")
