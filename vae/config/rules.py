"""The rules that join settings, each written once. A run configuration goes through
``check_run_config`` before training; a model's spec (a new run's, once its images are known,
and every checkpoint's on load: vae.spec.check_spec) goes through ``check_model`` and
``check_image_side``, the rules a run configuration shares with the model it describes. Errors
name the settings (vae.errors.Setting), which the command line spells as flags."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from vae.config.choices import DATASETS, IWAE_OBJECTIVE
from vae.config.registry import OPTIONS, SECTIONS
from vae.config.settings import (
    Option,
    check_choice_and_low,
    check_high,
    invalid_value,
    parse_warmup,
)
from vae.data.registry import FOLDER_PREFIX, HF_PREFIX, MEMORY_PREFIX
from vae.errors import ConfigError, Setting
from vae.models import FAMILIES, known_family
from vae.models.priors import PRIORS, STANDARD

if TYPE_CHECKING:
    from vae.config.run_config import RunConfig
    from vae.config.sections import ModelConfig

# MS-SSIM halves the image 4 times and needs a window of at least 3 pixels at the smallest scale.
MS_SSIM_MIN_SIDE = 48


def check_run_config(config: RunConfig, given: Collection[str] = ()) -> None:
    """Check every value against its Option (choices, lower bounds), then the rules that join
    settings, then the upper bounds; raise ConfigError naming the setting at fault. ``given``:
    the settings a user set explicitly (some values are only a mistake when asked for)."""
    model, objective = config.model, config.objective
    check_dataset(config.data.dataset)
    values = _setting_values(config)
    for name, option, value in values:
        check_choice_and_low(name, option, value)
    if model.architecture == "mlp" and not model.hidden_sizes:
        invalid_value(
            "hidden_sizes", model.hidden_sizes, "at least one size for the mlp architecture"
        )
    check_model(
        model.architecture,
        objective.likelihood,
        objective.learn_sigma,
        model.conv_widths,
        model.decoder_conv_widths,
        auto_widths=True,
    )
    parse_warmup(objective.beta_warmup)
    chosen = PRIORS.get(model.effective_prior)  # an unknown one was refused above
    if objective.free_bits > 0 and chosen is not None and not chosen.per_dimension_kl:
        # Free bits clamp each dimension's KL, which only the standard prior splits per dimension.
        invalid_value(
            "free_bits",
            objective.free_bits,
            f"0 with the {chosen.name} prior: add ",
            Setting("prior"),
            f" {STANDARD.name}",
        )
    _check_objective(config, given)
    _check_bounds(values)
    _check_prior_asked(model.model_type, model.prior, given)
    _check_pseudo_inputs_asked(model, given)
    _check_family_settings_asked(model.model_type, given)
    FAMILIES[model.model_type].check_config(config, given)


def settings_not_read(model_type: Any, prior: Any, objective: Any) -> set[str]:
    """The settings a run of this family, prior and objective never reads (another family's
    own settings, another prior's size, the IWAE sample count of an ELBO run): a run's saved
    configuration records every setting, and a report of it leaves these out."""
    chosen = known_family(model_type)
    unread = {name for family in FAMILIES.values() for name in family.own_settings}
    if chosen is not None:
        unread = (unread - set(chosen.own_settings)) | set(chosen.unused_settings)
    unread |= {part.size_setting for part in PRIORS.values() if part.size_setting}
    if isinstance(prior, str) and prior in PRIORS:
        unread.discard(PRIORS[prior].size_setting)
    if objective != IWAE_OBJECTIVE:
        unread.add("iw_samples")
    return unread


def check_model(
    architecture: Any,
    likelihood: Any,
    learned_sigma: bool,
    conv_widths: list[int] | None,
    decoder_conv_widths: list[int] | None,
    *,
    auto_widths: bool = False,
) -> None:
    """The rules a model's settings obey, in a run configuration and in a checkpoint's spec: a
    known architecture and likelihood, one or more positive conv widths (a conv model's encoder,
    and a decoder given its own), a learned sigma only for the Gaussian likelihood.
    ``auto_widths``: a run configuration's None conv widths ("auto", resolved from the image
    size by vae.spec) pass; a spec always holds its widths."""
    for name, value in (("architecture", architecture), ("likelihood", likelihood)):
        check_choice_and_low(name, OPTIONS[name], value)
    auto = auto_widths and conv_widths is None
    if architecture == "conv" and not auto and (not conv_widths or any(w < 1 for w in conv_widths)):
        invalid_value("conv_widths", conv_widths, "one or more positive integers")
    if decoder_conv_widths is not None and (
        not decoder_conv_widths or any(w < 1 for w in decoder_conv_widths)
    ):
        invalid_value("decoder_conv_widths", decoder_conv_widths, "one or more positive integers")
    if learned_sigma and likelihood != "mse":
        invalid_value(
            "learn_sigma",
            True,
            "only with ",
            Setting("likelihood"),
            " mse (a Gaussian has a sigma to learn)",
        )


def check_image_side(likelihood: str, height: int, width: int, conv_layers: int = 0) -> None:
    """Images large enough for ms-ssim's scales and for the halvings of ``conv_layers`` stride-2
    layers (the deeper of encoder and decoder; 0 for an mlp). Needs the image size, so a run's
    model spec goes through it once its images are known."""
    if likelihood == "ms-ssim" and min(height, width) < MS_SSIM_MIN_SIDE:
        raise ConfigError(
            Setting("likelihood"),
            f" ms-ssim compares 5 scales and needs images of at least {MS_SSIM_MIN_SIDE} "
            f"pixels a side, got {height}x{width}: use ",
            Setting("likelihood"),
            " ssim or a larger ",
            Setting("image_size"),
        )
    if conv_layers and min(height, width) // 2**conv_layers < 1:
        raise ConfigError(
            f"{conv_layers} conv layers need images of at least {2**conv_layers} pixels a side, "
            f"got {height}x{width}: use fewer ",
            Setting("conv_widths"),
            " or a larger ",
            Setting("image_size"),
        )


def check_dataset(dataset: str, setting: str = "dataset") -> None:
    """Raise ConfigError unless ``dataset`` (the value of ``setting``) is a registered name,
    folder:PATH or hf:NAME_OR_PATH with the path or name given (an empty one would read the
    current folder), or the memory:NAME a run on images given in Python records."""
    if dataset.startswith(MEMORY_PREFIX) and dataset != MEMORY_PREFIX:
        return
    if dataset not in DATASETS and not dataset.startswith((FOLDER_PREFIX, HF_PREFIX)):
        invalid_value(
            setting, dataset, "one of " + ", ".join(DATASETS) + ", folder:PATH or hf:NAME_OR_PATH"
        )
    if dataset == FOLDER_PREFIX:
        invalid_value(setting, dataset, "folder:PATH with a folder path")
    if dataset == HF_PREFIX:
        invalid_value(setting, dataset, "hf:NAME_OR_PATH with a dataset name or folder")


def _check_prior_asked(model_type: str, prior: str, given: Collection[str]) -> None:
    """A family without a prior ignores the setting; asking for one is a mistake (a resolved
    config.yaml of an autoencoder run holds the default, which is not)."""
    family = FAMILIES[model_type]
    if not family.takes_prior_setting and "prior" in given and prior != STANDARD.name:
        raise ConfigError(
            "invalid value for ",
            Setting("prior"),
            f": {prior!r} (an {family.label} has no prior: leave ",
            Setting("prior"),
            " out with ",
            Setting("model_type"),
            f" {model_type})",
        )


def _check_family_settings_asked(model_type: str, given: Collection[str]) -> None:
    """A setting only another family reads (a hierarchy's ``latent_groups``) would be ignored:
    asked for, it is a mistake."""
    chosen = FAMILIES[model_type]
    for family in FAMILIES.values():
        for name in family.own_settings:
            if name in given and name not in chosen.own_settings:
                raise ConfigError(
                    Setting(name),
                    f" is a {family.label}'s setting: add ",
                    Setting("model_type"),
                    f" {family.name}, or leave ",
                    Setting(name),
                    " out",
                )


def _check_pseudo_inputs_asked(model: ModelConfig, given: Collection[str]) -> None:
    """``pseudo_inputs`` sizes the VampPrior alone; asked for with another prior (an
    autoencoder has none) it would be ignored: a mistake."""
    prior = model.effective_prior
    if "pseudo_inputs" not in given or PRIORS[prior].size_setting == "pseudo_inputs":
        return
    family = FAMILIES[model.model_type]
    if not family.takes_prior_setting:
        remedy: tuple[Any, ...] = (f"an {family.label} has no prior: leave ",)
    else:
        remedy = (f"this run's prior is {prior}: add ", Setting("prior"), " vamp, or leave ")
    raise ConfigError(
        Setting("pseudo_inputs"), " sizes the vamp prior, and ", *remedy,
        Setting("pseudo_inputs"), " out",
    )  # fmt: skip


def _check_objective(config: RunConfig, given: Collection[str]) -> None:
    """The IWAE bound (Burda et al. 2016) is a bound on a likelihood, with the KL's weight 1
    once warmed up (any other beta makes it no bound) and no free bits (there is no KL term to
    clamp). ``iw_samples`` asked for without it would be ignored: a mistake."""
    objective = config.objective
    if objective.objective != IWAE_OBJECTIVE:
        if "iw_samples" in given:
            raise ConfigError(
                Setting("iw_samples"),
                " counts the samples of ",
                Setting("objective"),
                f" {IWAE_OBJECTIVE}: add it, or leave ",
                Setting("iw_samples"),
                " out",
            )
        return
    family = FAMILIES[config.model.model_type]
    if not family.has_likelihood:
        invalid_value(
            "objective",
            objective.objective,
            f"elbo: an {family.label} has no likelihood to bound; leave ",
            Setting("objective"),
            " out with ",
            Setting("model_type"),
            f" {config.model.model_type}",
        )
    if not family.scores_likelihood(objective.likelihood):
        invalid_value(
            "objective",
            objective.objective,
            f"elbo: the {objective.likelihood} loss is no likelihood to bound; use ",
            Setting("likelihood"),
            " bce or mse",
        )
    if objective.beta != 1:
        invalid_value(
            "beta",
            objective.beta,
            "1 with ",
            Setting("objective"),
            f" {IWAE_OBJECTIVE}: with another KL weight it bounds nothing; ",
            Setting("beta_warmup"),
            " still ramps it up from 0",
        )
    if objective.free_bits > 0:
        invalid_value(
            "free_bits",
            objective.free_bits,
            "0 with ",
            Setting("objective"),
            f" {IWAE_OBJECTIVE}: its bound has no KL term to clamp",
        )


def _setting_values(config: RunConfig) -> list[tuple[str, Option, Any]]:
    """(name, Option, value) of every setting, in definition order."""
    return [
        (item.name, item.metadata["option"], getattr(section, item.name))
        for section in (getattr(config, name) for name in SECTIONS)
        for item in dataclasses.fields(section)
    ]


def _check_bounds(values: list[tuple[str, Option, Any]]) -> None:
    """Every number is finite, and sizes that decide an allocation stay below vae.limits'
    bounds (the Options' ``at_most``)."""
    for name, _option, value in values:
        if isinstance(value, float) and not math.isfinite(value):
            invalid_value(name, value, "a finite number")
    for name, option, value in values:
        check_high(name, option, value)
