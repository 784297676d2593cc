"""Optimisation and bookkeeping: TrainConfig, the run configuration's ``train`` section."""

from __future__ import annotations

from dataclasses import dataclass

from vae import limits
from vae.config.choices import DEVICES, LR_SCHEDULES, OPTIMIZERS, TRACKERS
from vae.config.sections.help_text import choices_text
from vae.config.settings import SEED_MAX, setting


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
        "adam", help=choices_text(OPTIMIZERS), choices=OPTIMIZERS, doc="`adam` or `adamw`"
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
        help=f"{choices_text(LR_SCHEDULES)} (cosine: per epoch; plateau: on validation).",
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
        help=f"{choices_text(DEVICES)} (auto: an accelerator when present).",
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
        help=f"{choices_text(TRACKERS)}: also record scalars, grids, config and final metrics "
        "(optional extras: poetry install --extras tensorboard / wandb; W&B runs offline "
        "unless WANDB_MODE says otherwise).",
        aliases={"--no-wandb": ("--tracker", "none")},
        choices=TRACKERS,
        doc="`tensorboard` or `wandb`: also record step and epoch scalars, the grids of every "
        "`--sample-every`, the config and the final metrics (see "
        "[Experiment trackers](../losses-and-trackers.md#experiment-trackers))",
        resumable=True,
    )
