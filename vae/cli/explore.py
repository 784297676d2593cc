"""``explore``: serve the interactive latent-space explorer for a checkpoint."""

from __future__ import annotations

from typing import Annotated

import typer

from vae.checkpoint import DEFAULT_CHECKPOINT
from vae.cli.common import (
    CheckpointOption,
    DataDirOption,
    DatasetOption,
    DownloadOption,
    LimitOption,
    check_positive,
    handle_errors,
)
from vae.errors import ConfigError

MAX_PORT = 65535


@handle_errors
def explore_command(
    checkpoint: CheckpointOption = DEFAULT_CHECKPOINT,
    host: Annotated[
        str,
        typer.Option(
            help="Address to listen on; other than loopback, anyone who reaches it can use it."
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free port).")] = 8000,
    open_browser: Annotated[
        bool, typer.Option("--open/--no-open", help="Open the page in the default browser.")
    ] = False,
    dataset: DatasetOption = None,
    data_dir: DataDirOption = None,
    download: DownloadOption = False,
    limit: LimitOption = None,
) -> None:
    """Explore a checkpoint's latent space in the browser, served on this machine.

    Sliders, samples, encodings, interpolations and the latent map; Ctrl-C stops it.
    """
    from vae import interrupts
    from vae.explore.server import is_loopback, serve
    from vae.reporting import RichReporter

    if not 0 <= port <= MAX_PORT:
        raise ConfigError(f"invalid value for --port: {port} (expected 0 to {MAX_PORT})")
    if limit is not None:
        check_positive(limit=limit)
    reporter = RichReporter()
    if not is_loopback(host):
        reporter.warning(
            f"--host {host}: the explorer is reachable from other machines, without a password"
        )
    try:
        serve(
            checkpoint, host, port, reporter,
            dataset=dataset, data_dir=data_dir, download=download, limit=limit,
            open_browser=open_browser,
        )  # fmt: skip
    except KeyboardInterrupt:
        # Ctrl-C is how the explorer stops: the server has shut down cleanly by now.
        raise typer.Exit(interrupts.report_interrupt("stopped the explorer")) from None
