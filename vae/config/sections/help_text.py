"""Wording shared by the settings' help texts."""

from __future__ import annotations

from vae import limits


def choices_text(values: tuple[str, ...]) -> str:
    """The choices of a setting as its help lists them: "a, b, c"."""
    return ", ".join(values)


def layers_text(bound: int) -> str:
    """The upper bound of a list of layer sizes, as its error says it."""
    return f"at most {limits.MAX_LAYERS} sizes of at most {bound}"
