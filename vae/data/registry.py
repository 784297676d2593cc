"""Every named dataset, once: where its files live, which module reads them, how they are fetched,
their default size, and the words of the README's table.

Torch-free on purpose: ``vae.config`` takes its dataset choices from here, and ``info`` must start
without importing torch. Adding a dataset whose files one of the source modules already reads
(an ImageNet-layout tree, another MedMNIST set) is one :class:`DatasetEntry` below plus its test.
"""

from __future__ import annotations

from dataclasses import dataclass

from vae.errors import DataError

# ``--dataset folder:PATH``: the user's own images, not a registry entry.
FOLDER_PREFIX = "folder:"
FOLDER_IMAGE_SIZE = 64


@dataclass(frozen=True)
class DatasetEntry:
    """One named dataset.

    ``source``: the module under ``vae.data`` whose ``load(entry, root, config)`` reads it.
    ``folder``: where its files live under the data root (also what errors tell people to
    create, and what a failed first load removes again). ``torchvision``: the torchvision class
    that downloads it, if one does. ``image_size``/``channels``: its size when ``--image-size``
    / ``--channels`` are not given (the data's own for stored tensors, the decoding size for
    image files). ``origin`` and ``notes``: the README table's "from" and "notes" columns.
    """

    name: str
    source: str
    folder: str
    origin: str
    notes: str
    image_size: int
    channels: int
    torchvision: str | None = None
    downloadable: bool = True
    # Image trees: the train and test folders under ``folder`` (None: a fixed tenth of train).
    tree_splits: tuple[str, str | None] = ("train", "val")


_MNIST_ORIGIN = "torchvision download when missing; the IDX files read directly"
_MEDMNIST_NOTES = (
    "`<data>/medmnist/{name}.npz`, read with NumPy (no pickle); downloads need "
    "`poetry install --extras medmnist`"
)

ENTRIES: tuple[DatasetEntry, ...] = (
    DatasetEntry("mnist", "idx", "MNIST/raw", _MNIST_ORIGIN, "`<data>/MNIST/raw/`", 28, 1, "MNIST"),
    DatasetEntry(
        "fashionmnist",
        "idx",
        "FashionMNIST/raw",
        _MNIST_ORIGIN,
        "`<data>/FashionMNIST/raw/`",
        28,
        1,
        "FashionMNIST",
    ),
    DatasetEntry(
        "kmnist", "idx", "KMNIST/raw", _MNIST_ORIGIN, "`<data>/KMNIST/raw/`", 28, 1, "KMNIST"
    ),
    DatasetEntry(
        "cifar10",
        "cifar",
        "cifar-10-batches-py",
        "torchvision download when missing (its pickled batches)",
        "`<data>/cifar-10-batches-py/`",
        32,
        3,
        "CIFAR10",
    ),
    DatasetEntry(
        "cifar100",
        "cifar",
        "cifar-100-python",
        "torchvision download when missing (its pickled batches)",
        "`<data>/cifar-100-python/`",
        32,
        3,
        "CIFAR100",
    ),
    DatasetEntry(
        "svhn",
        "svhn",
        "svhn",
        "torchvision download when missing, read with SciPy",
        "`<data>/svhn/*_32x32.mat`",
        32,
        3,
        "SVHN",
    ),
    DatasetEntry(
        "celeba",
        "celeba",
        "celeba",
        "torchvision download when missing",
        "`<data>/celeba/img_align_celeba/`; official partitions, 148-px centre crop",
        64,
        3,
        "CelebA",
    ),
    *(
        DatasetEntry(
            name,
            "medmnist",
            "medmnist",
            "MedMNIST `.npz`, downloaded when missing",
            _MEDMNIST_NOTES.format(name=name) + extra,
            28,
            1,
        )
        for name, extra in (
            ("chestmnist", "; multi-label: its first finding is the label"),
            ("octmnist", ""),
            ("tissuemnist", ""),
            ("pneumoniamnist", ""),
        )
    ),
    DatasetEntry(
        "tinyimagenet",
        "trees",
        "tiny-imagenet-200",
        "cs231n's zip, downloaded when missing",
        "`<data>/tiny-imagenet-200/train/`, `val/`",
        64,
        3,
    ),
    DatasetEntry(
        "places365",
        "trees",
        "places365",
        "torchvision download when missing (256 px version)",
        "`<data>/places365/train/`, `val/`",
        64,
        3,
        "Places365",
    ),
    DatasetEntry(
        "dtd",
        "trees",
        "dtd",
        "torchvision download when missing",
        "`<data>/dtd/dtd/images/`; a fixed tenth is the test split",
        64,
        3,
        "DTD",
        tree_splits=("dtd/images", None),
    ),
    DatasetEntry(
        "imagenet",
        "trees",
        "imagenet",
        "your copy (it cannot be downloaded)",
        "`<data>/imagenet/train/<class>/*.JPEG`, `val/<class>/*.JPEG`",
        64,
        3,
        downloadable=False,
    ),
)

REGISTRY: dict[str, DatasetEntry] = {entry.name: entry for entry in ENTRIES}
DATASETS: tuple[str, ...] = tuple(REGISTRY)


def names_read_by(source: str) -> tuple[str, ...]:
    """The dataset names that one source module reads, in registry order."""
    return tuple(entry.name for entry in ENTRIES if entry.source == source)


def lookup(name: str) -> DatasetEntry:
    """The entry of a named dataset; a DataError listing the known names otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        known = ", ".join(DATASETS)
        raise DataError(
            f"unknown dataset '{name}' (known: {known}, or {FOLDER_PREFIX}PATH)"
        ) from None


def markdown_table() -> str:
    """The README's datasets table, one row a name, ``folder:PATH`` last."""
    rows = ["| name | from | size | notes |", "|---|---|---|---|"]
    for entry in ENTRIES:
        colour = "grey" if entry.channels == 1 else "RGB"
        rows.append(
            f"| `{entry.name}` | {entry.origin} | {entry.image_size} px {colour} | {entry.notes} |"
        )
    rows.append(
        f"| `{FOLDER_PREFIX}PATH` | your images | {FOLDER_IMAGE_SIZE} px | every image under "
        "PATH; a fixed tenth is the test split |"
    )
    return "\n".join(rows) + "\n"


TABLE_START, TABLE_END = "<!-- datasets -->", "<!-- /datasets -->"


def with_table(readme: str) -> str:
    """``readme`` with the text between its ``<!-- datasets -->`` markers replaced by
    :func:`markdown_table` (a ValueError when the markers are missing)."""
    start, end = readme.find(TABLE_START), readme.find(TABLE_END)
    if start < 0 or end < start:
        raise ValueError(f"no {TABLE_START} ... {TABLE_END} markers")
    return readme[: start + len(TABLE_START)] + "\n" + markdown_table() + readme[end:]
