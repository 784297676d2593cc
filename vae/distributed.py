"""Multi-process training with PyTorch's own engine: torchrun starts the processes,
``torch.distributed`` connects them, DistributedDataParallel all-reduces the gradients.

A process started by torchrun finds ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` in its
environment; without them (or with a world of one) training runs as a single process and nothing
here is used.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, TypeVar

from vae.errors import ConfigError, Setting, VAEError

if TYPE_CHECKING:
    import torch

T = TypeVar("T")

# Long enough for the slowest rank to load a large dataset before the first collective.
PROCESS_GROUP_TIMEOUT = timedelta(minutes=10)


def launched_by_torchrun() -> bool:
    """True in a process that torchrun started with more than one process in the world (this
    module imports torch only when needed: the CLI asks this before its slow imports)."""
    return _int_env("WORLD_SIZE", 1) > 1


def _int_env(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"environment variable {name}={value!r} is not an integer") from None


def local_process_count() -> int:
    """Training processes on this machine (torchrun's LOCAL_WORLD_SIZE; 1 outside torchrun)."""
    return max(1, _int_env("LOCAL_WORLD_SIZE", 1))


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes files and talks to the user."""
        return self.rank == 0

    def shard(self, count: int) -> slice:
        """This rank's contiguous part of ``count`` items: disjoint across ranks, covering all,
        sizes differing by at most one."""
        return slice(
            count * self.rank // self.world_size, count * (self.rank + 1) // self.world_size
        )

    def all_reduce_sum(self, values: torch.Tensor) -> torch.Tensor:
        """The element-wise sum over ranks (in place; a no-op for a single process)."""
        if self.distributed:
            import torch.distributed as dist

            dist.all_reduce(values, op=dist.ReduceOp.SUM)
        return values

    def all_reduce_max(self, values: torch.Tensor) -> torch.Tensor:
        """The element-wise maximum over ranks (in place; a no-op for a single process)."""
        if self.distributed:
            import torch.distributed as dist

            dist.all_reduce(values, op=dist.ReduceOp.MAX)
        return values

    def any(self, flag: bool, device: torch.device) -> bool:
        """Whether ``flag`` is true on any rank (``flag`` itself for a single process)."""
        if not self.distributed:
            return flag
        import torch

        return bool(self.all_reduce_max(torch.tensor([float(flag)], device=device)).item())

    def barrier(self) -> None:
        """Wait until every rank gets here (a no-op for a single process)."""
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()


SINGLE_PROCESS = World()


def world_from_environment() -> World:
    """The world torchrun describes in the environment (a single process when it does not)."""
    world_size = _int_env("WORLD_SIZE", 1)
    if world_size == 1:
        return SINGLE_PROCESS  # RANK alone, without a world, is some other tool's variable
    rank = _int_env("RANK", 0)
    local_rank = _int_env("LOCAL_RANK", 0)
    local_world_size = _int_env("LOCAL_WORLD_SIZE", world_size)
    if world_size < 1 or not 0 <= rank < world_size or not 0 <= local_rank < local_world_size:
        raise ConfigError(
            f"inconsistent torchrun environment: RANK={rank}, WORLD_SIZE={world_size}, "
            f"LOCAL_RANK={local_rank}, LOCAL_WORLD_SIZE={local_world_size}"
        )
    return World(rank, world_size, local_rank, local_world_size)


def start(world: World, device: torch.device) -> torch.device:
    """Join the process group (nccl on CUDA, gloo on CPU) and return this rank's device: on
    CUDA the GPU numbered LOCAL_RANK, on CPU the CPU with the cores shared between the ranks."""
    if not world.distributed:
        return device
    import torch
    import torch.distributed as dist

    if device.type == "mps":
        raise ConfigError(
            "multi-process training needs CUDA or the CPU, not MPS: use ", Setting("device"), " cpu"
        )
    if device.type == "cuda":
        if world.local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"local rank {world.local_rank} has no GPU: this machine has "
                f"{torch.cuda.device_count()}; start at most that many processes per node"
            )
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        # Each process would otherwise start one thread per core and the ranks would fight.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world.local_world_size))
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=PROCESS_GROUP_TIMEOUT)
    return device


def stop(world: World) -> None:
    """Leave the process group (a no-op for a single process)."""
    if world.distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


class PeerFailed(VAEError):
    """Another rank failed; that rank reports why (this one stays silent)."""

    quiet = True


def run_together(world: World, device: torch.device, action: Callable[[], T]) -> T:
    """Run ``action`` on every rank; if it fails on any, fail on all, so that no rank is left
    waiting in a collective for one that has gone. One rank reports the error: rank 0 when it
    failed, else the lowest failing rank; the others raise a silent :class:`PeerFailed`."""
    if not world.distributed:
        return action()
    error: VAEError | OSError | None = None
    try:
        result = action()
    except (VAEError, OSError) as caught:
        error = caught
    failed = error is not None
    import torch

    # Element 0: any rank failed; element 1: world_size - lowest failing rank (0 when none).
    flags = torch.tensor(
        [float(failed), float(world.world_size - world.rank) if failed else 0.0], device=device
    )
    world.all_reduce_max(flags)
    if flags[0].item() == 0:
        return result
    reporter_rank = world.world_size - int(flags[1].item())
    if error is not None and world.rank == reporter_rank:
        if world.rank != 0 and isinstance(error, VAEError):
            error.prefix(f"rank {world.rank}: ")
            error.quiet = False  # type: ignore[attr-defined]
        raise error
    exit_code = error.exit_code if isinstance(error, VAEError) else 1
    peer = PeerFailed(f"training process of rank {reporter_rank} failed; see its message")
    peer.exit_code = exit_code
    raise peer
