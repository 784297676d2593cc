"""The run configuration as a whole: its four sections, built from a nested mapping (a YAML
file, a checkpoint's copy) or set by name from the command line, then validated."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from vae.config.registry import FIELD_SECTIONS, FIELD_TYPES, OPTIONS, SECTIONS
from vae.config.rules import check_run_config
from vae.config.sections import DataConfig, ModelConfig, ObjectiveConfig, TrainConfig
from vae.config.settings import coerce
from vae.errors import ConfigError


@dataclass
class RunConfig:
    """Everything that defines a training run; ``config.yaml`` is this, resolved."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict, suitable for YAML and JSON."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "configuration") -> RunConfig:
        """Build a config from a nested dict; unknown sections or keys are an error."""
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
        config = cls()
        unknown_sections = [name for name in raw if name not in SECTIONS]
        if unknown_sections:
            names = ", ".join(f"'{name}'" for name in unknown_sections)
            known = ", ".join(SECTIONS)
            plural = "s" if len(unknown_sections) > 1 else ""
            raise ConfigError(f"{source}: unknown section{plural} {names} (known: {known})")
        for section_name, values in raw.items():
            if values is None:
                continue
            if not isinstance(values, dict):
                raise ConfigError(f"{source}: section '{section_name}' must be a mapping")
            section = getattr(config, section_name)
            unknown = [
                f"'{section_name}.{key}'"
                for key in values
                if FIELD_SECTIONS.get(key) != section_name  # a field, not a property or method
            ]
            if unknown:
                plural = "s" if len(unknown) > 1 else ""
                raise ConfigError(f"{source}: unknown option{plural} {', '.join(unknown)}")
            for key, value in values.items():
                setattr(section, key, _coerced(key, value, source))
        return config

    def override(self, values: dict[str, Any], source: str = "command line") -> RunConfig:
        """Set options by field name (the CLI's flags, vae.train's keywords); each field name is
        unique across sections. ``source`` says where the values came from in errors."""
        for key, value in values.items():
            section_name = FIELD_SECTIONS.get(key)
            if section_name is None:
                raise ConfigError(f"unknown option '{key}'")
            section = getattr(self, section_name)
            setattr(section, key, _coerced(key, value, source))
        return self

    def validate(self, given: Collection[str] = ()) -> RunConfig:
        """Check every value against its Option (choices, bounds), then the rules that join
        settings (vae.config.rules); raise ConfigError naming the setting at fault. ``given``:
        the settings a user set explicitly (some values are only a mistake when asked for)."""
        check_run_config(self, given)
        return self


def _coerced(key: str, value: Any, source: str) -> Any:
    """``value`` of setting ``key`` converted to its field's type (vae.config.settings.coerce)."""
    return coerce(FIELD_TYPES[key], key, value, source, OPTIONS[key].none_word)
