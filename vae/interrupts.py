"""Ctrl-C as a request: training stops at a step boundary with its state saved (no torch here,
so that the CLI can install the handler before its slow imports)."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

# Under torchrun a Ctrl-C reaches each worker twice: from the terminal and forwarded by torchrun.
DUPLICATE_SIGNAL_SECONDS = 2.0


@contextlib.contextmanager
def graceful_interrupt(distributed: bool = False) -> Iterator[Callable[[], bool]]:
    """The first Ctrl-C asks the loop to stop at the next step boundary (so the saved state is
    consistent); a second one interrupts at once, leaving the files from the last save.

    ``distributed`` (a torchrun worker): SIGTERM, which torchrun sends to stop its workers, is a
    stop request too, and a repeat within DUPLICATE_SIGNAL_SECONDS counts as the same request.
    """
    requested = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield requested.is_set
        return
    first_at: list[float] = []

    def handler(signum: int, frame: Any) -> None:
        if requested.is_set():
            if distributed and time.monotonic() - first_at[0] < DUPLICATE_SIGNAL_SECONDS:
                return
            raise KeyboardInterrupt
        first_at.append(time.monotonic())
        requested.set()

    signals = [signal.SIGINT, signal.SIGTERM] if distributed else [signal.SIGINT]
    previous = {number: signal.signal(number, handler) for number in signals}
    try:
        yield requested.is_set
    finally:
        for number, old in previous.items():
            signal.signal(number, old)
