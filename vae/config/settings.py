"""How one setting is defined, read and checked: its Option (help text, flags, aliases, choices,
bounds, the docs' wording, whether a resume may change it), the conversion of a YAML or
command-line value to its type, and the one-line error that names the setting at fault."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, NoReturn

from vae import limits
from vae.errors import ConfigError, Setting, shown

SEED_MAX = 2**64 - 1  # torch's generators take unsigned 64-bit seeds


@dataclass(frozen=True)
class Option:
    """How a setting is given and checked: the one definition the ``train`` options, the YAML
    validation and the docs' option table are generated from (see ``setting``)."""

    help: str
    flags: tuple[str, ...] = ()  # Typer declarations; () -> --<name-with-hyphens>
    aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)  # alias -> its expansion
    choices: tuple[Any, ...] | None = None
    choices_text: str | None = None  # how an error lists the choices
    at_least: float | None = None  # lower bound, inclusive (each item of a list)
    above: float | None = None  # lower bound, exclusive
    low_text: str | None = None  # what an error expects below the bound
    at_most: float | None = None  # upper bound: a vae.limits constant for sizes
    high_text: str | None = None
    doc: str | None = None  # the docs' meaning, where it says more than --help
    doc_default: str | None = None  # the docs' default column, where the value says too little
    # A resume may change it (``train --resume``): where and how the run is carried on, not
    # what it computes, so the resumed run stays the same run.
    resumable: bool = False
    # The word that asks for the default None where None means a rule resolved later
    # (``conv_widths``: "auto", from the image size), on the command line and in YAML.
    none_word: str | None = None


def setting(default: Any = None, *, factory: Any = None, **option: Any) -> Any:
    """A config field with its Option in the field's metadata (``factory`` for list defaults)."""
    metadata = {"option": Option(**option)}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def invalid_value(name: str, value: Any, *expected: str) -> NoReturn:
    """Raise the ConfigError 'invalid value for NAME: VALUE (expected ...)'; ``expected`` may
    name other settings (vae.errors.Setting)."""
    raise ConfigError(
        "invalid value for ", Setting(name), f": {shown(value)} (expected ", *expected, ")"
    )


def check_choice_and_low(name: str, option: Option, value: Any) -> None:
    """The checks of one setting's Option that come before the rules joining settings: one of
    its choices, at or above its lower bound (a float also within its upper one)."""
    if value is None:
        return
    if option.choices is not None and value not in option.choices:
        invalid_value(
            name, value, option.choices_text or "one of " + ", ".join(map(str, option.choices))
        )
    items = value if isinstance(value, list) else [value]
    if option.at_least is not None and any(not item >= option.at_least for item in items):
        invalid_value(name, value, option.low_text or _at_least_text(option.at_least))
    if option.above is not None and any(not item > option.above for item in items):
        invalid_value(name, value, option.low_text or "positive")
    if isinstance(value, float):  # a range, such as (0, 1]: checked whole, before finiteness
        check_high(name, option, value)


def _at_least_text(bound: float) -> str:
    return "zero or positive" if bound == 0 else f"at least {bound}"


def check_high(name: str, option: Option, value: Any) -> None:
    """The upper bound of one setting's Option (for a list: its items and its length)."""
    if value is None or option.at_most is None:
        return
    if isinstance(value, list):
        if len(value) > limits.MAX_LAYERS or max(value, default=0) > option.at_most:
            invalid_value(name, value, option.high_text or f"at most {option.at_most}")
    elif not value <= option.at_most:
        invalid_value(name, value, option.high_text or f"at most {option.at_most}")


def check_seed(seed: int, flag: str = "seed", count: int = 1) -> None:
    """Raise ConfigError unless ``seed`` .. ``seed + count - 1`` are all valid seeds; ``flag``
    is the setting's name."""
    if not 0 <= seed <= SEED_MAX - (count - 1):
        invalid_value(flag, seed, f"an integer from 0 to {SEED_MAX - (count - 1)}")


def parse_int_list(text: str | list[Any] | tuple[Any, ...], key: str = "sizes") -> list[int]:
    """'512,256' or [512, 256] -> [512, 256]; an empty string gives []."""
    if isinstance(text, list | tuple):
        items = list(text)
    else:
        items = [part for part in re.split(r"[,\s]+", str(text).strip()) if part]
    try:
        return [int(item) for item in items]
    except (TypeError, ValueError):
        raise ConfigError(
            "invalid value for ",
            Setting(key),
            f": {text!r} (expected comma-separated integers)",
        ) from None


def parse_warmup(text: str | int | float) -> tuple[float, str]:
    """'10' or '10epochs' -> (10.0, 'epochs'); '2000steps' or '2000s' -> (2000.0, 'steps')."""
    match = re.fullmatch(
        r"\s*([0-9]*\.?[0-9]+)\s*(e|ep|epoch|epochs|s|step|steps)?\s*", str(text).lower()
    )
    if not match:
        raise ConfigError(
            "invalid value for ",
            Setting("beta_warmup"),
            f": {text!r} (expected a number of epochs, e.g. 10, or of steps, e.g. 2000steps)",
        )
    unit = "steps" if (match.group(2) or "e").startswith("s") else "epochs"
    return float(match.group(1)), unit


def coerce(kind: str, key: str, value: Any, source: str, none_word: str | None = None) -> Any:
    """Convert a YAML or command-line ``value`` of setting ``key`` to its field type ``kind``
    (the annotation's text, e.g. ``int | None``), with a one-line error on failure;
    ``none_word`` (the Option's) stands for None."""
    if none_word is not None and isinstance(value, str) and value.strip().lower() == none_word:
        value = None
    if value is None:
        if "None" in kind:
            return None
        raise ConfigError(f"{source}: option '{key}' cannot be empty")
    try:
        if kind.startswith("list[int]"):
            return parse_int_list(value, key)
        if kind.startswith("bool"):
            if isinstance(value, bool):
                return value
            lowered = str(value).strip().lower()
            if lowered in ("true", "yes", "1", "on"):
                return True
            if lowered in ("false", "no", "0", "off"):
                return False
            raise ValueError(value)
        if kind.startswith("int"):
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if kind.startswith("float"):
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if kind.startswith("str"):
            if isinstance(value, dict | list):
                raise ValueError(value)
            return str(value)
    except (TypeError, ValueError):
        expected = kind.split(" |")[0]
        raise ConfigError(
            f"{source}: invalid value for ", Setting(key), f": {value!r} (expected {expected})"
        ) from None
    return value
