"""What the images are: DataConfig, the run configuration's ``data`` section."""

from __future__ import annotations

from dataclasses import dataclass

from vae import limits
from vae.config.choices import BINARIZATIONS, DATASETS, STORAGES
from vae.config.sections.help_text import choices_text
from vae.config.settings import setting

MAX_DECODE_WORKERS = 256  # processes; far above any machine's cores, bounds a mistyped value


@dataclass
class DataConfig:
    """Which images to train on and how to prepare them."""

    dataset: str = setting(
        "mnist",
        help=f"{choices_text(DATASETS)}, folder:PATH for a folder of images, or hf:NAME_OR_PATH "
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
        help=f"For bce: {choices_text(BINARIZATIONS)} (dynamic: fresh draw per use).",
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
        help=f"{choices_text(STORAGES)}: where decoded images live while training (auto: mapped from "
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
