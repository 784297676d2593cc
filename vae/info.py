"""Describe a checkpoint from its safetensors header: no torch import, no tensor built (its bytes
are read once, for the sha256)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vae.checkpoint import read_checkpoint

# A list longer than this is shown by its ends and its length (a model's own lists, at most 32
# layers, are always shown whole); a run of consecutive integers is shown as its range.
_LIST_SHOWN_WHOLE = 32
_LIST_ENDS = 4


def describe_checkpoint(path: str | Path) -> dict[str, Any]:
    """Metadata plus file facts (size, sha256, tensor count) and, for a ``checkpoint_last``,
    its ``training_state`` (progress, beta, optimizer settings, scheduler), for ``info``."""
    # Header and sha256 from one read of the file (never the hash of a file renamed over it);
    # a checkpoint no command could load is reported as such (read_checkpoint checks its model).
    content = read_checkpoint(path)
    header = content.header
    facts: dict[str, Any] = {
        "path": str(path),
        "file_size_bytes": header.file_size,
        "sha256": content.sha256,
        "tensor_count": len(header.tensors),
        "has_training_state": header.training_state is not None,
    }
    # The file's own facts win over metadata fields of the same name: a checkpoint cannot
    # show another file's sha256 or a training state it does not hold.
    reserved = {*facts, "training_state"}
    description = facts | {k: v for k, v in header.metadata.items() if k not in reserved}
    if header.training_state is not None:
        description["training_state"] = header.training_state
    groups = _latent_groups(header.metadata)
    if groups is not None:
        description["groups"] = groups
    return description


def _latent_groups(metadata: dict[str, Any]) -> dict[str, Any] | None:
    """The model's groups of latents as its family describes them (a hierarchy's sizes and
    validation KL), None for a latent of one group."""
    from vae.models import known_family

    model, validation = metadata.get("model"), metadata.get("validation")
    family = known_family(model.get("model_type")) if isinstance(model, dict) else None
    if family is None:
        return None
    return family.describe_groups(model, validation if isinstance(validation, dict) else {})


def render_json(description: dict[str, Any]) -> str:
    """The description as JSON; every non-ASCII or control character is written as a \\u escape
    (json's ensure_ascii), so a hostile string in the metadata cannot reach the terminal raw."""
    return json.dumps(description, indent=2, sort_keys=True, ensure_ascii=True)


def _scalar_text(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)  # the shortest text that reads back as the same float: 0.00025, 1e-05
    if value is None or value == {} or value == []:
        return "-"
    return str(value)


def _list_text(values: list[Any] | tuple[Any, ...]) -> str:
    """Every value, or, for a long list, a shorter text that says what it shortened."""
    if not values:
        return "-"
    numbers = [v for v in values if isinstance(v, int) and not isinstance(v, bool)]
    consecutive = len(numbers) == len(values) and numbers == list(
        range(numbers[0], numbers[0] + len(numbers))
    )
    if consecutive and len(values) > 3:
        return f"{numbers[0]} to {numbers[-1]} ({len(values)} values)"
    if len(values) <= _LIST_SHOWN_WHOLE:
        return ", ".join(_scalar_text(v) for v in values)
    head = ", ".join(_scalar_text(v) for v in values[:_LIST_ENDS])
    tail = ", ".join(_scalar_text(v) for v in values[-_LIST_ENDS:])
    return (
        f"{head}, ..., {tail} ({len(values):,} values, {len(values) - 2 * _LIST_ENDS:,} not shown)"
    )


def _flatten(prefix: str, value: Any, rows: list[tuple[str, str]]) -> None:
    """Rows of (dotted name, text): nested objects and lists of objects by name and index."""
    if isinstance(value, dict) and value:
        if _same_for_every_index(value):
            # Per-parameter entries that are all alike (the optimizer's scalars): shown once.
            _flatten(f"{prefix}.<each of {len(value)}>", next(iter(value.values())), rows)
            return
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), inner, rows)
    elif isinstance(value, list | tuple) and value and all(isinstance(v, dict) for v in value):
        for index, inner in enumerate(value):
            _flatten(f"{prefix}.{index}", inner, rows)
    elif isinstance(value, list | tuple):
        rows.append((prefix, _list_text(value)))
    else:
        rows.append((prefix, _scalar_text(value)))


def _same_for_every_index(value: dict[Any, Any]) -> bool:
    """Whether ``value`` is keyed 0, 1, 2... (more than one key) with one value for all."""
    keys = list(value)
    if len(keys) < 2 or not all(isinstance(k, str) and k.isdigit() for k in keys):
        return False
    first = value[keys[0]]
    return all(value[k] == first for k in keys[1:])


def _human_size(size: int) -> str:
    amount = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if amount < 1024 or unit == "GiB":
            return f"{amount:.1f} {unit}" if unit != "B" else f"{size} B"
        amount /= 1024
    return f"{size} B"


def render_table(description: dict[str, Any]) -> Any:
    """A rich Table of every metadata field (nested fields as dotted names), the run's
    ``config`` and, for a ``checkpoint_last``, its ``training_state`` in a section of its own.
    Every name and value comes from the file: each is shown escaped (control characters as
    \\x1b, \\n) and as plain text, never read as Rich markup such as [link=...]."""
    from rich.table import Table

    from vae.reporting import plain

    table = Table(title=plain(f"vae checkpoint {description['path']}"), title_justify="left")
    table.add_column("field", style="bold", overflow="fold")
    table.add_column("value", overflow="fold")
    size = description["file_size_bytes"]
    first = {"path": description["path"], "file_size": f"{_human_size(size)} ({size:,} bytes)"}
    first.update((k, v) for k, v in description.items() if k not in ("path", "file_size_bytes"))
    config = first.pop("config", None)
    state = first.pop("training_state", None)
    rows: list[tuple[str, str]] = []
    _flatten("", first, rows)
    if config is not None:
        _flatten("config", _read_settings(config, description.get("model")), rows)
    for name, value in rows:
        table.add_row(plain(name), plain(value))
    if isinstance(state, dict):
        _add_training_state(table, state)
    return table


def _read_settings(config: Any, model: Any) -> Any:
    """The run's configuration without the settings its family, prior and objective never read
    (a plain VAE's ``latent_groups``): the JSON output keeps every one."""
    from vae.config.rules import settings_not_read

    if not isinstance(config, dict) or not isinstance(model, dict):
        return config
    objective = config.get("objective")
    unread = settings_not_read(
        model.get("model_type"),
        model.get("prior"),
        objective.get("objective") if isinstance(objective, dict) else None,
    )
    return {
        section: {k: v for k, v in values.items() if k not in unread}
        if isinstance(values, dict)
        else values
        for section, values in config.items()
    }


# The order a reader asks in: where the run stopped, then what --resume restores it with.
_STATE_ORDER = ("progress", "beta", "optimizer", "scheduler")


def _add_training_state(table: Any, state: dict[str, Any]) -> None:
    """A section of its own: a heading row, then the state's fields named within it."""
    from vae.reporting import plain

    table.add_section()
    table.add_row("training_state", "what train --resume restores (checkpoint_last only)")
    ordered = [key for key in _STATE_ORDER if key in state]
    ordered += [key for key in state if key not in _STATE_ORDER]
    rows: list[tuple[str, str]] = []
    for key in ordered:
        _flatten(str(key), state[key], rows)
    for name, value in rows:
        table.add_row(plain(f"  {name}"), plain(value))
