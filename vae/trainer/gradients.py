"""What a training step does with its gradients: clip their norm (``grad_clip``), leave the
update out when the norm is an outlier (``grad_skip``, as NVAE and VDVAE do: a hierarchy's rare
huge gradients would otherwise undo many steps of Adam's progress), else step the optimizer."""

from __future__ import annotations

import torch


def apply_gradients(
    parameters: list[torch.nn.Parameter], optimizer: torch.optim.Optimizer, clip: float, skip: float
) -> bool:
    """Step ``optimizer`` on the gradients of ``parameters``, clipped to the norm ``clip`` (0:
    not clipped), unless ``skip`` > 0 and their norm before clipping is above it or not finite;
    returns whether it stepped. Under DistributedDataParallel the gradients are the processes'
    average when this runs, so every process decides alike."""
    if clip > 0:
        norm = torch.nn.utils.clip_grad_norm_(parameters, clip)
    elif skip > 0:
        norm = torch.nn.utils.get_total_norm(p.grad for p in parameters if p.grad is not None)
    if skip > 0 and not float(norm) <= skip:  # one read of the device per step, only when asked
        return False
    optimizer.step()
    return True
