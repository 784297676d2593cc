"""Writing a checkpoint: the metadata that rebuilds and describes a model (``build_metadata``)
and the atomic save of its weights, optional training tensors and state (``save_checkpoint``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vae import __version__
from vae.checkpoint.names import FORMAT_NAME, FORMAT_VERSION, MODEL_PREFIX
from vae.fileio import atomic_write_bytes
from vae.likelihoods import PERCEPTUAL_LOSSES

if TYPE_CHECKING:
    import torch

    from vae.model import VAE


def build_metadata(
    *,
    model: VAE,
    data_info: dict[str, Any],
    config: dict[str, Any],
    epoch: int,
    step: int,
    validation: dict[str, float] | None,
    kind: str,
    run_name: str | None,
) -> dict[str, Any]:
    """Everything needed to rebuild and describe a model, as stored in its checkpoint."""
    import torch

    objective = config.get("objective", {})
    return {
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        "kind": kind,
        "run_name": run_name,
        "model": model.spec.to_dict(),
        "data": data_info,
        "likelihood": {
            "name": model.spec.likelihood,
            "gaussian_sigma": objective.get("gaussian_sigma")
            if model.spec.likelihood == "mse"
            else None,
            # The values the model learned (per channel); gaussian_sigma is then their start.
            "note": "a perceptual loss, not a likelihood: no NLL or bits/dim is defined"
            if model.spec.likelihood in PERCEPTUAL_LOSSES
            else None,
            "learned_sigma": model.likelihood_sigma(0.0).detach().flatten().tolist()
            if model.spec.learned_sigma
            else None,
        },
        "beta_schedule": {
            key: objective.get(key)
            for key in (
                "beta_schedule",
                "beta",
                "beta_warmup",
                "beta_cycles",
                "beta_ramp_ratio",
                "free_bits",
            )
        },
        "epoch": epoch,
        "step": step,
        "validation": validation or {},
        "parameter_count": model.parameter_count(),
        "created_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "torch_version": torch.__version__,
        "config": config,
    }


def save_checkpoint(
    path: str | Path,
    model: VAE,
    metadata: dict[str, Any],
    extra_tensors: dict[str, torch.Tensor] | None = None,
    training_state: dict[str, Any] | None = None,
) -> None:
    """Write weights (+ optional training tensors and state) and metadata, atomically."""
    from safetensors.torch import save

    tensors = {
        MODEL_PREFIX + name: value.detach().to("cpu").contiguous()
        for name, value in model.state_dict().items()
    }
    for name, value in (extra_tensors or {}).items():
        tensors[name] = value.detach().to("cpu").contiguous()
    header_metadata = {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        "vae": json.dumps(metadata, sort_keys=True),
    }
    if training_state is not None:
        header_metadata["training_state"] = json.dumps(training_state, sort_keys=True)
    atomic_write_bytes(path, save(tensors, metadata=header_metadata))
