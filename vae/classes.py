"""Class labels of a conditional model (``model_type`` cvae): the labels asked for by name or
index (``generate --label``, ``vae.Model.sample(labels=...)``, the explorer's class picker), the
labels of the images it is trained and scored on, and the one-line refusals of both.

Torch-free at import: ``generate`` on the CPU reads labels without torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from vae.errors import ConfigError, DataError, Setting, shown
from vae.models import FAMILIES, family_of

if TYPE_CHECKING:
    import numpy as np
    import torch

    from vae.config import RunConfig
    from vae.data import DataSplits
    from vae.model_spec import ModelSpec

# Class names shown in one message before the rest are counted.
SHOWN_CLASSES = 12


def class_list(spec: ModelSpec) -> str:
    """The model's classes for a message: ``0 0, 1 1, ...`` as index and name where they
    differ (``0 T-shirt/top, 1 Trouser``), the first SHOWN_CLASSES of them."""
    shown_names = [
        name if name == str(index) else f"{index} {name}"
        for index, name in enumerate(spec.classes[:SHOWN_CLASSES])
    ]
    rest = len(spec.classes) - SHOWN_CLASSES
    return ", ".join(shown_names) + (f" and {rest} more" if rest > 0 else "")


def class_index(spec: ModelSpec, value: Any, setting: str = "label") -> int:
    """The class ``value`` names: a class name, else a class index (an int, or its digits);
    a ConfigError naming ``setting`` and the classes for anything else."""
    if isinstance(value, str):
        if value in spec.classes:
            return spec.classes.index(value)
        text = value.strip()
        number = int(text) if text.isdigit() else None
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        number = None
    if number is not None and 0 <= number < len(spec.classes):
        return number
    raise ConfigError(
        "invalid value for ",
        Setting(setting),
        f": {shown(value)} is not a class of this model (its classes: {class_list(spec)})",
    )


def check_conditional(spec: ModelSpec, setting: str = "label") -> None:
    """ConfigError naming ``setting`` unless the model takes a class label."""
    family = family_of(spec)
    if not family.conditional:
        raise ConfigError(
            Setting(setting),
            f" needs a conditional model (model type cvae); this checkpoint is a {family.label}, "
            "which takes no class label",
        )


def labels_for(
    spec: ModelSpec, count: int, label: Any = None, labels: Sequence[Any] | None = None
) -> np.ndarray | None:
    """The class index of each of ``count`` samples: ``label`` for all, else ``labels`` in turn
    (cycled), else None (the sampler's default: see :func:`vae.sampling.sample_labels`). Each a
    class name or index; refused for a model that takes no label, or both given at once."""
    import numpy as np

    if label is None and labels is None:
        return None
    if label is not None and labels is not None:
        raise ConfigError("give ", Setting("label"), " or ", Setting("labels"), ", not both")
    setting = "label" if label is not None else "labels"
    check_conditional(spec, setting)
    if label is not None:
        return np.full(count, class_index(spec, label, setting), dtype=np.int64)
    assert labels is not None
    if len(labels) == 0:
        raise ConfigError("invalid value for ", Setting("labels"), ": no class given")
    chosen = np.array([class_index(spec, value, setting) for value in labels], dtype=np.int64)
    return np.resize(chosen, count)


def split_labels(text: str) -> list[str]:
    """``--labels 0,1,Trouser``: the comma-separated classes, each stripped."""
    return [part.strip() for part in text.split(",") if part.strip()]


def check_class_labels(config: RunConfig, splits: DataSplits) -> None:
    """A conditional model's data before training: labelled, every training and validation
    label a class index; a DataError naming the dataset otherwise (any other model: nothing)."""
    from vae.data import labels_outside

    family = FAMILIES[config.model.model_type]
    if not family.conditional:
        return
    dataset = config.data.dataset
    if splits.classes is None or splits.train.labels is None or splits.val.labels is None:
        raise DataError(
            Setting("model_type"),
            f" {family.name} is conditioned on class labels, and dataset {shown(dataset)} has "
            "none (labelled: the named datasets but CelebA, a folder with one sub-folder per "
            "class, an hf: dataset with a label column: ",
            Setting("hf_label_column"),
            ")",
        )
    for split in (splits.train, splits.val):
        wrong = labels_outside(split.labels, len(splits.classes))
        if wrong is not None:
            raise DataError(
                f"dataset {shown(dataset)} has the label {wrong}, which is no class index (0 to "
                f"{len(splits.classes) - 1}): a conditional model needs a class for every image"
            )


def check_image_labels(spec: ModelSpec, labels: torch.Tensor | None, images: str) -> None:
    """A conditional model scored or shown on ``images``: each needs its label, a class of the
    model; a DataError otherwise (any other model: nothing)."""
    from vae.data import labels_outside

    family = family_of(spec)
    if not family.conditional:
        return
    if labels is None:
        raise DataError(
            f"a {family.label} needs each image's class label, and {images} has none: choose a "
            "labelled dataset with ",
            Setting("dataset"),
        )
    wrong = labels_outside(labels, len(spec.classes))
    if wrong is not None:
        raise DataError(
            f"{images} has the label {wrong}, which is no class of this model (0 to "
            f"{len(spec.classes) - 1})"
        )
