"""Ctrl-C and SIGTERM: one line on stderr and exit 130 / 143, never a traceback; training
stops at a step boundary with its state saved. No torch, Typer or Rich here, so that the entry
points (vae.entry) can install the handlers before their slow imports."""

from __future__ import annotations

import os
import signal
import sys
import time

# The entry points import this module first thing, before a signal handler is installed: so
# only modules that import in a moment (contextlib, threading, typing take milliseconds, and
# are imported where used). Type checkers know this spelling of TYPE_CHECKING.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from contextlib import AbstractContextManager
    from typing import Any

# Under torchrun a Ctrl-C reaches each worker twice: from the terminal and forwarded by torchrun.
DUPLICATE_SIGNAL_SECONDS = 2.0

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
SAVED_FILES = "files from the last completed save are intact"

# What the process knows about a stop signal, shared by the entry handler, graceful_interrupt
# and the CLI's error handler: the first signal decides the exit code (128 + its number).
_RUNNING, _LEAVING, _REPORTING, _REPORTED = range(4)
_state = {"phase": _RUNNING, "signal": 0, "raise": True}


def note_signal(signum: int) -> None:
    """Remember that ``signum`` asked this process to stop (the first one decides the exit code)."""
    # _REPORTED too: a process that runs several commands (tests) starts over with each one.
    if _state["phase"] in (_RUNNING, _REPORTED):
        _state["phase"] = _LEAVING
        _state["signal"] = signum


def interrupted() -> bool:
    """True once a stop signal arrived and its line has not been written yet."""
    return _state["phase"] == _LEAVING


def stopped_by_signal() -> bool:
    """True once a stop signal has been reported (the process is ending because of it)."""
    return _state["phase"] in (_REPORTING, _REPORTED) and bool(_state["signal"])


def interrupt_exit_code() -> int:
    """128 + the stop signal's number (130 for Ctrl-C, 143 for SIGTERM); 130 when none came,
    as for a KeyboardInterrupt raised by Python's own handler."""
    return 128 + (_state["signal"] or signal.SIGINT)


def interrupt_line() -> str:
    """The line said when a command stops on a signal outside training's graceful stop."""
    if _state["signal"] == signal.SIGTERM:
        return f"stopped by SIGTERM; {SAVED_FILES}"
    return f"interrupted; {SAVED_FILES}"


def report_interrupt(text: str | None = None) -> int:
    """Write the one line for a stop (``text`` or :func:`interrupt_line`) and return the exit code.

    Stop signals are blocked while the line is written, so that a second Ctrl-C can neither cut
    it nor add a traceback; one arriving afterwards ends the process at once with the same code.
    """
    import threading

    from vae.reporting import print_error

    if _state["phase"] in (_RUNNING, _REPORTED):  # a KeyboardInterrupt none of ours raised
        _state["signal"] = signal.SIGINT
    on_main_thread = threading.current_thread() is threading.main_thread()
    if on_main_thread:
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        _state["phase"] = _REPORTING
        print_error(text if text is not None else interrupt_line(), prefix="")
        _state["phase"] = _REPORTED
    finally:
        if on_main_thread:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    return interrupt_exit_code()


def _exit_on_signal(signum: int, frame: Any) -> None:
    """The entry points' handler: the first stop signal unwinds the command with a
    KeyboardInterrupt (so that files being written are cleaned up); any later one, or one after
    the command returned, ends the process at once, with the line if it is not out yet."""
    phase = _state["phase"]
    if phase == _REPORTING:
        return  # the line is being written; the process exits right after it
    if phase == _RUNNING:
        if _state["raise"] and _swallows_exceptions(frame):
            _deliver_again(signum)  # noted when it comes back, where it can unwind the command
            return
        note_signal(signum)
        if _state["raise"]:
            raise KeyboardInterrupt
    if phase != _REPORTED:
        _write_line_now(interrupt_line())
    os._exit(interrupt_exit_code())


def _swallows_exceptions(frame: Any) -> bool:
    """Whether a KeyboardInterrupt raised in ``frame`` would not unwind the command as one:

    - importlib's module-lock weakref callback prints an exception as "Exception ignored in:
      ..." with its traceback and drops it, so that the command would go on;
    - Python 3.11 turns an exception from a descriptor's ``__set_name__`` (run as a class is
      made, e.g. ``functools.cached_property`` while ``ipaddress`` is imported) into a
      RuntimeError, which would end the command with a traceback."""
    code = getattr(frame, "f_code", None)
    if (
        code is not None
        and code.co_name == "cb"
        and str(code.co_filename).startswith("<frozen importlib")
    ):
        return True
    if sys.version_info >= (3, 12):  # __set_name__'s exceptions propagate as they are
        return False
    while frame is not None:
        code = getattr(frame, "f_code", None)
        if code is not None and code.co_name == "__set_name__":
            return True
        frame = getattr(frame, "f_back", None)
    return False


def _deliver_again(signum: int) -> None:
    """Send ``signum`` to this process again in a moment, when the main thread has left the
    code that would swallow the KeyboardInterrupt (a daemon thread: it never delays an exit)."""
    import threading

    timer = threading.Timer(0.005, os.kill, (os.getpid(), signum))
    timer.daemon = True
    timer.start()


def _write_line_now(text: str) -> None:
    """One line on stderr without Python's buffers (the process ends right after)."""
    try:
        os.write(2, f"{text}\n".encode(errors="backslashreplace"))
    except OSError:  # stderr closed: the exit code still tells
        pass


def install_exit_handlers(sigterm: bool = True) -> None:
    """Make Ctrl-C (and SIGTERM when ``sigterm``) end the process with one line and exit
    130 (143), whatever it is doing: the entry points call this before anything else."""
    import atexit

    _state["raise"] = True
    signal.signal(signal.SIGINT, _exit_on_signal)
    if sigterm:
        signal.signal(signal.SIGTERM, _exit_on_signal)
    # Registered first, so run last: at the very end Python puts the default handlers back, and
    # a signal then would kill the process without its line (a mask would not do: another
    # thread, such as a BLAS worker, would take the signal with the default action).
    atexit.register(_ignore_stop_signals)


def _ignore_stop_signals() -> None:
    """Ignore stop signals for the last moments of the process: its work and output are done,
    and Python leaves an ignored signal ignored while it shuts down."""
    for number in STOP_SIGNALS:
        signal.signal(number, signal.SIG_IGN)


def exit_directly_on_signal() -> None:
    """From now on a stop signal ends the process at once (the command has returned: there is
    nothing left to unwind, and a KeyboardInterrupt here would escape every handler)."""
    _state["raise"] = False


def graceful_interrupt(distributed: bool = False) -> AbstractContextManager[Callable[[], bool]]:
    """The first Ctrl-C asks the loop to stop at the next step boundary (so the saved state is
    consistent); a second one interrupts at once, leaving the files from the last save.

    SIGTERM is a stop request too (schedulers stop jobs with it); outside torchrun it makes the
    exit code 143 instead of 130. ``distributed`` (a torchrun worker): a repeat within
    DUPLICATE_SIGNAL_SECONDS counts as the same request (torchrun forwards the terminal's Ctrl-C
    and then sends SIGTERM), and the exit code stays 130.
    """
    import contextlib

    return contextlib.contextmanager(_graceful_interrupt)(distributed)


def _graceful_interrupt(distributed: bool) -> Iterator[Callable[[], bool]]:
    import threading

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
        if not distributed:  # under torchrun the exit code stays 130, as before
            note_signal(signum)
        requested.set()

    # SIGTERM is how schedulers (Slurm, Kubernetes) and torchrun stop a job: save, like Ctrl-C.
    signals = [signal.SIGINT, signal.SIGTERM]
    previous = {number: signal.signal(number, handler) for number in signals}
    try:
        yield requested.is_set
    finally:
        for number, old in previous.items():
            signal.signal(number, old)
