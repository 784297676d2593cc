"""Run the explorer: bind the address, start the background loads, serve with uvicorn until
Ctrl-C.

The socket is bound here, before uvicorn starts, so that a port in use is one clear error
(uvicorn would log it and exit) and ``port=0`` picks a free port whose address is then known.
Connections are served through ``vae.explore.connections`` (a limit on open connections,
deadlines on requests), and the process keeps its threads and malloc arenas few
(``vae.explore.footprint``).
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from vae.errors import ConfigError, VAEError
from vae.explore.connections import (
    OUT_OF_RESOURCES,
    Guard,
    Limits,
    Tally,
    guarded_protocol,
    quiet_out_of_resources,
)
from vae.explore.footprint import reserve_less
from vae.reporting import Reporter

# Seconds the server waits for open connections (a browser keeps some) after Ctrl-C.
SHUTDOWN_SECONDS = 2
# File descriptors kept for the process's own files (the checkpoint, the data, libraries being
# loaded, the terminal) when the open-connection limit is fitted under `ulimit -n`.
RESERVED_FILES = 64
MIN_CONNECTIONS = 8
# After accept() fails for want of file descriptors, the listener says "nothing to accept" for
# this long; asyncio tries again after a second (asyncio.constants.ACCEPT_RETRY_DELAY).
ACCEPT_REST_SECONDS = 0.5


@dataclass(frozen=True)
class Address:
    """Where the explorer listens."""

    host: str
    port: int

    @property
    def url(self) -> str:
        """The page's address, with an IPv6 host in brackets."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _Listener(socket.socket):
    """A listening socket whose accept(), once it has failed for want of file descriptors
    (EMFILE) or memory, answers "nothing to accept" for ACCEPT_REST_SECONDS. asyncio's accept
    loop (selector_events._accept_connection) goes on calling accept() after such a failure, up
    to its backlog's number of times in a row (uvicorn's default: 2,048), and schedules a retry
    for each failure: thousands of failures a second, more every second, each with a traceback
    for the loop's exception handler."""

    _resting_until = 0.0

    def accept(self) -> tuple[socket.socket, Any]:
        if time.monotonic() < self._resting_until:
            raise BlockingIOError(errno.EAGAIN, "resting after running out of file descriptors")
        try:
            return super().accept()
        except OSError as error:
            if error.errno in OUT_OF_RESOURCES:
                self._resting_until = time.monotonic() + ACCEPT_REST_SECONDS
            raise


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host``:``port`` (0: any free port); VAEError when taken."""
    try:
        family, kind, protocol, _, address = socket.getaddrinfo(
            host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (socket.gaierror, UnicodeError) as error:
        raise ConfigError(f"invalid value for --host: {host!r} ({error})") from None
    listener = _Listener(family, kind, protocol)
    try:
        # A restarted explorer can take its port back while the old one's connections linger.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.listen(128)
    except OSError as error:
        listener.close()
        hint = " (pass another --port, or --port 0 for any free one)" if port else ""
        raise VAEError(f"cannot listen on {host}:{port}: {error.strerror or error}{hint}") from None
    listener.set_inheritable(True)
    return listener


def _descriptor_limit() -> int | None:
    """The process's soft limit on open files (`ulimit -n`), where there is one."""
    try:
        import resource
    except ImportError:  # not on Windows
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


def fitted(limits: Limits, descriptors: int | None) -> Limits:
    """``limits`` with at most as many open connections as ``descriptors`` (the `ulimit -n`)
    leaves room for: past the process's own files, half of it, as the event loop accepts up to
    the limit's number of connections at a time before it can close the ones over it (see
    serve's backlog). Closed at the limit rather than failing to accept for want of file
    descriptors."""
    if descriptors is None:
        return limits
    room = max(MIN_CONNECTIONS, (descriptors - RESERVED_FILES) // 2)
    return replace(limits, max_connections=min(limits.max_connections, room))


def _stopping_server(config: Any, stop: Callable[[], None], tally: Tally) -> Any:
    """A uvicorn server that, as it starts to stop (Ctrl-C, SIGTERM), first calls ``stop``: the
    app answers the work in progress at once instead of holding the stop for a decode. A request
    still open SHUTDOWN_SECONDS later (its body still arriving) is cancelled by uvicorn, which
    would say so in a traceback: its error log is off from then on, as the user asked to stop.
    Its event loop counts accept() failing for want of file descriptors in ``tally`` instead of
    writing a traceback per attempt, and what ``tally`` counted is written before it stops."""
    import logging

    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            handler = quiet_out_of_resources(tally, _descriptor_limit)
            asyncio.get_running_loop().set_exception_handler(handler)
            await super().startup(sockets)

        async def shutdown(self, sockets: Any = None) -> None:
            stop()
            tally.flush()
            logging.getLogger("uvicorn.error").disabled = True
            await super().shutdown(sockets)

    return Server(config)


def serve(
    checkpoint: Path,
    host: str,
    port: int,
    reporter: Reporter,
    *,
    dataset: str | None = None,
    data_dir: str | None = None,
    download: bool = False,
    limit: int | None = None,
    open_browser: bool = False,
    limits: Limits = Limits(),  # noqa: B008 - frozen
) -> None:
    """Serve the explorer for ``checkpoint`` until Ctrl-C (which ends this call with
    KeyboardInterrupt once the server has stopped); its test images are those of ``dataset``,
    else of the checkpoint's named dataset (see vae.data.load_test_set). ``limits``: open
    connections and request deadlines (fitted under `ulimit -n`)."""
    # Done already by the command (vae.entry, before the command line imports NumPy); here for
    # other callers, before torch and the explorer's threads start.
    reserve_less()
    import uvicorn

    from vae.explore.app import LOCAL_HOSTS, build_app
    from vae.explore.decoder import Decoder
    from vae.explore.encoder import Encoder

    decoder = Decoder(checkpoint)  # a bad checkpoint is an error before anything listens
    encoder = Encoder(
        checkpoint, dataset=dataset, data_dir=data_dir, download=download, limit=limit
    )
    listener = bind(host, port)
    address = Address(host, listener.getsockname()[1])
    allowed = list(LOCAL_HOSTS) if is_loopback(host) else ["*"]
    app = build_app(decoder, encoder, reporter, allowed_hosts=allowed)
    limits = fitted(limits, _descriptor_limit())
    tally = Tally(reporter, limits.report_seconds)
    config = uvicorn.Config(
        app,
        http=guarded_protocol(Guard(limits, tally)),
        # How many connections asyncio accepts at a time, each a file descriptor until the
        # guard has seen it (uvicorn's 2,048 would hold that many under a flood, far past the
        # limit), and the length of the kernel's queue of connections not yet accepted.
        backlog=limits.max_connections,
        # The loop whose accept() failures the server counts (uvloop, when installed, would be
        # uvicorn's choice, with failures and tracebacks of its own).
        loop="asyncio",
        # Not "warning": uvicorn would write a line for each malformed request or WebSocket
        # attempt (with advice to install packages) on the terminal of whoever runs the page.
        log_level="error",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=SHUTDOWN_SECONDS,
    )
    server = _stopping_server(config, app.state.stop, tally)
    reporter.message(f"vae explore: {address.url} (Ctrl-C stops it)")
    encoder.start(reporter)
    if open_browser:
        import webbrowser

        webbrowser.open(address.url)
    try:
        server.run(sockets=[listener])
    finally:
        listener.close()
