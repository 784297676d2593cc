"""A checkpoint's metadata made fit to share: without the paths only its own machine knows."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

from vae.checkpoint import FORMAT_VERSION
from vae.data.registry import FOLDER_PREFIX, HF_PREFIX, MEMORY_PREFIX


def shareable_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint's vae metadata without what only its own machine knows: the data, cache
    and runs folders become their defaults and a ``folder:`` (or local ``hf:``) dataset keeps
    only its folder's name; the format is today's (the weights are saved under today's names)."""
    shared = copy.deepcopy(metadata)
    shared["format_version"] = FORMAT_VERSION
    config = shared.get("config")
    if isinstance(config, dict):
        data = config.get("data")
        if isinstance(data, dict):
            for key in ("data_dir", "cache_dir"):
                if key in data:
                    data[key] = None
            if "dataset" in data:
                data["dataset"] = _shareable_dataset(data["dataset"])
        train = config.get("train")
        if isinstance(train, dict) and "runs_dir" in train:
            train["runs_dir"] = "runs"
    data_info = shared.get("data")
    if isinstance(data_info, dict) and "dataset" in data_info:
        data_info["dataset"] = _shareable_dataset(data_info["dataset"])
    return shared


def _shareable_dataset(dataset: Any) -> Any:
    """``folder:/home/me/photos`` -> ``folder:photos``; a local ``hf:`` path likewise; a Hub
    dataset's or a registry dataset's name as it is."""
    if not isinstance(dataset, str):
        return dataset
    for prefix in (FOLDER_PREFIX, HF_PREFIX):
        if dataset.startswith(prefix):
            rest = dataset[len(prefix) :]
            local = prefix == FOLDER_PREFIX or rest.startswith(("/", "~", ".")) or "\\" in rest
            if local:
                return prefix + Path(rest.replace("\\", "/").rstrip("/")).name
    return dataset


def named_dataset(metadata: dict[str, Any]) -> str | None:
    """The dataset the model was trained on when it has a name others can find (a registry
    dataset or a Hub dataset), else None."""
    dataset = (metadata.get("data") or {}).get("dataset")
    if not isinstance(dataset, str) or dataset.startswith((FOLDER_PREFIX, MEMORY_PREFIX)):
        return None
    if dataset.startswith(HF_PREFIX):
        name = dataset[len(HF_PREFIX) :]
        return name if re.fullmatch(r"[\w.-]+(/[\w.-]+)?", name) else None
    return dataset
