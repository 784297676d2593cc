"""Device choice: ``auto`` picks an accelerator when one is present, else the CPU."""

from __future__ import annotations

import torch

from vae.errors import ConfigError, Setting

DEVICE = Setting("device")


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' | 'cpu' | 'cuda' | 'mps' (or 'cuda:N') -> a usable torch.device."""
    if name == "auto":
        accelerator = getattr(torch, "accelerator", None)
        if accelerator is not None and accelerator.is_available():
            current = accelerator.current_accelerator()
            if current is not None and current.type in ("cuda", "mps"):
                return torch.device(current.type)
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(
            "invalid value for ", DEVICE, f": {name!r} (expected auto, cpu, cuda or mps)"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            DEVICE,
            " cuda was asked for but CUDA is not available here; use ",
            DEVICE,
            " auto or cpu",
        )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(
            DEVICE, " mps was asked for but MPS is not available here; use ", DEVICE, " auto or cpu"
        )
    if device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(
            "invalid value for ", DEVICE, f": {name!r} (expected auto, cpu, cuda or mps)"
        )
    return device


def bf16_autocast_supported(device: torch.device) -> bool:
    """Whether bf16 autocast speeds this device up: a bf16 GPU, or a CPU with native bf16 (AVX512-BF16, AMX).

    CPUs without native bf16 emulate it, which is slower than float32, so they keep float32.
    """
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        # Native bf16 only: oneDNN emulates bf16 on other AVX512 CPUs, more slowly than float32.
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)
    return False
