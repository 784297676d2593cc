"""Run configuration: typed sections, validation, YAML round trip and flag overrides.

Each setting is defined once, here: its field carries an Option (help text, flags and aliases,
choices, bounds, the README's wording) from which the ``train`` command's options, the YAML
validation and the README's option table (tools/docs_tables.py) are generated. Errors name the
setting (``latent_dim``); the command line spells it as its flag (``--latent-dim``).

This module does not import torch; the ``info`` command and the CLI's option parsing use it.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from vae import limits
from vae.data.registry import DATASETS, FOLDER_PREFIX, HF_PREFIX, names_read_by
from vae.errors import ConfigError, Setting
from vae.likelihoods import LIKELIHOODS
from vae.models import FAMILIES, PRIOR_NAMES
from vae.models.priors import PRIORS as PRIORS_BY_NAME
from vae.models.priors import STANDARD

# Dataset names come from the data registry (torch-free), which lists each dataset once.
MEDMNIST_DATASETS = names_read_by("medmnist")
IMAGE_TREE_DATASETS = names_read_by("trees")
ARCHITECTURES = ("mlp", "conv")
# The model families (vae.models) and the priors of the VAE family (vae.models.priors): standard
# N(0, I); mog, a learned mixture of Gaussians (Tomczak & Welling 2018, "MoG prior").
MODEL_TYPES = tuple(FAMILIES)
PRIORS = PRIOR_NAMES
BINARIZATIONS = ("dynamic", "static", "none")
BETA_SCHEDULES = ("constant", "linear", "sigmoid", "cosine", "cyclical")
OPTIMIZERS = ("adam", "adamw")
LR_SCHEDULES = ("none", "cosine", "plateau")
DEVICES = ("auto", "cpu", "cuda", "mps")
TRACKERS = ("none", "tensorboard", "wandb")

DATA_DIR_ENV = "VAE_DATA_DIR"
CACHE_DIR_ENV = "VAE_CACHE_DIR"
# Where decoded images live while training: see vae.data.storage for the rule "auto" follows.
STORAGES = ("auto", "memory", "mapped")
MAX_DECODE_WORKERS = 256  # processes; far above any machine's cores, bounds a mistyped value
SEED_MAX = 2**64 - 1  # torch's generators take unsigned 64-bit seeds


@dataclass(frozen=True)
class Option:
    """How a setting is given and checked: the one definition the ``train`` options, the YAML
    validation and the README's option table are generated from (see ``setting``)."""

    help: str
    flags: tuple[str, ...] = ()  # Typer declarations; () -> --<name-with-hyphens>
    aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)  # alias -> its expansion
    choices: tuple[Any, ...] | None = None
    choices_text: str | None = None  # how an error lists the choices
    at_least: float | None = None  # lower bound, inclusive (each item of a list)
    above: float | None = None  # lower bound, exclusive
    low_text: str | None = None  # what an error expects below the bound
    at_most: float | None = None  # upper bound: a vae.limits constant for sizes
    high_text: str | None = None
    doc: str | None = None  # README's meaning, where it says more than --help
    doc_default: str | None = None  # README's default column, where the value alone says too little


def setting(default: Any = None, *, factory: Any = None, **option: Any) -> Any:
    """A config field with its Option in the field's metadata (``factory`` for list defaults)."""
    metadata = {"option": Option(**option)}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def _choices(values: tuple[str, ...]) -> str:
    return ", ".join(values)


def _layers(bound: int) -> str:
    return f"at most {limits.MAX_LAYERS} sizes of at most {bound}"


@dataclass
class DataConfig:
    """Which images to train on and how to prepare them."""

    dataset: str = setting(
        "mnist",
        help=f"{_choices(DATASETS)}, folder:PATH for a folder of images, or hf:NAME_OR_PATH "
        "for a Hugging Face dataset.",
        doc=", ".join(f"`{name}`" for name in DATASETS)
        + ", `folder:PATH` (your own images) or `hf:NAME_OR_PATH` (a Hugging Face dataset); "
        "sizes and sources in [Datasets](../datasets.md)",
    )
    data_dir: str | None = setting(
        None,
        help="Dataset root (default: $VAE_DATA_DIR, else ./data).",
        doc="dataset root",
        doc_default="`$VAE_DATA_DIR`, else `./data`",
    )
    download: bool = setting(
        True,
        help="Download missing named datasets.",
        flags=("--download/--no-download",),
        doc="fetch missing named datasets",
        doc_default="download",
    )
    image_size: int | None = setting(
        None,
        help="Resize images to this many pixels a side (default: the dataset's own; 64 for "
        "folders).",
        at_least=4,
        at_most=limits.MAX_IMAGE_SIDE,
        doc="resize to N x N once at load time (folders and CelebA: centre-cropped to a square "
        "first)",
        doc_default="dataset's own (64 for folders and CelebA)",
    )
    channels: int | None = setting(
        None,
        help="1 (grayscale) or 3 (RGB); default: the dataset's own.",
        choices=(1, 3),
        choices_text="1 or 3",
        doc="1 (grayscale) or 3 (RGB)",
        doc_default="dataset's own",
    )
    binarize: str = setting(
        "dynamic",
        help=f"For bce: {_choices(BINARIZATIONS)} (dynamic: fresh draw per use).",
        choices=BINARIZATIONS,
        doc="Bernoulli likelihood only: `dynamic` (a fresh draw of each image every time it is "
        "used), `static` (drawn once), `none` (grey values as targets). Validation and test sets "
        "are binarized once with fixed seeds",
    )
    val_size: int | None = setting(
        None,
        help="Validation images carved from the training set with a fixed seed (default: "
        "min(5000, 10%), with --limit the same share of the images trained on).",
        at_least=1,
        doc="validation images carved from the training set with a fixed seed (the same in every "
        "run); the size used is recorded in `config.yaml`",
        doc_default="min(5000, 10 %); with `--limit`, the same share of the images trained on",
    )
    limit: int | None = setting(
        None,
        help="Train on the first N training images only (smoke runs).",
        at_least=1,
        doc="train on the first N training images (smoke runs)",
        doc_default="all",
    )
    storage: str = setting(
        "auto",
        help=f"{_choices(STORAGES)}: where decoded images live while training (auto: mapped from "
        "files when the training processes on this machine would together hold over 1 GiB).",
        choices=STORAGES,
        doc="`memory`: each process reads the split into its own memory; `mapped`: batches are "
        "read from memory-mapped files shared by every process on the machine (IDX files in "
        "place, decoded images from the cache's shards); `auto`: mapped when the split times the "
        "training processes on this machine is over 1 GiB. The batches are the same either way",
    )
    cache_dir: str | None = setting(
        None,
        help="Folder for decoded image shards (default: $VAE_CACHE_DIR, else DATA_DIR/vae-cache).",
        doc="folder for the decoded image shards of image folders, trees, CelebA and `hf:` "
        "datasets; where it cannot be written, decoded images stay in memory (with a note)",
        doc_default="`$VAE_CACHE_DIR`, else `<data>/vae-cache`",
    )
    decode_workers: int | None = setting(
        None,
        help="Processes that decode image files the first time (default: every core).",
        aliases={"--num-workers": ()},
        at_least=1,
        at_most=MAX_DECODE_WORKERS,
        doc="processes that decode image files into the cache the first time",
        doc_default="every core",
    )
    hf_split: str | None = setting(
        None,
        help="hf: datasets: the training split (default: train, else the only split).",
        doc="`hf:` datasets: the split to train on; the test split is `test`, else `validation`, "
        "else a fixed tenth of this one",
        doc_default="`train`, else the only split",
    )
    hf_image_column: str | None = setting(
        None,
        help="hf: datasets: the image column (default: the only one of image type).",
        doc="`hf:` datasets: the column holding the images",
        doc_default="the only image column",
    )
    hf_label_column: str | None = setting(
        None,
        help="hf: datasets: the label column (default: the only class-label column, else 'label').",
        doc="`hf:` datasets: the column of integer labels (for the labelled pictures)",
        doc_default="the only class-label column, else `label` / `labels`, else none",
    )


@dataclass
class ModelConfig:
    """The architecture a user chooses; image shape and likelihood come from data and objective."""

    architecture: str = setting(
        "conv",
        help=_choices(ARCHITECTURES),
        choices=ARCHITECTURES,
        doc="`mlp` or `conv` (stride-2 convolutions, transposed-convolution decoder; any image "
        "size)",
    )
    model_type: str = setting(
        "vae",
        help="vae, or ae: a plain autoencoder with the same layers, for comparison.",
        flags=("--model",),
        choices=MODEL_TYPES,
        doc="`vae`, or `ae`: a deterministic autoencoder with the same layers (no KL, no sampling "
        "noise) to compare latent spaces with; it samples from a Gaussian fitted to its training "
        "codes, and `evaluate` reports its reconstruction error (it has no likelihood)",
    )
    latent_dim: int = setting(
        32, help="Latent dimensions.", at_least=1, at_most=limits.MAX_LATENT_DIM
    )
    hidden_sizes: list[int] = setting(
        factory=lambda: [512],
        help="Comma-separated dense layer sizes (mlp: all layers; conv: after the convolutions).",
        at_least=1,
        low_text="positive integers",
        at_most=limits.MAX_LAYER_WIDTH,
        high_text=_layers(limits.MAX_LAYER_WIDTH),
        doc="dense layers (mlp: all layers; conv: between the convolutions and the latent)",
    )
    conv_widths: list[int] = setting(
        factory=lambda: [32, 64],
        help="Comma-separated channel widths of the stride-2 conv layers.",
        aliases={"--hidden-dims": ()},
        at_most=limits.MAX_CONV_WIDTH,
        high_text=_layers(limits.MAX_CONV_WIDTH),
        doc="channels of each stride-2 conv layer",
    )
    decoder_hidden_sizes: list[int] | None = setting(
        None,
        help="Dense layer sizes of the decoder (default: mirror --hidden-sizes).",
        at_least=1,
        low_text="positive integers",
        at_most=limits.MAX_LAYER_WIDTH,
        high_text=_layers(limits.MAX_LAYER_WIDTH),
        doc="a different (e.g. cheaper) decoder",
        doc_default="mirror the encoder",
    )
    decoder_conv_widths: list[int] | None = setting(
        None,
        help="Conv widths of the decoder, encoder order (default: mirror --conv-widths).",
        at_most=limits.MAX_CONV_WIDTH,
        high_text=_layers(limits.MAX_CONV_WIDTH),
        doc="a different (e.g. cheaper) decoder; conv widths in encoder order",
        doc_default="mirror the encoder",
    )
    prior: str = setting(
        "mog",
        help=f"{_choices(PRIORS)}: N(0, I), or a mixture of Gaussians learned with the model "
        "(better likelihoods).",
        choices=PRIORS,
        doc='`mog`: a mixture of Gaussians learned with the model (the "MoG prior" of Tomczak & '
        "Welling 2018; the KL becomes the one-sample estimate log q(z\\|x) - log p(z), and "
        "`evaluate` averages it over its k samples), or `standard`: N(0, I) with the analytic KL. "
        "The mixture follows the shape the encoder gives the data instead of forcing it into a "
        "ball, worth about 3 nats of validation -ELBO on MNIST at equal epochs. Autoencoders have "
        "no prior and ignore it",
    )  # an autoencoder (model_type "ae") has no prior and ignores it
    prior_components: int = setting(
        500,
        help="Components of the mog prior.",
        at_least=1,
        at_most=limits.MAX_PRIOR_COMPONENTS,
        doc="components of the `mog` prior (each a mean, a diagonal variance and a weight: 32,500 "
        "parameters at latent 32)",
    )

    @property
    def effective_prior(self) -> str:
        """The prior the model gets: an autoencoder has none, whatever ``prior`` says."""
        family = FAMILIES.get(self.model_type)
        return self.prior if family is None or family.takes_prior_setting else "standard"


@dataclass
class ObjectiveConfig:
    """Likelihood, KL weight schedule and free bits."""

    likelihood: str = setting(
        "bce",
        help="bce (Bernoulli), mse (Gaussian: fixed or learned sigma), or the perceptual "
        "ssim / ms-ssim (no likelihood: evaluate refuses them).",
        flags=("--likelihood", "--loss"),
        aliases={"--likelihood-type": (), "--loss-type": ()},
        choices=LIKELIHOODS,
        doc="`bce` (Bernoulli on logits), `mse` (Gaussian with fixed or learned sigma), or the "
        "perceptual `ssim` / `ms-ssim` (see below)",
    )
    gaussian_sigma: float = setting(
        0.1,
        help="Standard deviation of the Gaussian likelihood (mse); with --learn-sigma its start.",
        above=0,
        doc="sigma of the Gaussian likelihood (with `--learn-sigma`: its starting value)",
    )
    learn_sigma: bool = setting(
        False,
        help="mse: learn one sigma per channel (colour data) instead of keeping it fixed.",
        flags=("--learn-sigma/--fixed-sigma",),
        doc="`mse`: learn one sigma per channel (kept at or above 0.001), the usual choice for "
        "colour data; the learned values are in the checkpoint's metadata",
        doc_default="fixed",
    )
    beta: float = setting(
        1.0,
        help="KL weight after warm-up.",
        aliases={"--kld-weight": ("--beta-schedule", "constant", "--beta")},
        at_least=0,
        low_text="zero or positive",
    )
    beta_schedule: str = setting(
        "linear",
        help=_choices(BETA_SCHEDULES),
        choices=BETA_SCHEDULES,
        doc="`constant`, `linear`, `sigmoid`, `cosine`, `cyclical`; stepped per optimisation step",
    )
    beta_warmup: str = setting(
        "3",
        help="Warm-up length: epochs (10) or steps (2000steps).",
        doc="warm-up length in epochs (`3`) or steps (`2000steps`)",
    )
    beta_cycles: int = setting(
        4,
        help="Cycles within the warm-up (cyclical schedule).",
        at_least=1,
        doc="`cyclical`: cycles within the warm-up",
    )
    beta_ramp_ratio: float = setting(
        0.5,
        help="Fraction of each cycle spent ramping (cyclical schedule).",
        above=0,
        at_most=1,
        low_text="in (0, 1]",
        high_text="in (0, 1]",
        doc="`cyclical`: fraction of each cycle spent ramping from 0 to beta",
    )
    free_bits: float = setting(
        0.0,
        help="Minimum KL per latent dimension in the training loss (nats; 0 = off).",
        at_least=0,
        low_text="zero or positive",
        doc="minimum KL (nats) per latent dimension in the training loss (reported KL is always "
        "the true one); needs `--prior standard`, whose KL splits over dimensions",
        doc_default="0",
    )


@dataclass
class TrainConfig:
    """Optimisation and bookkeeping."""

    epochs: int = setting(
        160,
        help="Epochs to train.",
        aliases={"--num-epochs": (), "--n-epochs": ()},
        at_least=1,
        doc="epochs (the default recipe: under an hour on a 2-core CPU with native bf16: 57.5 "
        "minutes measured, the cores shared with tests for part of it)",
    )
    batch_size: int = setting(
        128,
        help="Images per batch.",
        at_least=1,
        at_most=limits.MAX_BATCH_SIZE,
        doc="images per optimisation step; under torchrun the global batch, split between the "
        "processes",
    )
    optimizer: str = setting(
        "adam", help=_choices(OPTIMIZERS), choices=OPTIMIZERS, doc="`adam` or `adamw`"
    )
    lr: float = setting(2e-3, help="Learning rate.", above=0)
    weight_decay: float = setting(0.0, help="Weight decay.", at_least=0, doc_default="0")
    grad_clip: float = setting(
        0.0,
        help="Clip the gradient norm to this value (0 = off).",
        at_least=0,
        low_text="zero (off) or positive",
        doc="clip the gradient norm",
        doc_default="0 (off)",
    )
    lr_schedule: str = setting(
        "cosine",
        help=f"{_choices(LR_SCHEDULES)} (cosine: per epoch; plateau: on validation).",
        choices=LR_SCHEDULES,
        doc="`none`, `cosine` (per epoch, down to 0 at the last epoch), `plateau` (halve after 3 "
        "epochs without validation improvement)",
    )
    seed: int = setting(
        0,
        help="Random seed.",
        at_least=0,
        at_most=SEED_MAX,
        low_text=f"an integer from 0 to {SEED_MAX}",
        high_text=f"an integer from 0 to {SEED_MAX}",
        doc="seed for initialisation, shuffling, binarization and posterior noise",
    )
    device: str = setting(
        "auto",
        help=f"{_choices(DEVICES)} (auto: an accelerator when present).",
        aliases={"--no-accel": ("--device", "cpu")},
        choices=DEVICES,
        doc="`auto` (an accelerator when present: CUDA, then MPS), `cpu`, `cuda`, `mps`",
    )
    bf16: bool = setting(
        True,
        help="bf16 autocast where the hardware has native bf16 (GPUs, AVX512-BF16/AMX CPUs); loss "
        "in float32.",
        flags=("--bf16/--no-bf16",),
        doc="bf16 autocast where the hardware runs it natively: bf16 GPUs and CPUs with AVX512-BF16 "
        "or AMX (elsewhere float32). Weights, optimizer and the loss stay float32",
        doc_default="on",
    )
    # torch.compile the training forward pass: pays off on long GPU runs; compiling takes
    # seconds to a minute (and a C++ compiler on CPUs), so it is off by default.
    compile: bool = setting(
        False,
        help="torch.compile the training forward pass (worth it on long GPU runs; compiling "
        "takes seconds to a minute, and a C++ compiler on CPUs).",
        flags=("--compile/--no-compile",),
        doc="`torch.compile` the training forward pass (DDP-wrapped under torchrun). Worth it on "
        "long GPU runs; compiling takes seconds to a minute and, on CPUs, a C++ compiler (a "
        "failure is one line telling you to drop the flag). It does not pay on a 2-core CPU (figures in "
        "`benchmarks/README.md`). Checkpoints are the same format",
        doc_default="off",
    )
    sample_every: int = setting(
        1,
        help="Write sample and reconstruction grids every N epochs (0 = never).",
        aliases={"--sample-and-save-frequency": ()},
        at_least=0,
        low_text="zero (never) or positive",
        doc="grids every N epochs (0 = never)",
    )
    runs_dir: str = setting(
        "runs",
        help="Folder that holds run folders.",
        aliases={"--output-path": ()},
    )
    tracker: str = setting(
        "none",
        help=f"{_choices(TRACKERS)}: also record scalars, grids, config and final metrics "
        "(optional extras: poetry install --extras tensorboard / wandb; W&B runs offline "
        "unless WANDB_MODE says otherwise).",
        aliases={"--no-wandb": ("--tracker", "none")},
        choices=TRACKERS,
        doc="`tensorboard` or `wandb`: also record step and epoch scalars, the grids of every "
        "`--sample-every`, the config and the final metrics (see "
        "[Experiment trackers](../losses-and-trackers.md#experiment-trackers))",
    )


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

    def validate(self, given: Collection[str] = ()) -> RunConfig:
        """Check every value against its Option (choices, lower bounds), then the rules that
        join settings; raise ConfigError naming the setting at fault. ``given``: the settings a
        user set explicitly (some values are only a mistake when asked for)."""
        d, m, o = self.data, self.model, self.objective
        if d.dataset not in DATASETS and not d.dataset.startswith((FOLDER_PREFIX, HF_PREFIX)):
            _bad(
                "dataset",
                d.dataset,
                "one of " + ", ".join(DATASETS) + ", folder:PATH or hf:NAME_OR_PATH",
            )
        if d.dataset == FOLDER_PREFIX:
            _bad("dataset", d.dataset, "folder:PATH with a folder path")
        if d.dataset == HF_PREFIX:
            _bad("dataset", d.dataset, "hf:NAME_OR_PATH with a dataset name or folder")
        for name, option, value in self._values():
            _check_choice_and_low(name, option, value)
        if m.architecture == "mlp" and not m.hidden_sizes:
            _bad("hidden_sizes", m.hidden_sizes, "at least one size for the mlp architecture")
        if m.architecture == "conv" and (not m.conv_widths or any(w < 1 for w in m.conv_widths)):
            _bad("conv_widths", m.conv_widths, "one or more positive integers")
        if m.decoder_conv_widths is not None and (
            not m.decoder_conv_widths or any(w < 1 for w in m.decoder_conv_widths)
        ):
            _bad("decoder_conv_widths", m.decoder_conv_widths, "one or more positive integers")
        if o.learn_sigma and o.likelihood != "mse":
            _bad(
                "learn_sigma",
                True,
                "only with ",
                Setting("likelihood"),
                " mse (a Gaussian has a sigma to learn)",
            )
        parse_warmup(o.beta_warmup)
        chosen = PRIORS_BY_NAME.get(m.effective_prior)  # an unknown one is refused below
        if o.free_bits > 0 and chosen is not None and not chosen.per_dimension_kl:
            # Free bits clamp each dimension's KL, which only the standard prior splits per dimension.
            _bad(
                "free_bits",
                o.free_bits,
                "0 with the mog prior: add ",
                Setting("prior"),
                " standard",
            )
        self._check_bounds()
        family = FAMILIES[m.model_type]
        if not family.takes_prior_setting and "prior" in given and m.prior != STANDARD.name:
            # A family without a prior ignores the setting; asking for one is a mistake (a
            # resolved config.yaml of an autoencoder run holds the default, which is not).
            raise ConfigError(
                "invalid value for ",
                Setting("prior"),
                f": {m.prior!r} (an {family.label} has no prior: leave ",
                Setting("prior"),
                " out with ",
                Setting("model_type"),
                f" {m.model_type})",
            )
        return self

    def _values(self) -> list[tuple[str, Option, Any]]:
        """(name, Option, value) of every setting, in definition order."""
        return [
            (item.name, item.metadata["option"], getattr(section, item.name))
            for section in (self.data, self.model, self.objective, self.train)
            for item in dataclasses.fields(section)
        ]

    def _check_bounds(self) -> None:
        """Every number is finite, and sizes that decide an allocation stay below vae.limits'
        bounds (the Options' ``at_most``)."""
        for name, _option, value in self._values():
            if isinstance(value, float) and not math.isfinite(value):
                _bad(name, value, "a finite number")
        for name, option, value in self._values():
            _check_high(name, option, value)


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
_OPTIONS: dict[str, Option] = {
    f.name: f.metadata["option"] for cls in SECTIONS.values() for f in dataclasses.fields(cls)
}


def flag_of(name: str) -> str:
    """The flag a setting is given with on the command line: ``latent_dim`` -> ``--latent-dim``,
    ``model_type`` -> ``--model``; a name that is no training setting (another command's
    option) is hyphenated the same way."""
    option = _OPTIONS.get(name)
    if option is not None and option.flags:
        return option.flags[0].split("/")[0]
    return "--" + name.replace("_", "-")


def train_aliases() -> dict[str, list[str]]:
    """The seed projects' spellings of ``train`` options: alias -> the flags it stands for."""
    table: dict[str, list[str]] = {}
    for name, option in _OPTIONS.items():
        for alias, expansion in option.aliases.items():
            table[alias] = list(expansion) or [flag_of(name)]
    return table


def check_seed(seed: int, flag: str = "seed", count: int = 1) -> None:
    """Raise ConfigError unless ``seed`` .. ``seed + count - 1`` are all valid seeds; ``flag``
    is the setting's name."""
    if not 0 <= seed <= SEED_MAX - (count - 1):
        _bad(flag, seed, f"an integer from 0 to {SEED_MAX - (count - 1)}")


def _bad(name: str, value: Any, *expected: str) -> NoReturn:
    raise ConfigError(
        "invalid value for ", Setting(name), f": {value!r} (expected ", *expected, ")"
    )


def _check_choice_and_low(name: str, option: Option, value: Any) -> None:
    """The checks of one setting's Option that come before the rules joining settings."""
    if value is None:
        return
    if option.choices is not None and value not in option.choices:
        _bad(name, value, option.choices_text or "one of " + ", ".join(map(str, option.choices)))
    items = value if isinstance(value, list) else [value]
    if option.at_least is not None and any(not item >= option.at_least for item in items):
        _bad(name, value, option.low_text or _at_least_text(option.at_least))
    if option.above is not None and any(not item > option.above for item in items):
        _bad(name, value, option.low_text or "positive")
    if isinstance(value, float):  # a range, such as (0, 1]: checked whole, before finiteness
        _check_high(name, option, value)


def _at_least_text(bound: float) -> str:
    return "zero or positive" if bound == 0 else f"at least {bound}"


def _check_high(name: str, option: Option, value: Any) -> None:
    """The upper bound of one setting's Option (for a list: its items and its length)."""
    if value is None or option.at_most is None:
        return
    if isinstance(value, list):
        if len(value) > limits.MAX_LAYERS or max(value, default=0) > option.at_most:
            _bad(name, value, option.high_text or f"at most {option.at_most}")
    elif not value <= option.at_most:
        _bad(name, value, option.high_text or f"at most {option.at_most}")


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
            "invalid value for ",
            Setting(key),
            f": {text!r} (expected comma-separated integers)",
        ) from None


def parse_warmup(text: str | int | float) -> tuple[float, str]:
    """'10' or '10epochs' -> (10.0, 'epochs'); '2000steps' or '2000s' -> (2000.0, 'steps')."""
    match = re.fullmatch(
        r"\s*([0-9]*\.?[0-9]+)\s*(e|ep|epoch|epochs|s|step|steps)?\s*", str(text).lower()
    )
    if not match:
        raise ConfigError(
            "invalid value for ",
            Setting("beta_warmup"),
            f": {text!r} (expected a number of epochs, e.g. 10, or of steps, e.g. 2000steps)",
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
            f"{source}: invalid value for ", Setting(key), f": {value!r} (expected {expected})"
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
    except RecursionError:  # PyYAML composes nested lists and mappings recursively
        raise ConfigError(f"{path} is not a run configuration: nested too deeply") from None
    return RunConfig.from_dict(raw or {}, source=str(path))


def config_to_yaml(config: RunConfig) -> str:
    """The YAML text of a resolved configuration."""
    import yaml

    return yaml.safe_dump(config.to_dict(), sort_keys=False)


def resolve_data_dir(data_dir: str | None) -> Path:
    """--data-dir, else $VAE_DATA_DIR, else ./data."""
    chosen = data_dir or os.environ.get(DATA_DIR_ENV) or "data"
    return Path(chosen).expanduser()
