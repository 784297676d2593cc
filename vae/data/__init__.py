"""Datasets: named datasets (see :mod:`vae.data.registry`), a folder of images, a Hugging Face
dataset or images given in Python, as uint8 arrays held in memory or mapped from files.

One module per job: ``registry`` (every dataset name, once), ``source`` (what the source modules
share), ``raw`` (``load_raw``: which source module reads a dataset), the source modules ``idx``,
``cifar``, ``svhn``, ``medmnist``, ``trees``, ``celeba``, ``folder`` and ``hf``, ``decoding``
(image files through Pillow, on every core), ``cache`` (decoded images kept on disk as shards),
``storage`` (in memory or mapped, and the cache folder), ``mapped`` (images read from mapped
files), ``seeds`` (the fixed seeds), ``splits`` (validation split, binarization, fingerprints),
``batches`` (training and evaluation batches), ``in_memory`` (images given in Python) and
``test_images`` (the images a trained model is shown, and the settings that say which). No two
of them import each other.

Every name is importable from ``vae.data`` as well. They are looked up on first use: importing
this package must stay torch-free, because ``vae.config`` reads the registry and ``info`` starts
without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

# Where each name of ``vae.data`` is defined (module under vae.data, or a full module path).
_MODULES: dict[str, tuple[str, ...]] = {
    "registry": (
        "DATASETS",
        "FOLDER_PREFIX",
        "HF_PREFIX",
        "MEMORY_PREFIX",
        "REGISTRY",
        "DatasetEntry",
        "lookup",
        "markdown_table",
        "names_read_by",
    ),
    "vae.config": (
        "DATA_DIR_ENV",
        "IMAGE_TREE_DATASETS",
        "MEDMNIST_DATASETS",
        "CACHE_DIR_ENV",
        "DataConfig",
        "resolve_data_dir",
    ),
    "imageset": ("ImageSet", "to_float"),
    "seeds": (
        "SPLIT_SEED",
        "TEST_BINARIZATION_SEED",
        "TRAINING_BINARIZATION_SEED",
        "VALIDATION_BINARIZATION_SEED",
    ),
    "splits": (
        "DEFAULT_VAL_SIZE",
        "FINGERPRINT_FIELDS",
        "PREVIEW_IMAGES",
        "DataSplits",
        "bernoulli_pixels",
        "binarize_once",
        "carve_splits",
        "class_names",
        "data_difference",
        "effective_binarize",
        "fingerprint_without_labels",
        "labels_outside",
        "load_grey_splits",
        "load_splits",
        "split_fingerprint",
    ),
    "batches": (
        "batch_seed",
        "batches_per_epoch",
        "epoch_order",
        "evaluation_batches",
        "global_batch_size",
        "labelled_batches",
        "training_batches",
        "training_labels",
    ),
    "source": ("Loader", "dataset_error", "fixed_tenth_split"),
    "in_memory": ("images_in_memory", "memory_dataset", "memory_splits"),
    "raw": ("load_raw", "load_raw_test"),
    "cache": ("CACHE_VERSION", "EncodedSplit", "decoded_split"),
    "storage": ("CACHE_FOLDER", "MAP_ABOVE_BYTES", "Storage"),
    "mapped": ("MappedImages",),
    "hf": ("load_hf",),
    "decoding": (
        "DECODER_ERRORS",
        "IMAGE_EXTENSIONS",
        "MAX_IMAGE_PIXELS",
        "collect_image_files",
        "decode_image",
        "decode_into",
        "read_image_files",
    ),
    "test_images": ("ImageSource", "load_outlier_images", "load_test_set", "recorded_dataset"),
    "idx": ("IDX_DATASETS", "read_idx"),
    "celeba": ("CELEBA_CROP", "CELEBA_DEFAULT_SIZE"),
    "folder": ("DEFAULT_FOLDER_IMAGE_SIZE",),
    "trees": ("TINY_IMAGENET_URL",),
}
_HOME = {name: module for module, names in _MODULES.items() for name in names}
__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    """``vae.data.NAME``: imported from its module on first use, then kept here."""
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module 'vae.data' has no attribute '{name}'")
    path = module if "." in module else f"{__name__}.{module}"
    value = getattr(importlib.import_module(path), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
