"""A run's training curves, redrawn from its metrics log."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from vae.checkpoint import read_metadata
from vae.errors import DataError
from vae.loss_name import training_loss_name
from vae.plots import save_training_curves


def curves(run: Path, path: Path | None = None) -> Path:
    """Redraw ``curves.png`` of a run folder (or of a metrics.jsonl file) from its metrics."""
    from vae.run_folder import CURVES_NAME, METRICS_NAME, read_metrics

    metrics = run if run.is_file() else run / METRICS_NAME
    if not metrics.exists():
        raise DataError(f"{metrics} not found: give a run folder written by train")
    records = read_metrics(metrics)
    if not records:
        raise DataError(f"{metrics} holds no finished epoch yet")
    target = path if path is not None else metrics.parent / CURVES_NAME
    loss = training_loss_name(_run_configuration(metrics.parent))
    return save_training_curves(records, target, title=str(metrics), loss=loss)


def _run_configuration(folder: Path) -> dict[str, Any] | None:
    """The configuration of the run whose metrics lie in ``folder``: its ``config.yaml``, else
    a checkpoint's beside them (the shipped logs sit beside their checkpoints); None when
    neither can be read (the curves then name the -ELBO)."""
    from vae.checkpoint import BEST_NAME
    from vae.config import load_config_file
    from vae.errors import VAEError
    from vae.run_folder import CONFIG_NAME

    with contextlib.suppress(VAEError, OSError):
        if (folder / CONFIG_NAME).is_file():
            return load_config_file(folder / CONFIG_NAME).to_dict()
    with contextlib.suppress(VAEError, OSError):
        if (folder / BEST_NAME).is_file():
            config = read_metadata(folder / BEST_NAME).get("config")
            return config if isinstance(config, dict) else None
    return None
