"""A checkpoint's model with what its header says about its data, and the test images it is
shown: the one loader of ``evaluate``, the picture commands, ``inference``'s reconstructions
and the explorer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vae.backgrounds import background_warning
from vae.checkpoint import data_for_model, load_checkpoint, read_metadata
from vae.data import ImageSet, ImageSource, load_test_set
from vae.device import resolve_device

if TYPE_CHECKING:
    from vae.model import VAE
    from vae.reporting import Reporter


@dataclass
class TrainedModel:
    """A model read from its checkpoint: ``metadata`` its header's vae metadata, ``data_info``
    the data section with the image sizes of the model (checked against it), ``sha256`` of the
    bytes the model came from (None when the caller had loaded the model already)."""

    model: VAE
    metadata: dict[str, Any]
    data_info: dict[str, Any]
    sha256: str | None

    def test_images(self, source: ImageSource, reporter: Reporter | None = None) -> ImageSet:
        """The images of ``source`` shaped for the model: grey uint8, with the labels when the
        dataset has them (see :func:`vae.data.load_test_set`). Images mostly on light
        backgrounds for a model that draws dark ones are named in one warning to ``reporter``
        (see vae.backgrounds)."""
        images = load_test_set(self.data_info, source, reporter)
        if reporter is not None and (
            warning := background_warning(self.model, images.images, source.invert)
        ):
            reporter.warning(warning)
        return images


def load_trained_model(
    checkpoint: str | Path, device: str = "cpu", model: VAE | None = None
) -> TrainedModel:
    """The model of ``checkpoint`` on ``device`` (see vae.device), weights, metadata and sha256
    from one read of the file; with ``model`` (the checkpoint's, loaded by the caller) only the
    metadata is read."""
    if model is not None:
        metadata, sha256 = read_metadata(checkpoint), None
    else:
        model, loaded = load_checkpoint(checkpoint, resolve_device(device))
        metadata, sha256 = loaded.header.metadata, loaded.sha256
    return TrainedModel(model, metadata, data_for_model(metadata, model.spec), sha256)
