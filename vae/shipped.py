"""Where the files shipped in ``pretrained/`` are found: the one rule every command's default uses.

The shipped model and its evaluations sit in the project folder's ``pretrained/``, beside the
``vae`` package of a checkout installed by Poetry (an editable install). A command's default
names them relative to the current folder; run from anywhere else, the package's own project
folder is where they are.
"""

from __future__ import annotations

from pathlib import Path

# The folder holding the ``vae`` package: the project folder in a checkout (in an installed
# wheel it is site-packages, which has no pretrained/, so only the current folder counts).
PROJECT_FOLDER = Path(__file__).resolve().parents[1]


def shipped_path(default: Path) -> Path:
    """``default`` (a path relative to the project folder, such as
    ``pretrained/checkpoint_best.safetensors``) from the current folder when it exists there,
    else from the installed package's project folder when it exists there, else ``default``
    unchanged, whose absence its reader reports. Only for defaults: a path the user gave is
    always used as given."""
    if default.is_absolute() or default.exists():
        return default
    beside_package = PROJECT_FOLDER / default
    return beside_package if beside_package.exists() else default
