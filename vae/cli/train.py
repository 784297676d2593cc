"""``train``: its options are generated from the settings' definition in vae.config."""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from vae.cli.common import handle_errors, is_main_process, say
from vae.config import (
    RESUMABLE_SETTINGS,
    SECTIONS,
    Option,
    RunConfig,
    flag_of,
    load_config_file,
)
from vae.errors import ConfigError


@dataclass(frozen=True)
class TrainSetting:
    """One training setting as the ``train`` command offers it."""

    name: str  # the config field
    option: Option
    default: Any  # as the command line shows and parses it (lists: "32,64")
    hint: Any  # the type Typer parses

    @property
    def flags(self) -> tuple[str, ...]:
        """The flag declarations (``--download/--no-download``), the field name hyphenated
        where the Option gives none."""
        return self.option.flags or ("--" + self.name.replace("_", "-"),)


def train_settings() -> list[TrainSetting]:
    """Every field of the config sections, in definition order, as a ``train`` option."""
    defaults = RunConfig()
    settings = []
    for section_name, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        for item in dataclasses.fields(cls):
            default = getattr(getattr(defaults, section_name), item.name)
            hint = hints[item.name]
            if "list" in str(hint):  # given as comma-separated text, parsed by the config
                hint = str | None if default is None else str
                default = None if default is None else ",".join(str(v) for v in default)
            settings.append(TrainSetting(item.name, item.metadata["option"], default, hint))
    return settings


# The options that are no setting: where the settings come from, and how the run reports.
_LEADING = [
    inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context),
    inspect.Parameter(
        "run_name",
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        default=None,
        annotation=Annotated[
            str | None,
            typer.Argument(
                help="Run folder name under --runs-dir (default: dataset-arch-timestamp)."
            ),
        ],
    ),
    inspect.Parameter(
        "config_file",
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        default=None,
        annotation=Annotated[
            Path | None,
            typer.Option(
                "--config", help="YAML file of options (a run's config.yaml); flags override it."
            ),
        ],
    ),
    inspect.Parameter(
        "resume",
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        default=None,
        annotation=Annotated[
            Path | None,
            typer.Option(help="Continue the run in this folder exactly where it stopped."),
        ],
    ),
]
_TRAILING = [
    inspect.Parameter(
        "quiet",
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        default=False,
        annotation=Annotated[bool, typer.Option(help="No progress bar or per-epoch tables.")],
    ),
]
_CONTROL = {parameter.name for parameter in _LEADING + _TRAILING}

# The settings a resume may change, as the docs list them (marked ``resumable`` in vae.config).
_RESUMABLE_FLAGS = ", ".join(f"`{flag_of(name)}`" for name in RESUMABLE_SETTINGS)
# The docs' rows for those options (label, default, meaning), before and after the settings.
LEADING_ROWS = [
    (
        "`RUN_NAME`",
        "`<dataset>-<arch>-<timestamp>`",
        "run folder under `--runs-dir`; a folder holding checkpoints is never overwritten (one "
        "stopped before its first save may be started again)",
    ),
    (
        "`--config FILE.yaml`",
        "",
        "load options from YAML (a run's `config.yaml`); flags given on the command line "
        "override it",
    ),
    (
        "`--resume RUN_DIR`",
        "",
        "continue a run: model, optimizer, scheduler, beta position, epoch, step, best-so-far, "
        f"RNG states; only {_RESUMABLE_FLAGS} may change; the data found must be the run's "
        "own (checked against the checkpoint's fingerprint); a new `--epochs N` continues as if "
        "the run had been started with N (the cosine learning rate after epoch e is "
        "lr0 (1 + cos(pi e / N)) / 2) and must be after the epoch the run stands at",
    ),
]
TRAILING_ROWS = [("`--quiet / --no-quiet`", "off", "no progress bar or epoch tables")]


def _setting_parameter(setting: TrainSetting) -> inspect.Parameter:
    option = typer.Option(*setting.flags, help=setting.option.help)
    return inspect.Parameter(
        setting.name,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        default=setting.default,
        annotation=Annotated[setting.hint, option],
    )


def _with_setting_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """Give ``function`` (which takes the settings as ``**settings``) the signature Typer reads
    its options from: the control options around one option per setting."""
    parameters = [*_LEADING, *map(_setting_parameter, train_settings()), *_TRAILING]
    function.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    function.__annotations__ = {p.name: p.annotation for p in parameters}
    return function


@_with_setting_options
@handle_errors
def train_command(
    ctx: typer.Context,
    run_name: str | None,
    config_file: Path | None,
    resume: Path | None,
    quiet: bool,
    **settings: Any,
) -> None:
    """Train a VAE; writes runs/<RUN_NAME>/ with config, checkpoints, metrics and grids."""
    from vae.distributed import launched_by_torchrun
    from vae.interrupts import graceful_interrupt

    # Installed before torch is imported: a Ctrl-C during start-up then stops cleanly too.
    with graceful_interrupt(distributed=launched_by_torchrun()) as stop_requested:
        _train(ctx, run_name, config_file, resume, quiet, stop_requested)


def _train(
    ctx: typer.Context,
    run_name: str | None,
    config_file: Path | None,
    resume: Path | None,
    quiet: bool,
    stop_requested: Callable[[], bool],
) -> None:
    from vae.reporting import RichReporter
    from vae.training import train

    # Only the settings given on the command line override the file, the run or the defaults.
    given = {
        name: value
        for name, value in ctx.params.items()
        if name not in _CONTROL and ctx.get_parameter_source(name).name != "DEFAULT"
    }
    config, run_dir = _run_config(run_name, config_file, resume, given)
    result = train(
        config,
        run_dir,
        resume=resume is not None,
        reporter=RichReporter(quiet=quiet),
        stop_requested=stop_requested,
    )
    if is_main_process():
        say(f"best checkpoint: {result.best_path}")
        say(f"last checkpoint: {result.last_path}")


def _run_config(
    run_name: str | None, config_file: Path | None, resume: Path | None, given: dict[str, Any]
) -> tuple[RunConfig, Path]:
    """The validated configuration and the run folder of a new or resumed run."""
    from vae.run_folder import default_run_name
    from vae.training import prepare_resume

    if resume is not None:
        if run_name is not None or config_file is not None:
            raise ConfigError(
                "--resume takes the run folder; do not also give RUN_NAME or --config"
            )
        return prepare_resume(resume, given), resume
    if run_name is not None and (run_name in ("", ".", "..") or any(c in run_name for c in "/\\")):
        raise ConfigError(f"invalid RUN_NAME {run_name!r}: a folder name, without path separators")
    config = load_config_file(config_file) if config_file is not None else RunConfig()
    config.override(given).validate(given=given)
    return config, Path(config.train.runs_dir) / (run_name or default_run_name(config))
