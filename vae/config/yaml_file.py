"""A run configuration as a YAML file (``runs/<name>/config.yaml``, ``train --config``): read
with one-line errors for a missing, unreadable or malformed file, and written resolved. PyYAML
is imported only when a file is read or written."""

from __future__ import annotations

from pathlib import Path

from vae.config.run_config import RunConfig
from vae.errors import ConfigError


def load_config_file(path: str | Path) -> RunConfig:
    """Read a YAML run configuration (as written to ``runs/<name>/config.yaml``)."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"configuration file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read configuration file {path}: {error}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        reason = getattr(error, "problem", None) or str(error).splitlines()[0]
        if mark is not None:
            reason += f" at line {mark.line + 1}, column {mark.column + 1}"
        raise ConfigError(f"{path} is not valid YAML: {reason}") from None
    except RecursionError:  # PyYAML composes nested lists and mappings recursively
        raise ConfigError(f"{path} is not a run configuration: nested too deeply") from None
    return RunConfig.from_dict(raw or {}, source=str(path))


def config_to_yaml(config: RunConfig) -> str:
    """The YAML text of a resolved configuration."""
    import yaml

    return yaml.safe_dump(config.to_dict(), sort_keys=False)
