"""Run configuration: typed sections, validation, YAML round trip and flag overrides.

Each setting is defined once, in :mod:`vae.config.sections`: its field carries an Option (help
text, flags and aliases, choices, bounds, the docs' wording, whether a resume may change it) from
which the ``train`` command's options, the YAML validation and the docs' option table
(tools/docs_tables.py) are generated. Errors name the setting (``latent_dim``); the command line
spells it as its flag (``--latent-dim``).

The modules, one job each:

- :mod:`~vae.config.settings`: how one setting is defined, converted and checked (Option,
  ``setting``, coercion, bounds, the "invalid value" error, seeds, int lists, warm-up lengths);
- :mod:`~vae.config.choices`: the values settings choose from (the model vocabulary is
  vae.models' and vae.likelihoods', the dataset names vae.data.registry's);
- :mod:`~vae.config.sections`: DataConfig, ModelConfig, ObjectiveConfig, TrainConfig;
- :mod:`~vae.config.registry`: every setting by name (section, type, Option, flag, aliases,
  the settings a resume may change);
- :mod:`~vae.config.run_config`: RunConfig, the whole, from a mapping or the command line;
- :mod:`~vae.config.rules`: the rules that join settings, shared with a checkpoint's spec;
- :mod:`~vae.config.yaml_file`: reading and writing ``config.yaml``;
- :mod:`~vae.config.paths`: the data folder and the environment variables that choose it.

This package does not import torch; the ``info`` command and the CLI's option parsing use it.
"""

from __future__ import annotations

from vae.config.choices import (
    ARCHITECTURES,
    BETA_SCHEDULES,
    BINARIZATIONS,
    DATASETS,
    DEVICES,
    IMAGE_TREE_DATASETS,
    LR_SCHEDULES,
    MEDMNIST_DATASETS,
    MODEL_TYPES,
    OPTIMIZERS,
    PRIORS,
    STORAGES,
    TRACKERS,
)
from vae.config.paths import CACHE_DIR_ENV, DATA_DIR_ENV, resolve_data_dir
from vae.config.registry import (
    FIELD_SECTIONS,
    OPTIONS,
    RESUMABLE_SETTINGS,
    SECTIONS,
    flag_of,
    train_aliases,
)
from vae.config.rules import MS_SSIM_MIN_SIDE, check_image_side, check_model
from vae.config.run_config import RunConfig
from vae.config.sections import (
    MAX_DECODE_WORKERS,
    DataConfig,
    ModelConfig,
    ObjectiveConfig,
    TrainConfig,
)
from vae.config.settings import (
    SEED_MAX,
    Option,
    check_seed,
    parse_int_list,
    parse_warmup,
    setting,
)
from vae.config.yaml_file import config_to_yaml, load_config_file

__all__ = [
    "ARCHITECTURES",
    "BETA_SCHEDULES",
    "BINARIZATIONS",
    "CACHE_DIR_ENV",
    "DATASETS",
    "DATA_DIR_ENV",
    "DEVICES",
    "FIELD_SECTIONS",
    "IMAGE_TREE_DATASETS",
    "LR_SCHEDULES",
    "MAX_DECODE_WORKERS",
    "MEDMNIST_DATASETS",
    "MODEL_TYPES",
    "MS_SSIM_MIN_SIDE",
    "OPTIMIZERS",
    "OPTIONS",
    "PRIORS",
    "RESUMABLE_SETTINGS",
    "SECTIONS",
    "SEED_MAX",
    "STORAGES",
    "TRACKERS",
    "DataConfig",
    "ModelConfig",
    "ObjectiveConfig",
    "Option",
    "RunConfig",
    "TrainConfig",
    "check_image_side",
    "check_model",
    "check_seed",
    "config_to_yaml",
    "flag_of",
    "load_config_file",
    "parse_int_list",
    "parse_warmup",
    "resolve_data_dir",
    "setting",
    "train_aliases",
]
