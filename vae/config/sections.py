"""The four sections of a run configuration, one field per setting, each defined once with its
Option: what the images are (DataConfig), the model (ModelConfig), its objective
(ObjectiveConfig) and its optimisation and bookkeeping (TrainConfig)."""

from __future__ import annotations

from dataclasses import dataclass

from vae import limits
from vae.config.choices import (
    ARCHITECTURES,
    BETA_SCHEDULES,
    BINARIZATIONS,
    DATASETS,
    DEVICES,
    ELBO_OBJECTIVE,
    LIKELIHOODS,
    LR_SCHEDULES,
    MODEL_TYPES,
    OBJECTIVES,
    OPTIMIZERS,
    PRIORS,
    STORAGES,
    TRACKERS,
)
from vae.config.settings import SEED_MAX, setting
from vae.models import FAMILIES

MAX_DECODE_WORKERS = 256  # processes; far above any machine's cores, bounds a mistyped value


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
        resumable=True,
    )
    download: bool = setting(
        True,
        help="Download missing named datasets.",
        flags=("--download/--no-download",),
        doc="fetch missing named datasets",
        doc_default="download",
        resumable=True,
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
        resumable=True,
    )
    cache_dir: str | None = setting(
        None,
        help="Folder for decoded image shards (default: $VAE_CACHE_DIR, else DATA_DIR/vae-cache).",
        doc="folder for the decoded image shards of image folders, trees, CelebA and `hf:` "
        "datasets; where it cannot be written, decoded images stay in memory (with a note)",
        doc_default="`$VAE_CACHE_DIR`, else `<data>/vae-cache`",
        resumable=True,
    )
    decode_workers: int | None = setting(
        None,
        help="Processes that decode image files the first time (default: every core; 0 or 1: "
        "this process alone).",
        aliases={"--num-workers": ()},
        at_least=0,
        at_most=MAX_DECODE_WORKERS,
        doc="processes that decode image files into the cache the first time; 0 or 1 decode in "
        "the training process itself (what `--num-workers 0` means to a PyTorch user)",
        doc_default="every core",
        resumable=True,
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
        help="vae; ae: a plain autoencoder with the same layers, for comparison; cvae: a "
        "VAE conditioned on the class label (labelled data); hvae: a "
        "hierarchical VAE (--latent-groups groups of latents, top-down inference).",
        flags=("--model",),
        choices=MODEL_TYPES,
        doc="`vae`; `ae`: a deterministic autoencoder with the same layers (no KL, no sampling "
        "noise) to compare latent spaces with; it samples from a Gaussian fitted to its training "
        "codes, and `evaluate` reports its reconstruction error (it has no likelihood); `cvae`: a "
        "conditional VAE, its encoder and decoder given each image's class label (labelled data "
        "only; `generate --label`; [Conditional VAE](../conditional.md)); `hvae`: a "
        "hierarchical VAE, `--latent-groups` groups of latents with top-down inference and "
        "residual cells ([Hierarchical VAE](../hierarchical.md))",
    )
    latent_dim: int = setting(
        32,
        help="Latent dimensions (hvae: of all its groups together).",
        at_least=1,
        at_most=limits.MAX_LATENT_DIM,
        doc="latent dimensions; a hierarchical VAE's, split evenly between its `--latent-groups` "
        "groups",
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
    conv_widths: list[int] | None = setting(
        None,
        help="Comma-separated channel widths of the stride-2 conv layers (default: auto, "
        "from the image size: stages until the map is at most 8x8, 32, 64, 128, 256, 256...).",
        aliases={"--hidden-dims": ()},
        at_most=limits.MAX_CONV_WIDTH,
        high_text=_layers(limits.MAX_CONV_WIDTH),
        none_word="auto",
        doc="channels of each stride-2 conv layer. `auto`: from the image size, stride-2 stages "
        "until the feature map is at most 8x8 (28 and 32 px: two, `32,64`; 64 px: three, "
        "`32,64,128`; 256 px: five, `32,64,128,256,256`), each twice as wide as the one before "
        "up to 256; the widths used are recorded in `config.yaml` and the checkpoint",
        doc_default="`auto`",
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
        help=f"{_choices(PRIORS)}: N(0, I), a mixture of Gaussians learned with the model "
        "(better likelihoods), or the VampPrior (a mixture of the encoder's posteriors at "
        "--pseudo-inputs learned images).",
        choices=PRIORS,
        doc='`mog`: a mixture of Gaussians learned with the model (the "MoG prior" of Tomczak & '
        "Welling 2018; the KL becomes the one-sample estimate log q(z\\|x) - log p(z), and "
        "`evaluate` averages it over its k samples), `vamp`: the VampPrior of the same paper, a "
        "mixture of the encoder's own posteriors at `--pseudo-inputs` learned images (the same "
        "KL estimate), or `standard`: N(0, I) with the analytic KL. "
        "The mixtures follow the shape the encoder gives the data instead of forcing it into a "
        "ball (what that gains on MNIST: [Results](../results.md)). Autoencoders have no prior "
        "and ignore it",
    )  # an autoencoder (model_type "ae") has no prior and ignores it
    prior_components: int = setting(
        500,
        help="Components of the mog prior.",
        at_least=1,
        at_most=limits.MAX_PRIOR_COMPONENTS,
        doc="components of the `mog` prior (each a mean, a diagonal variance and a weight: 32,500 "
        "parameters at latent 32)",
    )
    pseudo_inputs: int = setting(
        500,
        help="Pseudo-inputs of the vamp prior (learned images; only with --prior vamp).",
        at_least=1,
        at_most=limits.MAX_PSEUDO_INPUTS,
        doc="pseudo-inputs of the `vamp` prior, only with `--prior vamp`: learned images, each a "
        "component (392,000 parameters at 28x28 and 500; every training step encodes all of "
        "them)",
    )
    latent_groups: int = setting(
        2,
        help="hvae: groups of latents; --latent-dim is split evenly between them.",
        at_least=2,
        at_most=limits.MAX_LATENT_GROUPS,
        doc="`hvae` only: groups of latent variables, drawn top-down, each `--latent-dim` / N "
        "dimensions; the top group's prior is `--prior`'s",
    )
    cell_channels: int = setting(
        32,
        help="hvae: hidden channels of each residual cell.",
        at_least=1,
        at_most=limits.MAX_CONV_WIDTH,
        doc="`hvae` only: hidden channels of its residual cells (two per group: one in the "
        "bottom-up pass, one in the top-down pass); their feature maps have the last "
        "`--conv-widths` (bottom-up) and `--decoder-conv-widths` (top-down) channels",
    )

    @property
    def effective_prior(self) -> str:
        """The prior the model gets: an autoencoder has none, whatever ``prior`` says."""
        family = FAMILIES.get(self.model_type)
        return self.prior if family is None or family.takes_prior_setting else "standard"


@dataclass
class ObjectiveConfig:
    """Likelihood, KL weight schedule, free bits, and the bound trained (ELBO or IWAE)."""

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
    objective: str = setting(
        ELBO_OBJECTIVE,
        help=f"{_choices(OBJECTIVES)}: what training maximises (iwae: the importance-weighted "
        "bound of --iw-samples samples per image; needs a likelihood and --beta 1).",
        choices=OBJECTIVES,
        doc="`elbo`, or `iwae`: the importance-weighted bound of `--iw-samples` posterior samples "
        "per image (Burda et al. 2016), log (1/K) sum_k p(x,z_k) / q(z_k\\|x); it needs a "
        "likelihood (`bce` or `mse`, not an autoencoder), `--beta 1` and no free bits, and picks "
        "the best checkpoint on its own validation figure (see "
        "[Losses and trackers](../losses-and-trackers.md#the-iwae-bound---objective-iwae))",
    )
    iw_samples: int = setting(
        5,
        help="iwae: posterior samples per image (K) of the bound; 1 gives the ELBO.",
        at_least=1,
        at_most=limits.MAX_IW_SAMPLES,
        doc="`iwae`: posterior samples per image (K); each step decodes K times the batch. "
        "1 gives the ELBO (with the KL sampled)",
    )


@dataclass
class TrainConfig:
    """Optimisation and bookkeeping."""

    epochs: int = setting(
        160,
        help="Epochs to train.",
        aliases={"--num-epochs": (), "--n-epochs": ()},
        at_least=1,
        doc="epochs to train (how long the default recipe takes: [Results](../results.md))",
        resumable=True,
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
    grad_skip: float = setting(
        0.0,
        help="Skip optimisation steps whose gradient norm is above this (0 = off).",
        at_least=0,
        low_text="zero (off) or positive",
        doc="skip (no update, Adam's moments untouched) every step whose gradient norm before "
        "clipping is above this, as NVAE and VDVAE do against a hierarchy's rare outlier "
        "gradients; the run's count is `skipped_steps` in `metrics.jsonl`. Each step then reads "
        "the norm on the host (a GPU waits for it)",
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
        resumable=True,
    )
    bf16: bool = setting(
        True,
        help="bf16 autocast where the hardware has native bf16 (GPUs, AVX512-BF16/AMX CPUs); loss "
        "in float32.",
        flags=("--bf16/--no-bf16",),
        doc="bf16 autocast where the hardware runs it natively: bf16 GPUs and CPUs with AVX512-BF16 "
        "or AMX (elsewhere float32). Weights, optimizer and the loss stay float32",
        doc_default="on",
        resumable=True,
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
        resumable=True,
    )
    sample_every: int = setting(
        1,
        help="Write sample and reconstruction grids every N epochs (0 = never).",
        aliases={"--sample-and-save-frequency": ()},
        at_least=0,
        low_text="zero (never) or positive",
        doc="grids every N epochs (0 = never)",
        resumable=True,
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
        resumable=True,
    )
