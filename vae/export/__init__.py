"""A checkpoint exported as a folder to share as it is (the Hugging Face Hub's model layout):
``model.safetensors`` (the weights and vae metadata, without training state or local paths), a
model card ``README.md`` (the Hub's YAML front matter, then what the model is, how to load it,
its evaluation) and ``samples.png`` (drawn as ``generate`` draws). Nothing outside the folder is
written; the card is built from the exported metadata alone, so it names no local path either.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from vae.checkpoint import load_checkpoint, save_checkpoint
from vae.checkpoint.locate import locate_checkpoint
from vae.errors import ConfigError, Setting
from vae.export.card import model_card
from vae.export.evaluation_record import best_record, evaluation_figures, find_evaluation
from vae.export.files import (
    CARD_NAME,
    EXPORTED_FILES,
    MODEL_NAME,
    SAMPLE_COLUMNS,
    SAMPLE_COUNT,
    SAMPLE_SEED,
    SAMPLES_NAME,
)
from vae.export.metadata import named_dataset, shareable_metadata
from vae.fileio import atomic_write_text

_LICENSE = re.compile(r"[a-z0-9][a-z0-9.+-]{0,63}")


@dataclass
class Export:
    """What ``export_checkpoint`` wrote: the folder, the checkpoint it came from, and the
    evaluation JSONs whose figures the card reports (one, or one per seed of a protocol whose
    seeds were written to separate files; empty when there was none)."""

    folder: Path
    checkpoint: Path
    evaluations: list[Path]


def export_checkpoint(
    source: str | Path,
    out_dir: str | Path,
    *,
    license: str | None = None,
    evaluation: str | Path | None = None,
    force: bool = False,
    hub_source: str | None = None,
) -> Export:
    """Export the checkpoint ``source`` (a ``.safetensors`` file, a run folder: its
    ``checkpoint_best.safetensors``, or a ``hf://`` reference) into ``out_dir`` (see the
    module's docstring); ``hub_source`` (``hf://OWNER/NAME[@BRANCH]``), when the folder is bound
    for the Hub, makes the card's examples load it from there. A non-empty
    ``out_dir`` is refused unless ``force`` (which replaces the three files and leaves any other
    alone); ``evaluation`` (else an ``evaluation*.json`` beside the checkpoint made of it) gives
    the card's figures; ``license`` is the card's Hub license identifier (left out when None)."""
    folder = Path(out_dir)
    _check_license(license)
    _check_out_dir(folder, force)
    checkpoint = locate_checkpoint(source)  # after the checks: a hf:// source downloads
    model, content = load_checkpoint(checkpoint)  # every check a reader makes
    record, record_paths = find_evaluation(checkpoint, content.sha256, evaluation)
    metadata = shareable_metadata(content.header.metadata)
    folder.mkdir(parents=True, exist_ok=True)
    model_path = folder / MODEL_NAME
    # The model's own tensors and metadata only: no optimizer or rng tensors, no training state.
    save_checkpoint(model_path, model, metadata)
    from vae.images import save_grid
    from vae.sampling import sample_images

    # From the exported file, as ``generate --checkpoint model.safetensors`` draws them.
    samples = sample_images(model_path, SAMPLE_COUNT, SAMPLE_SEED)
    save_grid(samples, folder / SAMPLES_NAME, SAMPLE_COLUMNS)
    record_names = [path.name for path in record_paths]
    card = model_card(metadata, record, license, record_names, hub_source=hub_source)
    atomic_write_text(folder / CARD_NAME, card)
    return Export(folder, checkpoint, record_paths)


def _check_license(license: str | None) -> None:
    if license is not None and not _LICENSE.fullmatch(license):
        raise ConfigError(
            "invalid value for ",
            Setting("license"),
            f": {license!r} (a Hub license identifier such as mit, apache-2.0, cc-by-4.0)",
        )


def _check_out_dir(folder: Path, force: bool) -> None:
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{folder} is a file, not a folder: give the folder to export into")
    if folder.is_dir() and not force and any(folder.iterdir()):
        raise ConfigError(
            f"{folder} is not empty: export into a new or empty folder, or pass ",
            Setting("force"),
            f" to replace its {', '.join(EXPORTED_FILES)}",
        )


__all__ = [
    "CARD_NAME",
    "EXPORTED_FILES",
    "MODEL_NAME",
    "SAMPLES_NAME",
    "Export",
    "best_record",
    "evaluation_figures",
    "export_checkpoint",
    "model_card",
    "named_dataset",
    "shareable_metadata",
]
