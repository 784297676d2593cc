"""Run configuration: typed sections, validation, YAML round trip and flag overrides.

This module does not import torch; the ``info`` command and the CLI's option parsing use it.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vae.data.registry import DATASETS, names_read_by
from vae.errors import ConfigError

# Dataset names come from the data registry (torch-free), which lists each dataset once.
MEDMNIST_DATASETS = names_read_by("medmnist")
IMAGE_TREE_DATASETS = names_read_by("trees")
ARCHITECTURES = ("mlp", "conv")
MODEL_TYPES = ("vae", "ae")
# standard: N(0, I); mog: a learned mixture of Gaussians (Tomczak & Welling 2018, "MoG prior").
PRIORS = ("standard", "mog")
LIKELIHOODS = ("bce", "mse", "ssim", "ms-ssim")
# Perceptual reconstruction losses: trained like a likelihood, but not one (no NLL, no bits/dim).
PERCEPTUAL_LOSSES = ("ssim", "ms-ssim")
BINARIZATIONS = ("dynamic", "static", "none")
BETA_SCHEDULES = ("constant", "linear", "sigmoid", "cosine", "cyclical")
OPTIMIZERS = ("adam", "adamw")
LR_SCHEDULES = ("none", "cosine", "plateau")
DEVICES = ("auto", "cpu", "cuda", "mps")
TRACKERS = ("none", "tensorboard", "wandb")

DATA_DIR_ENV = "VAE_DATA_DIR"


@dataclass
class DataConfig:
    """Which images to train on and how to prepare them."""

    dataset: str = "mnist"
    data_dir: str | None = None
    download: bool = True
    image_size: int | None = None
    channels: int | None = None
    binarize: str = "dynamic"
    val_size: int | None = None
    limit: int | None = None


@dataclass
class ModelConfig:
    """The architecture a user chooses; image shape and likelihood come from data and objective."""

    architecture: str = "conv"
    model_type: str = "vae"  # "ae": a plain autoencoder baseline (no KL, no sampling noise)
    latent_dim: int = 32
    hidden_sizes: list[int] = field(default_factory=lambda: [512])
    conv_widths: list[int] = field(default_factory=lambda: [32, 64])
    decoder_hidden_sizes: list[int] | None = None  # None: mirror hidden_sizes
    decoder_conv_widths: list[int] | None = None  # None: mirror conv_widths
    prior: str = "mog"  # an autoencoder (model_type "ae") has no prior and ignores it
    prior_components: int = 500  # mixture components of the mog prior

    @property
    def effective_prior(self) -> str:
        """The prior the model gets: an autoencoder has none, whatever ``prior`` says."""
        return self.prior if self.model_type == "vae" else "standard"


@dataclass
class ObjectiveConfig:
    """Likelihood, KL weight schedule and free bits."""

    likelihood: str = "bce"
    gaussian_sigma: float = 0.1
    learn_sigma: bool = False  # mse: learn one sigma per channel, starting at gaussian_sigma
    beta: float = 1.0
    beta_schedule: str = "linear"
    beta_warmup: str = "3"
    beta_cycles: int = 4
    beta_ramp_ratio: float = 0.5
    free_bits: float = 0.0


@dataclass
class TrainConfig:
    """Optimisation and bookkeeping."""

    epochs: int = 160
    batch_size: int = 128
    optimizer: str = "adam"
    lr: float = 2e-3
    weight_decay: float = 0.0
    grad_clip: float = 0.0
    lr_schedule: str = "cosine"
    seed: int = 0
    device: str = "auto"
    bf16: bool = True
    # torch.compile the training forward pass: pays off on long GPU runs; compiling takes
    # seconds to a minute (and a C++ compiler on CPUs), so it is off by default.
    compile: bool = False
    sample_every: int = 1
    runs_dir: str = "runs"
    tracker: str = "none"  # or tensorboard, wandb (optional extras)


@dataclass
class RunConfig:
    """Everything that defines a training run; ``config.yaml`` is this, resolved."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict, suitable for YAML and JSON."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "configuration") -> RunConfig:
        """Build a config from a nested dict; unknown sections or keys are an error."""
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
        config = cls()
        unknown_sections = [name for name in raw if name not in SECTIONS]
        if unknown_sections:
            names = ", ".join(f"'{name}'" for name in unknown_sections)
            known = ", ".join(SECTIONS)
            plural = "s" if len(unknown_sections) > 1 else ""
            raise ConfigError(f"{source}: unknown section{plural} {names} (known: {known})")
        for section_name, values in raw.items():
            if values is None:
                continue
            if not isinstance(values, dict):
                raise ConfigError(f"{source}: section '{section_name}' must be a mapping")
            section = getattr(config, section_name)
            unknown = [f"'{section_name}.{key}'" for key in values if not hasattr(section, key)]
            if unknown:
                plural = "s" if len(unknown) > 1 else ""
                raise ConfigError(f"{source}: unknown option{plural} {', '.join(unknown)}")
            for key, value in values.items():
                setattr(section, key, _coerce(section, key, value, source))
        return config

    def override(self, values: dict[str, Any]) -> RunConfig:
        """Set options by field name (the CLI's flags); each field name is unique across sections."""
        for key, value in values.items():
            section_name = FIELD_SECTIONS.get(key)
            if section_name is None:
                raise ConfigError(f"unknown option '{key}'")
            section = getattr(self, section_name)
            setattr(section, key, _coerce(section, key, value, "command line"))
        return self

    def validate(self) -> RunConfig:
        """Check every value; raise ConfigError naming the flag at fault."""
        d, m, o, t = self.data, self.model, self.objective, self.train
        if d.dataset not in DATASETS and not d.dataset.startswith("folder:"):
            _bad("dataset", d.dataset, "one of " + ", ".join(DATASETS) + " or folder:PATH")
        if d.dataset == "folder:":
            _bad("dataset", d.dataset, "folder:PATH with a folder path")
        _choice("binarize", d.binarize, BINARIZATIONS)
        if d.image_size is not None and d.image_size < 4:
            _bad("image-size", d.image_size, "at least 4")
        if d.channels is not None and d.channels not in (1, 3):
            _bad("channels", d.channels, "1 or 3")
        if d.val_size is not None and d.val_size < 1:
            _bad("val-size", d.val_size, "at least 1")
        if d.limit is not None and d.limit < 1:
            _bad("limit", d.limit, "at least 1")
        _choice("architecture", m.architecture, ARCHITECTURES)
        _choice("model", m.model_type, MODEL_TYPES)
        if m.latent_dim < 1:
            _bad("latent-dim", m.latent_dim, "at least 1")
        if any(h < 1 for h in m.hidden_sizes):
            _bad("hidden-sizes", m.hidden_sizes, "positive integers")
        if m.architecture == "mlp" and not m.hidden_sizes:
            _bad("hidden-sizes", m.hidden_sizes, "at least one size for the mlp architecture")
        if m.architecture == "conv" and (not m.conv_widths or any(w < 1 for w in m.conv_widths)):
            _bad("conv-widths", m.conv_widths, "one or more positive integers")
        if m.decoder_hidden_sizes is not None and any(h < 1 for h in m.decoder_hidden_sizes):
            _bad("decoder-hidden-sizes", m.decoder_hidden_sizes, "positive integers")
        if m.decoder_conv_widths is not None and (
            not m.decoder_conv_widths or any(w < 1 for w in m.decoder_conv_widths)
        ):
            _bad("decoder-conv-widths", m.decoder_conv_widths, "one or more positive integers")
        _choice("prior", m.prior, PRIORS)
        if m.prior_components < 1:
            _bad("prior-components", m.prior_components, "at least 1")
        _choice("likelihood", o.likelihood, LIKELIHOODS)
        if not o.gaussian_sigma > 0:
            _bad("gaussian-sigma", o.gaussian_sigma, "positive")
        if o.learn_sigma and o.likelihood != "mse":
            _bad(
                "learn-sigma", True, "only with --likelihood mse (a Gaussian has a sigma to learn)"
            )
        if not o.beta >= 0:
            _bad("beta", o.beta, "zero or positive")
        _choice("beta-schedule", o.beta_schedule, BETA_SCHEDULES)
        parse_warmup(o.beta_warmup)
        if o.beta_cycles < 1:
            _bad("beta-cycles", o.beta_cycles, "at least 1")
        if not 0 < o.beta_ramp_ratio <= 1:
            _bad("beta-ramp-ratio", o.beta_ramp_ratio, "in (0, 1]")
        if not o.free_bits >= 0:
            _bad("free-bits", o.free_bits, "zero or positive")
        if o.free_bits > 0 and m.effective_prior != "standard":
            # Free bits clamp each dimension's KL, which only the standard prior splits per dimension.
            _bad("free-bits", o.free_bits, "0 with the mog prior: add --prior standard")
        if t.epochs < 1:
            _bad("epochs", t.epochs, "at least 1")
        if t.batch_size < 1:
            _bad("batch-size", t.batch_size, "at least 1")
        _choice("optimizer", t.optimizer, OPTIMIZERS)
        if not t.lr > 0:
            _bad("lr", t.lr, "positive")
        if not t.weight_decay >= 0:
            _bad("weight-decay", t.weight_decay, "zero or positive")
        if not t.grad_clip >= 0:
            _bad("grad-clip", t.grad_clip, "zero (off) or positive")
        _choice("lr-schedule", t.lr_schedule, LR_SCHEDULES)
        _choice("device", t.device, DEVICES)
        _choice("tracker", t.tracker, TRACKERS)
        if t.sample_every < 0:
            _bad("sample-every", t.sample_every, "zero (never) or positive")
        check_seed(t.seed)
        self._check_bounds()
        return self

    def _check_bounds(self) -> None:
        """Sizes that decide an allocation stay below vae.limits' bounds."""
        from vae import limits

        for section in (self.data, self.model, self.objective, self.train):
            for item in dataclasses.fields(section):
                value = getattr(section, item.name)
                if isinstance(value, float) and not math.isfinite(value):
                    _bad(item.name.replace("_", "-"), value, "a finite number")
        d, m, t = self.data, self.model, self.train
        if d.image_size is not None and d.image_size > limits.MAX_IMAGE_SIDE:
            _bad("image-size", d.image_size, f"at most {limits.MAX_IMAGE_SIDE}")
        if m.latent_dim > limits.MAX_LATENT_DIM:
            _bad("latent-dim", m.latent_dim, f"at most {limits.MAX_LATENT_DIM}")
        if m.prior_components > limits.MAX_PRIOR_COMPONENTS:
            _bad("prior-components", m.prior_components, f"at most {limits.MAX_PRIOR_COMPONENTS}")
        for name, sizes, bound in (
            ("hidden-sizes", m.hidden_sizes, limits.MAX_LAYER_WIDTH),
            ("decoder-hidden-sizes", m.decoder_hidden_sizes, limits.MAX_LAYER_WIDTH),
            ("conv-widths", m.conv_widths, limits.MAX_CONV_WIDTH),
            ("decoder-conv-widths", m.decoder_conv_widths, limits.MAX_CONV_WIDTH),
        ):
            if sizes is not None and (
                len(sizes) > limits.MAX_LAYERS or max(sizes, default=0) > bound
            ):
                _bad(name, sizes, f"at most {limits.MAX_LAYERS} sizes of at most {bound}")
        if t.batch_size > limits.MAX_BATCH_SIZE:
            _bad("batch-size", t.batch_size, f"at most {limits.MAX_BATCH_SIZE}")


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "objective": ObjectiveConfig,
    "train": TrainConfig,
}
FIELD_SECTIONS: dict[str, str] = {
    f.name: name for name, cls in SECTIONS.items() for f in dataclasses.fields(cls)
}
_FIELD_TYPES: dict[str, str] = {
    f.name: str(f.type) for cls in SECTIONS.values() for f in dataclasses.fields(cls)
}


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


SEED_MAX = 2**64 - 1  # torch's generators take unsigned 64-bit seeds


def check_seed(seed: int, flag: str = "seed", count: int = 1) -> None:
    """Raise ConfigError unless ``seed`` .. ``seed + count - 1`` are all valid seeds."""
    if not 0 <= seed <= SEED_MAX - (count - 1):
        _bad(flag, seed, f"an integer from 0 to {SEED_MAX - (count - 1)}")


def _bad(flag: str, value: Any, expected: str) -> None:
    raise ConfigError(f"invalid value for --{flag}: {value!r} (expected {expected})")


def _choice(flag: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        _bad(flag, value, "one of " + ", ".join(choices))


def parse_int_list(text: str | list[Any] | tuple[Any, ...], key: str = "sizes") -> list[int]:
    """'512,256' or [512, 256] -> [512, 256]; an empty string gives []."""
    if isinstance(text, list | tuple):
        items = list(text)
    else:
        items = [part for part in re.split(r"[,\s]+", str(text).strip()) if part]
    try:
        return [int(item) for item in items]
    except (TypeError, ValueError):
        raise ConfigError(
            f"invalid value for {_flag(key)}: {text!r} (expected comma-separated integers)"
        ) from None


def parse_warmup(text: str | int | float) -> tuple[float, str]:
    """'10' or '10epochs' -> (10.0, 'epochs'); '2000steps' or '2000s' -> (2000.0, 'steps')."""
    match = re.fullmatch(
        r"\s*([0-9]*\.?[0-9]+)\s*(e|ep|epoch|epochs|s|step|steps)?\s*", str(text).lower()
    )
    if not match:
        raise ConfigError(
            f"invalid value for --beta-warmup: {text!r} (expected a number of epochs, e.g. 10, "
            "or of steps, e.g. 2000steps)"
        )
    unit = "steps" if (match.group(2) or "e").startswith("s") else "epochs"
    return float(match.group(1)), unit


def _coerce(section: Any, key: str, value: Any, source: str) -> Any:
    """Convert YAML or CLI values to the field's type, with a one-line error on failure."""
    kind = _FIELD_TYPES[key]
    if value is None:
        if "None" in kind:
            return None
        raise ConfigError(f"{source}: option '{key}' cannot be empty")
    try:
        if kind.startswith("list[int]"):
            return parse_int_list(value, key)
        if kind.startswith("bool"):
            if isinstance(value, bool):
                return value
            lowered = str(value).strip().lower()
            if lowered in ("true", "yes", "1", "on"):
                return True
            if lowered in ("false", "no", "0", "off"):
                return False
            raise ValueError(value)
        if kind.startswith("int"):
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if kind.startswith("float"):
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if kind.startswith("str"):
            if isinstance(value, dict | list):
                raise ValueError(value)
            return str(value)
    except (TypeError, ValueError):
        expected = kind.split(" |")[0]
        raise ConfigError(
            f"{source}: invalid value for {_flag(key)}: {value!r} (expected {expected})"
        ) from None
    return value


def load_config_file(path: str | Path) -> RunConfig:
    """Read a YAML run configuration (as written to ``runs/<name>/config.yaml``)."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"configuration file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read configuration file {path}: {error}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        reason = getattr(error, "problem", None) or str(error).splitlines()[0]
        if mark is not None:
            reason += f" at line {mark.line + 1}, column {mark.column + 1}"
        raise ConfigError(f"{path} is not valid YAML: {reason}") from None
    return RunConfig.from_dict(raw or {}, source=str(path))


def config_to_yaml(config: RunConfig) -> str:
    """The YAML text of a resolved configuration."""
    import yaml

    return yaml.safe_dump(config.to_dict(), sort_keys=False)


def resolve_data_dir(data_dir: str | None) -> Path:
    """--data-dir, else $VAE_DATA_DIR, else ./data."""
    chosen = data_dir or os.environ.get(DATA_DIR_ENV) or "data"
    return Path(chosen).expanduser()
