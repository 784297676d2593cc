"""A model and the images it is shown, as every picture sees them (``Inputs``,
``load_inputs``): a Bernoulli model's test images binarized once with the evaluation seed, a
conditional model's each shown as its own class or as one chosen class."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from vae.classes import check_conditional, check_image_labels, class_index
from vae.data import ImageSource, to_float
from vae.errors import DataError, Setting
from vae.evaluation import prepare_evaluation_images
from vae.latent import Codes, chain_path, encode_images
from vae.model import VAE
from vae.trained_model import load_trained_model

if TYPE_CHECKING:
    from vae.reporting import Reporter


@dataclass
class Inputs:
    """A model and the images it is shown, as it sees them (Bernoulli models get test images
    binarized once with the evaluation seed; files are used as they are)."""

    model: VAE
    images: torch.Tensor  # float [N, C, H, W] in [0, 1]
    labels: torch.Tensor | None
    source: str
    metadata: dict[str, Any] = field(default_factory=dict)
    # The class of each image a conditional model encodes and decodes it as (None for others).
    condition: torch.Tensor | None = None

    _codes: Codes | None = field(default=None, init=False, repr=False)

    def codes(self) -> Codes:
        if self._codes is None:
            self._codes = encode_images(self.model, self.images, labels=self.condition)
        return self._codes

    @property
    def name(self) -> str:
        return self.model.family.label

    def decode(self, codes: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        """Images of ``codes``; a conditional model's as ``condition`` (class indices, or
        mixes of classes [N, classes]: see :meth:`classes_between`)."""
        return self.model.decode_images(codes, condition).cpu()

    def class_of(self, index: int, count: int) -> torch.Tensor | None:
        """The class of image ``index``, ``count`` times (None for a model without classes)."""
        if self.condition is None:
            return None
        return self.condition[index].repeat(count)

    def classes_between(self, indices: list[int], steps: int) -> torch.Tensor | None:
        """The mixes of classes along a walk through images ``indices``, ``steps`` points a leg
        as :func:`vae.latent.chain_path` walks the codes: each image's one-hot vector, linearly
        interpolated (None for a model without classes)."""
        if self.condition is None:
            return None
        one_hot = self.model.condition(self.condition[indices])
        assert one_hot is not None
        return chain_path(one_hot.cpu(), steps, "lerp")


def load_inputs(
    checkpoint: str | Path,
    source: ImageSource | None = None,
    *,
    device: str = "cpu",
    binarize: bool = True,
    model: VAE | None = None,
    reporter: Reporter | None = None,
    label: str | int | None = None,
) -> Inputs:
    """Load a checkpoint and the test images of ``source`` (default: the model's own named
    dataset's; see :class:`vae.data.ImageSource`). A conditional model is shown each image as
    its own class, or every image as the class ``label`` (a name or an index), which any
    other model refuses.

    ``binarize``: a Bernoulli model's test images are binarized once with the evaluation seed,
    as the likelihood scores them; False keeps the grey images (for pictures that show the
    originals). Files are used as they are. ``model``: the checkpoint's model, when the caller
    has loaded it already. Images mostly on light backgrounds for a model that draws dark ones
    are named in one warning to ``reporter`` (see vae.backgrounds)."""
    source = source or ImageSource()
    trained = load_trained_model(checkpoint, device, model)
    if label is not None:  # refused before any image is read
        check_conditional(trained.model.spec)
        class_index(trained.model.spec, label)
    test = trained.test_images(source, reporter)
    images = test.images
    if (
        binarize
        and source.input_path is None
        and trained.data_info.get("binarize", "none") != "none"
    ):
        images = prepare_evaluation_images(images, "static", 0)
    name = source.name(trained.data_info) + ("" if source.input_path is not None else " test")
    if source.invert:  # a map's title says what was encoded
        name = f"inverted {name}"
    condition = _condition(trained.model, test.labels, len(images), label, name)
    return Inputs(trained.model, to_float(images), test.labels, name, trained.metadata, condition)


def _condition(
    model: VAE, labels: torch.Tensor | None, count: int, label: str | int | None, name: str
) -> torch.Tensor | None:
    """The classes a conditional model is shown ``count`` images as: ``label`` for all, else
    each image's own ``labels`` (None for a model without classes, which refuses ``label``)."""
    spec = model.spec
    if label is not None:
        return torch.full((count,), class_index(spec, label), dtype=torch.long)
    if not model.family.conditional:
        return None
    if labels is None:
        raise DataError(
            f"a {model.family.label} shows each image as its class, and {name} has no labels: "
            "choose one class for them all with ",
            Setting("label"),
            ", or a labelled dataset with ",
            Setting("dataset"),
        )
    check_image_labels(spec, labels, name)
    return labels.long()
