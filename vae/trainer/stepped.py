"""The module each training step runs: the model, wrapped in DistributedDataParallel and
torch.compile as the run asks, under bf16 autocast where asked and supported, with a compile
failure told as a usage error."""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from vae.config import RunConfig
from vae.device import bf16_autocast_supported
from vae.distributed import World
from vae.errors import Setting, VAEError, first_line
from vae.model import VAE


class SteppedModule:
    """Runs ``model``'s forward pass for a step; :meth:`wrap` wraps it as the run asks.

    Checkpoints still come from the plain model, so their tensor names stay plain."""

    def __init__(self, model: VAE, config: RunConfig, device: torch.device, world: World) -> None:
        self.model = model
        self.config = config
        self.device = device
        self.world = world
        self.module: torch.nn.Module = model  # wrapped by DDP and torch.compile in wrap()
        self.use_bf16 = config.train.bf16 and bf16_autocast_supported(device)
        # Compilation fails on the first step (a missing C++ compiler, say): caught there.
        self._compile_errors: tuple[type[Exception], ...] = ()

    def wrap(self) -> str:
        """Wrap the module in DDP and torch.compile as the run asks; returns what to add to the
        run's description."""
        added = ""
        if self.world.distributed:
            added += f"; {self.world.world_size} processes"
            from torch.nn.parallel import DistributedDataParallel

            self.module = DistributedDataParallel(
                self.model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
            )
        if self.config.train.compile:
            added += "; torch.compile"
            # The (DDP-wrapped) module: DDP's hooks then see the compiled graph's gradients.
            self.module = torch.compile(self.module)
            from torch._dynamo.exc import TorchDynamoException

            self._compile_errors = (TorchDynamoException,)
        return added

    def __call__(
        self, x: torch.Tensor, noise: torch.Tensor | None, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The wrapped module's (decoded, mu, logvar) for images ``x`` with posterior ``noise``
        (and a conditional model's ``labels``)."""
        try:
            with self._autocast():
                return self.module(x, noise=noise, labels=labels)
        except self._compile_errors as error:
            cause = getattr(error, "inner_exception", None) or error  # the backend's own error
            raise VAEError(
                Setting("compile"),
                f" failed ({first_line(cause)}); train without ",
                Setting("compile"),
            ) from None

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.use_bf16:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()
