"""Run the explorer: bind the address, start the background loads, serve with uvicorn until
Ctrl-C.

The socket is bound here, before uvicorn starts, so that a port in use is one clear error
(uvicorn would log it and exit) and ``port=0`` picks a free port whose address is then known.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vae.errors import ConfigError, VAEError
from vae.reporting import Reporter

# Seconds the server waits for open connections (a browser keeps some) after Ctrl-C.
SHUTDOWN_SECONDS = 2


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


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host``:``port`` (0: any free port); VAEError when taken."""
    try:
        family, kind, protocol, _, address = socket.getaddrinfo(
            host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (socket.gaierror, UnicodeError) as error:
        raise ConfigError(f"invalid value for --host: {host!r} ({error})") from None
    listener = socket.socket(family, kind, protocol)
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


def _stopping_server(config: Any, stop: Callable[[], None]) -> Any:
    """A uvicorn server that, as it starts to stop (Ctrl-C, SIGTERM), first calls ``stop``: the
    app answers the work in progress at once instead of holding the stop for a decode. A request
    still open SHUTDOWN_SECONDS later (its body still arriving) is cancelled by uvicorn, which
    would say so in a traceback: its error log is off from then on, as the user asked to stop."""
    import logging

    import uvicorn

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: Any = None) -> None:
            stop()
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
) -> None:
    """Serve the explorer for ``checkpoint`` until Ctrl-C (which ends this call with
    KeyboardInterrupt once the server has stopped); its test images are those of ``dataset``,
    else of the checkpoint's named dataset (see vae.data.load_test_set)."""
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
    config = uvicorn.Config(
        app,
        # Not "warning": uvicorn would write a line for each malformed request or WebSocket
        # attempt (with advice to install packages) on the terminal of whoever runs the page.
        log_level="error",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=SHUTDOWN_SECONDS,
    )
    server = _stopping_server(config, app.state.stop)
    reporter.message(f"vae explore: {address.url} (Ctrl-C stops it)")
    encoder.start(reporter)
    if open_browser:
        import webbrowser

        webbrowser.open(address.url)
    try:
        server.run(sockets=[listener])
    finally:
        listener.close()
