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
# ``--dataset hf:NAME_OR_PATH``: a Hugging Face dataset (vae.data.hf), not a registry entry.
HF_PREFIX = "hf:"
# Images given in Python (``vae.train(data=...)``, vae.data.in_memory): recorded as
# ``memory:NAME``; vae has no files to read them from again.
MEMORY_PREFIX = "memory:"
FOLDER_IMAGE_SIZE = 64


@dataclass(frozen=True, kw_only=True)
class DatasetEntry:
    """One named dataset.

    ``source``: the module under ``vae.data`` whose ``load(entry, root, config)`` reads it.
    ``folder``: where its files live under the data root (also what errors tell people to
    create, and what a failed first load removes again). ``torchvision``: the torchvision class
    that downloads it, if one does; ``downloadable`` False: people supply the files themselves.
    ``image_size``/``channels``: its size when ``--image-size`` / ``--channels`` are not given
    (the data's own for stored tensors, the decoding size for image files). ``tree_splits``:
    an image tree's train and test folders. ``origin`` and ``notes``: the README table's "from" and "notes" columns.
    ``classes``: the names of its labels' values, in label order, where they are fixed (a
    conditional model records them; others take the names their files give, or numbers).
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
    classes: tuple[str, ...] = ()


_GREY_28 = {"image_size": 28, "channels": 1}
_RGB_32 = {"image_size": 32, "channels": 3}
_RGB_64 = {"image_size": 64, "channels": 3}  # decoded from image files at this size by default
_DIGITS = tuple(str(digit) for digit in range(10))
# As torchvision names them (MNIST's own are "0 - zero"...: digits are shorter to ask for).
_FASHION = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
_KMNIST = ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo")
_CIFAR10 = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
# MedMNIST's INFO labels (chestmnist: the first of its 14 findings, present or not).
_MEDMNIST_CLASSES = {
    "chestmnist": ("no atelectasis", "atelectasis"),
    "octmnist": ("choroidal neovascularization", "diabetic macular edema", "drusen", "normal"),
    "tissuemnist": (
        "Collecting Duct, Connecting Tubule",
        "Distal Convoluted Tubule",
        "Glomerular endothelial cells",
        "Interstitial endothelial cells",
        "Leukocytes",
        "Podocytes",
        "Proximal Tubule Segments",
        "Thick Ascending Limb",
    ),
    "pneumoniamnist": ("normal", "pneumonia"),
}


def _mnist_family(name: str, torchvision: str, classes: tuple[str, ...]) -> DatasetEntry:
    folder = f"{torchvision}/raw"
    return DatasetEntry(
        name=name,
        source="idx",
        folder=folder,
        torchvision=torchvision,
        classes=classes,
        origin="torchvision download when missing; the IDX files read directly",
        notes=f"`<data>/{folder}/`",
        **_GREY_28,
    )


def _medmnist(name: str, notes: str = "") -> DatasetEntry:
    return DatasetEntry(
        name=name,
        source="medmnist",
        folder="medmnist",
        classes=_MEDMNIST_CLASSES[name],
        origin="MedMNIST `.npz`, downloaded when missing",
        notes=f"`<data>/medmnist/{name}.npz`, read with NumPy (no pickle); downloads need "
        f"`poetry install --extras medmnist`{notes}",
        **_GREY_28,
    )


ENTRIES: tuple[DatasetEntry, ...] = (
    _mnist_family("mnist", "MNIST", _DIGITS),
    _mnist_family("fashionmnist", "FashionMNIST", _FASHION),
    _mnist_family("kmnist", "KMNIST", _KMNIST),
    DatasetEntry(
        name="cifar10",
        source="cifar",
        folder="cifar-10-batches-py",
        torchvision="CIFAR10",
        classes=_CIFAR10,
        origin="torchvision download when missing (its pickled batches)",
        notes="`<data>/cifar-10-batches-py/`",
        **_RGB_32,
    ),
    DatasetEntry(
        name="cifar100",
        source="cifar",
        folder="cifar-100-python",
        torchvision="CIFAR100",
        origin="torchvision download when missing (its pickled batches)",
        notes="`<data>/cifar-100-python/`",
        **_RGB_32,
    ),
    DatasetEntry(
        name="svhn",
        source="svhn",
        folder="svhn",
        torchvision="SVHN",
        classes=_DIGITS,
        origin="torchvision download when missing, read with SciPy",
        notes="`<data>/svhn/*_32x32.mat`",
        **_RGB_32,
    ),
    DatasetEntry(
        name="celeba",
        source="celeba",
        folder="celeba",
        torchvision="CelebA",
        origin="torchvision download when missing",
        notes="`<data>/celeba/img_align_celeba/`; official partitions, 148-px centre crop",
        **_RGB_64,
    ),
    _medmnist("chestmnist", "; multi-label: its first finding is the label"),
    _medmnist("octmnist"),
    _medmnist("tissuemnist"),
    _medmnist("pneumoniamnist"),
    DatasetEntry(
        name="tinyimagenet",
        source="trees",
        folder="tiny-imagenet-200",
        origin="cs231n's zip, downloaded when missing",
        notes="`<data>/tiny-imagenet-200/train/`, `val/`",
        **_RGB_64,
    ),
    DatasetEntry(
        name="places365",
        source="trees",
        folder="places365",
        torchvision="Places365",
        origin="torchvision download when missing (256 px version)",
        notes="`<data>/places365/train/`, `val/`",
        **_RGB_64,
    ),
    DatasetEntry(
        name="dtd",
        source="trees",
        folder="dtd",
        torchvision="DTD",
        tree_splits=("dtd/images", None),  # as torchvision writes it; no test folder
        origin="torchvision download when missing",
        notes="`<data>/dtd/dtd/images/`; a fixed tenth is the test split",
        **_RGB_64,
    ),
    DatasetEntry(
        name="imagenet",
        source="trees",
        folder="imagenet",
        downloadable=False,
        origin="your copy (it cannot be downloaded)",
        notes="`<data>/imagenet/train/<class>/*.JPEG`, `val/<class>/*.JPEG`",
        **_RGB_64,
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
            f"unknown dataset '{name}' (known: {known}, {FOLDER_PREFIX}PATH or "
            f"{HF_PREFIX}NAME_OR_PATH)"
        ) from None


def markdown_table() -> str:
    """The datasets table of docs/datasets.md, one row a name, then ``folder:PATH``,
    ``hf:NAME_OR_PATH`` and ``memory:NAME``."""
    rows = ["| name | from | size | notes |", "|---|---|---|---|"]
    for entry in ENTRIES:
        colour = "grey" if entry.channels == 1 else "RGB"
        rows.append(
            f"| `{entry.name}` | {entry.origin} | {entry.image_size} px {colour} | {entry.notes} |"
        )
    rows.append(
        f"| `{FOLDER_PREFIX}PATH` | your images | {FOLDER_IMAGE_SIZE} px | every image under "
        "PATH; a fixed tenth is the test split; labelled by its sub-folders when every image is "
        "in one (one sub-folder per class) |"
    )
    rows.append(
        f"| `{HF_PREFIX}NAME_OR_PATH` | a Hugging Face dataset (`poetry install --extras hf`) | "
        f"{FOLDER_IMAGE_SIZE} px | a hub name, a `save_to_disk` folder or a folder of parquet "
        "files; `--hf-split`, `--hf-image-column`, `--hf-label-column` |"
    )
    rows.append(
        f"| `{MEMORY_PREFIX}NAME` | images given to `vae.train` in Python (a tensor, an array or "
        "a `Dataset`) | their own | recorded by runs on them; a fixed tenth is the test split; "
        "no file to read again, so other commands take their images with `--input` |"
    )
    return "\n".join(rows) + "\n"
