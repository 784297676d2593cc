"""How a command fails: library errors, interrupts, a failed write and running out of memory
become one line on stderr and an exit code, spoken by one process of several (torchrun)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from vae import interrupts
from vae.config import flag_of
from vae.errors import ConfigError, Interrupted, VAEError
from vae.reporting import print_error

F = TypeVar("F", bound=Callable[..., Any])


def handle_errors(function: F) -> F:
    """Expected failures become 'error: ...' on stderr and the error's exit code; a setting
    named in a ConfigError is spelled as its flag (``latent_dim`` -> ``--latent-dim``)."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except Interrupted as error:
            # A requested stop is not an error; its message already says what happened. The
            # code says which signal asked: 130 for Ctrl-C, 143 for SIGTERM (vae.interrupts).
            if getattr(error, "quiet", not is_main_process()):
                raise typer.Exit(interrupts.interrupt_exit_code()) from None
            raise typer.Exit(interrupts.report_interrupt(str(error))) from None
        except VAEError as error:
            # Of several torchrun processes failing together, one (rank 0 by default) speaks.
            if not getattr(error, "quiet", not is_main_process()):
                print_error(error.render(flag_of))
            raise typer.Exit(error.exit_code) from None
        except OSError as error:  # disk full, permission denied, ...: say which file
            where = f": {error.filename}" if error.filename else ""
            print_error(f"{error.strerror or error}{where}")
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            raise typer.Exit(interrupts.report_interrupt()) from None
        except (MemoryError, RuntimeError) as error:
            if not _out_of_memory(error):
                raise
            print_error(
                "out of memory: use a smaller batch size, fewer or smaller images, or a "
                "smaller model"
            )
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _out_of_memory(error: BaseException) -> bool:
    """An allocation that failed: NumPy's MemoryError, torch's CPU allocator, CUDA or MPS
    (``torch.OutOfMemoryError`` is a RuntimeError whose message says so too)."""
    if isinstance(error, MemoryError):
        return True
    message = str(error)
    return "out of memory" in message or "can't allocate memory" in message


def is_main_process() -> bool:
    """True unless this is a torchrun worker other than rank 0 (which stays quiet)."""
    import os

    from vae.distributed import launched_by_torchrun

    try:
        distributed = launched_by_torchrun()
    except ConfigError:  # a malformed WORLD_SIZE: that error is being reported, by this process
        return True
    return not distributed or os.environ.get("RANK", "0") in ("", "0")
