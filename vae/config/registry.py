"""Every setting by its name: the section it belongs to, its field type and Option, the flag the
command line gives it with, the seed projects' spellings of it, and which a resume may change.
Each field name is unique across the sections."""

from __future__ import annotations

import dataclasses

from vae.config.sections import DataConfig, ModelConfig, ObjectiveConfig, TrainConfig
from vae.config.settings import Option

SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "objective": ObjectiveConfig,
    "train": TrainConfig,
}
FIELD_SECTIONS: dict[str, str] = {
    f.name: name for name, cls in SECTIONS.items() for f in dataclasses.fields(cls)
}
FIELD_TYPES: dict[str, str] = {
    f.name: str(f.type) for cls in SECTIONS.values() for f in dataclasses.fields(cls)
}
OPTIONS: dict[str, Option] = {
    f.name: f.metadata["option"] for cls in SECTIONS.values() for f in dataclasses.fields(cls)
}
# The settings ``train --resume`` may change (marked ``resumable`` where each is defined), in
# definition order.
RESUMABLE_SETTINGS: tuple[str, ...] = tuple(
    name for name, option in OPTIONS.items() if option.resumable
)


def flag_of(name: str) -> str:
    """The flag a setting is given with on the command line: ``latent_dim`` -> ``--latent-dim``,
    ``model_type`` -> ``--model``; a name that is no training setting (another command's
    option) is hyphenated the same way."""
    option = OPTIONS.get(name)
    if option is not None and option.flags:
        return option.flags[0].split("/")[0]
    return "--" + name.replace("_", "-")


def train_aliases() -> dict[str, list[str]]:
    """The seed projects' spellings of ``train`` options: alias -> the flags it stands for."""
    table: dict[str, list[str]] = {}
    for name, option in OPTIONS.items():
        for alias, expansion in option.aliases.items():
            table[alias] = list(expansion) or [flag_of(name)]
    return table
