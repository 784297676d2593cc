"""Describe a checkpoint from its safetensors header alone: no torch import, no tensor reads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vae.checkpoint import read_checkpoint


def describe_checkpoint(path: str | Path) -> dict[str, Any]:
    """Metadata plus file facts (size, sha256, tensor count) for ``info``."""
    # Header and sha256 from one read of the file (never the hash of a file renamed over it);
    # a checkpoint no command could load is reported as such (read_checkpoint checks its model).
    content = read_checkpoint(path)
    header = content.header
    description: dict[str, Any] = {
        "path": str(path),
        "file_size_bytes": header.file_size,
        "sha256": content.sha256,
        "tensor_count": len(header.tensors),
        "has_training_state": header.training_state is not None,
    }
    description.update(header.metadata)
    return description


def render_json(description: dict[str, Any]) -> str:
    """The description as JSON; every non-ASCII or control character is written as a \\u escape
    (json's ensure_ascii), so a hostile string in the metadata cannot reach the terminal raw."""
    return json.dumps(description, indent=2, sort_keys=True, ensure_ascii=True)


def _flatten(prefix: str, value: Any, rows: list[tuple[str, str]]) -> None:
    if isinstance(value, dict) and value:
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), inner, rows)
    else:
        if isinstance(value, float):
            text = f"{value:.4f}"
        elif isinstance(value, list | tuple):
            text = ", ".join(str(v) for v in value) or "-"
        elif value is None or value == {}:
            text = "-"
        else:
            text = str(value)
        rows.append((prefix, text))


def _human_size(size: int) -> str:
    amount = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if amount < 1024 or unit == "GiB":
            return f"{amount:.1f} {unit}" if unit != "B" else f"{size} B"
        amount /= 1024
    return f"{size} B"


def render_table(description: dict[str, Any]) -> Any:
    """A rich Table of every metadata field (nested fields as dotted names). Every name and
    value comes from the file: each is shown escaped (control characters as \\x1b, \\n) and as
    plain text, never read as Rich markup such as [link=...]."""
    from rich.table import Table

    from vae.reporting import plain

    table = Table(title=plain(f"vae checkpoint {description['path']}"), title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    size = description["file_size_bytes"]
    first = {"path": description["path"], "file_size": f"{_human_size(size)} ({size:,} bytes)"}
    first.update((k, v) for k, v in description.items() if k not in ("path", "file_size_bytes"))
    config = first.pop("config", None)
    rows: list[tuple[str, str]] = []
    _flatten("", first, rows)
    if config is not None:
        _flatten("config", config, rows)
    for name, value in rows:
        table.add_row(plain(name), plain(value))
    return table
