"""The flag spellings of the projects vae replaces, accepted as hidden aliases.

``train``'s aliases are part of each setting's definition (vae.config); the other commands'
are listed here.

Each command has its own table, so an alias only exists where it does not clash with one of
that command's options. Aliases are rewritten to vae's own flags before parsing; they are not
listed in ``--help`` (the README has a "Coming from..." table). ``--snake_case`` spellings of any
option are accepted too, as argparse-based projects write them.
"""

from __future__ import annotations

from collections.abc import Iterable

from vae.config import train_aliases

# alias -> the flags it stands for (a value given to the alias follows them).
_CHECKPOINT = {"--checkpoint-path": ["--checkpoint"]}
ALIASES: dict[str, dict[str, list[str]]] = {
    "train": train_aliases(),  # defined beside each setting, in vae.config
    "generate": {**_CHECKPOINT, "--output-path": ["--output"]},
    "inference": {**_CHECKPOINT, "--output-path": ["--output-dir"]},
    "evaluate": {
        **_CHECKPOINT,
        "--output-path": ["--output"],
        "--out-dataset": ["--ood-dataset"],
    },
    "info": {"--checkpoint-path": []},  # info takes the path as its argument
    "interpolate": {**_CHECKPOINT, "--output-path": ["--output"]},
    "traverse": {**_CHECKPOINT, "--output-path": ["--output"]},
    "latent-map": {**_CHECKPOINT, "--output-path": ["--output"]},
    "manifold": {**_CHECKPOINT, "--output-path": ["--output"]},
}


def rewrite_aliases(command: str, args: Iterable[str], known: Iterable[str]) -> list[str]:
    """``args`` with ``command``'s aliases replaced by vae's flags and ``--snake_case`` spellings
    of ``known`` flags (or of aliases) hyphenated; everything after ``--`` is left alone."""
    table = ALIASES.get(command, {})
    known = set(known)
    rewritten: list[str] = []
    arguments = list(args)
    for index, token in enumerate(arguments):
        if token == "--":
            return rewritten + arguments[index:]
        if not token.startswith("--"):
            rewritten.append(token)
            continue
        name, equals, value = token.partition("=")
        hyphenated = name.replace("_", "-")
        if hyphenated != name and (hyphenated in known or hyphenated in table):
            name = hyphenated
        if name in table:
            rewritten += table[name]
            if equals:
                rewritten.append(value)
            continue
        rewritten.append(name + equals + value)
    return rewritten
