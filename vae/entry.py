"""The installed commands' entry points (pyproject's [project.scripts]) and ``python -m vae``:
``vae`` and one for each of ``vae.commands.COMMANDS``.

Each one first installs the Ctrl-C / SIGTERM handler, then imports the command line (Typer,
Rich and, for most commands, torch take a while to import): a signal at any moment after the
first line then ends the process with one line on stderr and exit 130 (143 for SIGTERM), never a
traceback. It also turns Typer's and Click's own usage errors (an unknown option, a missing
value, a bad number) into one ``error:`` line and exit 2 instead of a boxed message.
"""

from __future__ import annotations

import os
import sys

from vae.blas_threads import SMALL_NUMPY_COMMANDS, use_one_blas_thread
from vae.commands import COMMANDS

# Not `from typing import ...`: importing typing would delay the signal handler (see interrupts).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, NoReturn


def _under_torchrun() -> bool:
    """A worker of a multi-process torchrun (the same test as vae.distributed, without its
    error for a malformed WORLD_SIZE: that is reported later, by the command)."""
    try:
        return int(os.environ.get("WORLD_SIZE") or 1) > 1
    except ValueError:
        return False


def _command(app_name: str) -> str:
    """The command this process runs: ``explore`` for the ``explore`` script and for ``vae
    explore`` alike (empty for a bare ``vae``)."""
    if app_name == "app":
        return sys.argv[1] if len(sys.argv) > 1 else ""
    return app_name.removesuffix("_app")


def _prepare_threads(app_name: str) -> None:
    """Thread settings read as NumPy and torch load (the command line imports NumPy): the
    explorer keeps its threads and malloc arenas few (vae.explore.footprint), and the commands
    of small NumPy work use one OpenBLAS thread (vae.blas_threads)."""
    command = _command(app_name)
    if command in SMALL_NUMPY_COMMANDS:
        use_one_blas_thread()
    if command == "explore":
        from vae.explore.footprint import reserve_less

        reserve_less()


def _run(app_name: str) -> NoReturn:
    """Run ``vae.cli.<app_name>`` and exit with its code; see the module's docstring."""
    from vae import interrupts

    # Under torchrun, SIGTERM keeps its default until training installs its own handler: it is
    # how torchrun stops workers, and there it has always ended them at once.
    interrupts.install_exit_handlers(sigterm=not _under_torchrun())
    _prepare_threads(app_name)
    try:
        code = _invoke(app_name)
    except KeyboardInterrupt:
        code = interrupts.report_interrupt()
    # Typer ends a command on a KeyboardInterrupt during option parsing with exit 130 and no
    # word: say what happened, with the signal's own code.
    if interrupts.interrupted():
        code = interrupts.report_interrupt()
    interrupts.exit_directly_on_signal()
    if interrupts.stopped_by_signal():
        # CPython remembers a KeyboardInterrupt that escaped code compiled from a string (how
        # dataclasses and namedtuples build their methods) and, under ``python -m``, kills
        # itself with SIGINT at exit even though we handled it: end here, with our own code.
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)
    sys.exit(code)


def _invoke(app_name: str) -> int:
    """The command's exit code; usage errors are reported here, as one line."""
    import importlib

    import typer

    from vae import cli
    from vae.reporting import print_error

    # Typer carries its own copy of Click (typer._click) in recent versions and uses the click
    # package in older ones: take the exception classes from wherever its BadParameter lives.
    exceptions = importlib.import_module(typer.BadParameter.__module__)
    no_args_is_help = getattr(exceptions, "NoArgsIsHelpError", ())
    abort = (typer.Abort, getattr(exceptions, "Abort", typer.Abort))
    app = getattr(cli, app_name)
    try:
        # standalone_mode=False: Click's errors come here instead of being printed in a box.
        result: Any = app(standalone_mode=False)
    except no_args_is_help:
        return 2  # the help was printed already, as without arguments before
    except exceptions.UsageError as error:
        print_error(_usage_message(error))
        return error.exit_code
    except exceptions.ClickException as error:
        print_error(_lowered(error.format_message()))
        return error.exit_code
    except abort:  # end of input at a prompt
        print_error("aborted")
        return 1
    # An int is the code of a typer.Exit (--help, --version, a handled error); None is success.
    return result if isinstance(result, int) else 0


def _usage_message(error: Any) -> str:
    """Click's message in the CLI's own style, with where to find the right spelling."""
    message = _lowered(error.format_message())
    context = getattr(error, "ctx", None)
    if context is not None and context.command.get_help_option(context) is not None:
        message = (
            f"{message.rstrip('.')} (see {context.command_path} {context.help_option_names[0]})"
        )
    return message


def _lowered(message: str) -> str:
    """'Invalid value for ...' -> 'invalid value for ...', as the CLI's own errors read;
    a word in capitals (an acronym) stays as it is."""
    if len(message) > 1 and message[0].isupper() and not message[1].isupper():
        return message[0].lower() + message[1:]
    return message


def vae() -> NoReturn:
    """The ``vae`` command (every subcommand)."""
    _run("app")


def _script(command: str) -> Callable[[], NoReturn]:
    """The entry point of the installed ``command`` script: ``vae.cli.<command>_app``."""

    def run() -> NoReturn:
        _run(f"{command}_app")

    run.__name__ = run.__qualname__ = command
    run.__doc__ = f"The ``{command}`` command."
    return run


# ``vae.entry:train`` and the others, as pyproject's [project.scripts] names them.
globals().update({command: _script(command) for command in COMMANDS})
