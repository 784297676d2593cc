"""What a model is, without torch: the spec stored in checkpoints and the tensors it implies.

Kept free of torch so that ``info`` can check a checkpoint's header quickly. The layers
themselves are laid out in ``vae.plan``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

from vae.config import RunConfig, check_image_side, check_model
from vae.errors import ConfigError, shown
from vae.limits import (
    DECODE_BATCH_VALUES,
    MAX_CLASS_NAME_CHARS,
    MAX_CLASSES,
    MAX_CONV_WIDTH,
    MAX_IMAGE_ACTIVATIONS,
    MAX_IMAGE_SIDE,
    MAX_LATENT_DIM,
    MAX_LAYER_WIDTH,
    MAX_LAYERS,
    MAX_PARAMETERS,
    check_at_most,
)
from vae.model_spec import ModelSpec
from vae.models import FAMILIES, family_of
from vae.models.priors import PRIORS
from vae.plan import conv_feature_sizes


def model_spec(
    config: RunConfig, image: dict[str, Any], classes: Sequence[str] | None = None
) -> ModelSpec:
    """The model a run's configuration asks for, on images of ``image``'s channels, height, width;
    a conditional family's on the data's ``classes`` (their names: see
    :func:`vae.classes.check_class_labels`), which any other ignores."""
    model = config.model
    conv = model.architecture == "conv"
    prior = model.effective_prior
    sizes = PRIORS[prior].size_setting
    fields = dict(
        architecture=model.architecture,
        latent_dim=model.latent_dim,
        channels=image["channels"],
        height=image["height"],
        width=image["width"],
        likelihood=config.objective.likelihood,
        hidden_sizes=list(model.hidden_sizes),
        conv_widths=conv_widths_for(model.conv_widths, image["height"], image["width"])
        if conv
        else [],
        decoder_hidden_sizes=_optional_list(model.decoder_hidden_sizes),
        decoder_conv_widths=_optional_list(model.decoder_conv_widths) if conv else None,
        model_type=model.model_type,
        learned_sigma=config.objective.learn_sigma,
        prior=prior,
        # Only the chosen prior's size setting is recorded; the others are 0.
        prior_components=model.prior_components if sizes == "prior_components" else 0,
        pseudo_inputs=model.pseudo_inputs if sizes == "pseudo_inputs" else 0,
        classes=list(classes or ()) if FAMILIES[model.model_type].conditional else [],
    )
    # A family's own settings (a hierarchy's groups), recorded for it alone.
    return ModelSpec(**{**fields, **FAMILIES[model.model_type].spec_fields(model)})


# The rule ``conv_widths`` "auto" follows: stride-2 stages until the feature map is at most
# AUTO_FINAL_SIDE a side, the first AUTO_FIRST_WIDTH channels wide and each twice the one before,
# up to AUTO_MAX_WIDTH (so the flattened map before the dense layer stays at most 8 * 8 * 256).
AUTO_FINAL_SIDE = 8
AUTO_FIRST_WIDTH = 32
AUTO_MAX_WIDTH = 256


def auto_conv_widths(height: int, width: int) -> list[int]:
    """The conv widths "auto" gives images of ``height`` x ``width``: one stage at least, then
    more while the larger side is over 8 and the smaller one can still be halved (28 and 32 px:
    [32, 64]; 64 px: [32, 64, 128]; 256 px: [32, 64, 128, 256, 256])."""
    stages = 1
    while max(height, width) >> stages > AUTO_FINAL_SIDE and min(height, width) >> (stages + 1):
        stages += 1
    return [min(AUTO_FIRST_WIDTH << stage, AUTO_MAX_WIDTH) for stage in range(stages)]


def conv_widths_for(configured: list[int] | None, height: int, width: int) -> list[int]:
    """The conv widths a model is built with: the configured ones, or (None: "auto") the rule's
    for its image size. A spec records the result, so a checkpoint never depends on the rule."""
    return list(configured) if configured is not None else auto_conv_widths(height, width)


def _optional_list(values: list[int] | None) -> list[int] | None:
    return None if values is None else list(values)


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def check_spec(spec: ModelSpec) -> None:
    """Raise ConfigError unless ``spec`` describes a model that can be built."""
    _check_sizes(spec)
    _check_choices(spec)
    _check_image_side(spec)
    check_at_most(
        "the model's largest layer output", largest_activation(spec), MAX_IMAGE_ACTIVATIONS
    )
    parameters = sum(math.prod(tensor.shape) for tensor in _tensor_shapes(spec).values())
    check_at_most("the model's parameter count", parameters, MAX_PARAMETERS)


def _check_sizes(spec: ModelSpec) -> None:
    """The image, latent and layer sizes: positive integers within their limits."""
    for name in ("latent_dim", "channels", "height", "width"):
        if not _positive_int(getattr(spec, name)):
            raise ConfigError(
                f"model {name} must be a positive integer, got {shown(getattr(spec, name))}"
            )
    # Every size that decides an allocation is bounded before anything is built: a 3 KB file
    # must not make a command allocate gigabytes (the tensor table bounds the weights, these
    # bound the activations and the pictures).
    if spec.channels not in (1, 3):
        raise ConfigError(f"model channels must be 1 or 3, got {spec.channels}")
    check_at_most("model latent_dim", spec.latent_dim, MAX_LATENT_DIM)
    check_at_most("model height", spec.height, MAX_IMAGE_SIDE)
    check_at_most("model width", spec.width, MAX_IMAGE_SIDE)
    for name, bound in (
        ("hidden_sizes", MAX_LAYER_WIDTH),
        ("conv_widths", MAX_CONV_WIDTH),
        ("decoder_hidden_sizes", MAX_LAYER_WIDTH),
        ("decoder_conv_widths", MAX_CONV_WIDTH),
    ):
        sizes = getattr(spec, name)
        if sizes is None:
            continue
        if not (isinstance(sizes, list) and all(_positive_int(size) for size in sizes)):
            raise ConfigError(
                f"model {name} must be a list of positive integers, got {shown(sizes)}"
            )
        check_at_most(f"the number of model {name}", len(sizes), MAX_LAYERS)
        check_at_most(f"a model {name} entry", max(sizes, default=0), bound)


def _check_choices(spec: ModelSpec) -> None:
    """Architecture, likelihood, model type and prior: known, and possible together (the rules
    a run configuration shares with its model, vae.config.rules; the family checks its own)."""
    if not isinstance(spec.learned_sigma, bool):
        raise ConfigError(
            f"model learned_sigma must be true or false, got {shown(spec.learned_sigma)}"
        )
    check_model(
        spec.architecture,
        spec.likelihood,
        spec.learned_sigma,
        spec.conv_widths,
        spec.decoder_conv_widths,
    )
    family_of(spec).check(spec)  # its model type known, its prior and settings together
    _check_classes(spec)
    _check_other_families_settings(spec)


def _check_classes(spec: ModelSpec) -> None:
    """A conditional family's class names: 1 to MAX_CLASSES distinct, non-empty strings of at
    most MAX_CLASS_NAME_CHARS; any other family has none."""
    family, classes = family_of(spec), spec.classes
    if not family.conditional:
        if classes != []:
            raise ConfigError(
                f"model classes must be empty for model type {spec.model_type} (it takes no "
                f"label), got {shown(classes)}"
            )
        return
    if not isinstance(classes, list) or not classes:
        raise ConfigError(
            f"model type {spec.model_type} needs its class names (model classes), got "
            f"{shown(classes)}"
        )
    check_at_most("the number of model classes", len(classes), MAX_CLASSES)
    if not all(isinstance(name, str) and 0 < len(name) <= MAX_CLASS_NAME_CHARS for name in classes):
        raise ConfigError(
            f"model classes must be names of 1 to {MAX_CLASS_NAME_CHARS} characters, got "
            f"{shown(classes)}"
        )
    if len(set(classes)) != len(classes):
        raise ConfigError(f"model classes must differ from each other, got {shown(classes)}")


def _check_other_families_settings(spec: ModelSpec) -> None:
    """A setting of another family's own (a hierarchy's ``latent_groups``) is 0 in a spec."""
    own = family_of(spec).own_settings
    for family in FAMILIES.values():
        for name in family.own_settings:
            value = getattr(spec, name)
            if name not in own and value != 0:
                raise ConfigError(
                    f"model {name} must be 0 for model type {spec.model_type} (only a "
                    f"{family.label} has one), got {shown(value)}"
                )


def _check_image_side(spec: ModelSpec) -> None:
    """Images large enough for ms-ssim's scales and for the conv layers' halvings."""
    conv = spec.architecture == "conv"
    layers = max(len(spec.conv_widths), len(spec.decoder_widths)) if conv else 0
    check_image_side(spec.likelihood, spec.height, spec.width, layers)


def largest_activation(spec: ModelSpec) -> int:
    """Values in the largest layer output for one image (what a batch's memory scales with)."""
    pixels = spec.channels * spec.height * spec.width
    classes = len(spec.classes)  # a conditional model's one-hot, beside its first inputs
    sizes = [pixels + classes, spec.latent_dim + classes, *spec.hidden_sizes, *spec.decoder_hidden]
    if spec.architecture == "conv":
        for widths in (spec.conv_widths, spec.decoder_widths):
            features = conv_feature_sizes(spec.height, spec.width, len(widths))[1:]
            sizes += [width * h * w for width, (h, w) in zip(widths, features, strict=True)]
    return max([*sizes, *family_of(spec).activation_sizes(spec)])


def decode_batch_size(spec: ModelSpec) -> int:
    """Images to decode at once for a picture, so that its layer outputs stay within
    ``DECODE_BATCH_VALUES`` (at least one image: ``check_spec`` bounds a single image)."""
    return max(1, DECODE_BATCH_VALUES // largest_activation(spec))


class TensorShape(NamedTuple):
    """Shape and dtype of one stored weight (duck-types the parts of a tensor that are checked)."""

    shape: tuple[int, ...]
    dtype: str = "float32"


def expected_tensors(spec: ModelSpec) -> dict[str, TensorShape]:
    """The state-dict entries (names, shapes) of the model ``spec`` describes, derived from its
    layer plan as the model's modules are, so the two match (a test checks that)."""
    check_spec(spec)
    return _tensor_shapes(spec)


def _tensor_shapes(spec: ModelSpec) -> dict[str, TensorShape]:
    """``expected_tensors`` for a spec whose sizes are already checked: read off its layer plan
    (a family with its own network: off that network's layout)."""
    shapes = family_of(spec).tensor_shapes(spec)
    return {name: TensorShape(shape) for name, shape in shapes.items()}
