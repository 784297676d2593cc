"""Ctrl-C as a request: training stops at a step boundary with its state saved (no torch here,
so that the CLI can install the handler before its slow imports)."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any


@contextlib.contextmanager
def graceful_interrupt() -> Iterator[Callable[[], bool]]:
    """The first Ctrl-C asks the loop to stop at the next step boundary (so the saved state is
    consistent); a second one interrupts at once, leaving the files from the last save."""
    requested = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield requested.is_set
        return

    def handler(signum: int, frame: Any) -> None:
        if requested.is_set():
            raise KeyboardInterrupt
        requested.set()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield requested.is_set
    finally:
        signal.signal(signal.SIGINT, previous)
