"""The GPU figures, as one prepared check for a lent GPU machine (datasets do not travel there).

    poetry run python benchmarks/gpu.py --smoke            # about 30 s: every part at tiny size
    poetry run python benchmarks/gpu.py --out gpu-results  # the full check, at most ~5 minutes

Builds synthetic uint8 data of MNIST's shape (IDX files, 60,000 + 10,000 images 28x28) and of
CIFAR-10's (an SVHN-layout ``.mat``, 50,000 + 10,000 images 3x32x32) in a temporary folder, then
measures through the product's own code paths, data resident on the device:

- the default MNIST recipe (``train`` defaults, bf16 where supported): images/s and epoch time at
  batch 128 and 1024, with and without ``--compile``;
- the CIFAR-10 recipe (docs/datasets.md: mse with learned sigma, conv 64,128,256, latent 128,
  batch 256): epoch time;
- the k = 5000 importance-weighted evaluation of the shipped MNIST model: images/s;
- with two or more GPUs, the nccl torchrun step time of the MNIST recipe (2 processes).

Epoch figures are the runs' own (``metrics.jsonl``: ``epoch_seconds``, ``images_per_second``),
the median over the epochs after the first (which includes compilation and warm-up). Writes
``gpu.json`` and ``gpu.md`` (a markdown table) to ``--out``. ``--device cpu`` runs the same logic
on the CPU (the test suite does, at ``--tiny`` size).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "pretrained" / "checkpoint_best.safetensors"

# The CIFAR-10 recipe of docs/datasets.md, on CIFAR-10-shaped data read through the SVHN loader.
CIFAR_RECIPE = {
    "dataset": "svhn",
    "likelihood": "mse",
    "learn_sigma": True,
    "conv_widths": [64, 128, 256],
    "hidden_sizes": [512],
    "latent_dim": 128,
    "batch_size": 256,
}


@dataclass(frozen=True)
class Sizes:
    """How much data and work each part gets."""

    mnist_train: int
    cifar_train: int
    test: int
    epochs: int
    eval_images: int
    eval_k: int
    batches: tuple[int, ...]
    val: int


FULL = Sizes(60_000, 50_000, 10_000, 4, 1_000, 5_000, (128, 1024), 5_000)
SMOKE = Sizes(4_000, 2_000, 500, 2, 20, 5_000, (128, 1024), 500)
TINY = Sizes(80, 40, 20, 2, 2, 20, (32,), 8)  # the test suite, on the CPU


@dataclass
class Figure:
    """One measured row of the table."""

    part: str
    setting: str
    images_per_second: float | None
    epoch_seconds: float | None
    note: str = ""


def write_idx(path: Path, array: np.ndarray) -> None:
    """``array`` (uint8) as an IDX file, the layout of MNIST's raw files."""
    with open(path, "wb") as handle:
        handle.write(struct.pack(">I", 0x0800 + array.ndim))
        handle.write(struct.pack(">" + "I" * array.ndim, *array.shape))
        handle.write(np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def make_data(root: Path, sizes: Sizes, seed: int = 0) -> None:
    """Synthetic MNIST (IDX) and CIFAR-10-shaped (SVHN ``.mat``) data under ``root``: smooth
    random blobs rather than noise, so that losses behave as on images."""
    from scipy.io import savemat

    generator = np.random.default_rng(seed)

    def images(count: int, channels: int, side: int) -> np.ndarray:
        coarse = generator.integers(0, 256, (count, channels, side // 4, side // 4), np.uint8)
        return coarse.repeat(4, axis=2).repeat(4, axis=3)

    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, count in (("train", sizes.mnist_train), ("t10k", sizes.test)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images(count, 1, 28)[:, 0])
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", generator.integers(0, 10, count, np.uint8))
    svhn = root / "svhn"
    svhn.mkdir()
    for split, count in (("train", sizes.cifar_train), ("test", sizes.test)):
        # SVHN's layout: X is [32, 32, 3, N], y in 1..10.
        x = images(count, 3, 32).transpose(2, 3, 1, 0)
        y = generator.integers(1, 11, (count, 1), np.uint8)
        savemat(str(svhn / f"{split}_32x32.mat"), {"X": x, "y": y})


def training_epochs(root: Path, overrides: dict[str, Any], sizes: Sizes, device: str) -> Figure:
    """Train ``epochs`` epochs with ``overrides`` over the defaults; the run's own epoch figures."""
    from vae.config import RunConfig
    from vae.reporting import Reporter
    from vae.training import train

    config = RunConfig().override(
        {
            "data_dir": str(root),
            "download": False,
            "sample_every": 0,
            "device": device,
            "epochs": sizes.epochs,
            "val_size": sizes.val,
            **overrides,
        }
    )
    with tempfile.TemporaryDirectory() as folder:
        train(config, Path(folder) / "run", reporter=Reporter())  # the base class says nothing
        records = [json.loads(line) for line in (Path(folder) / "run" / "metrics.jsonl").open()]
    warm = records[1:] or records
    return Figure(
        part="",
        setting="",
        images_per_second=statistics.median(r["images_per_second"] for r in warm),
        epoch_seconds=statistics.median(r["epoch_seconds"] for r in warm),
    )


def evaluation_rate(root: Path, sizes: Sizes, device: str) -> Figure:
    """Images/s of the k-sample importance-weighted evaluation of the shipped MNIST model."""
    from vae.data import ImageSource
    from vae.evaluation import evaluate_checkpoint

    source = ImageSource(dataset="mnist", data_dir=str(root), download=False)
    # A first, small call pays for start-up (CUDA context, kernels) outside the timing.
    evaluate_checkpoint(SHIPPED, replace(source, limit=2), k=sizes.eval_k, device=device)
    started = time.perf_counter()
    evaluate_checkpoint(
        SHIPPED, replace(source, limit=sizes.eval_images), k=sizes.eval_k, device=device
    )
    seconds = time.perf_counter() - started
    return Figure(
        "evaluate (shipped MNIST model)",
        f"k = {sizes.eval_k}, {sizes.eval_images} images",
        sizes.eval_images / seconds,
        None,
    )


def torchrun_step(root: Path, sizes: Sizes, processes: int) -> Figure:
    """Seconds per step of the MNIST recipe under torchrun with nccl, ``processes`` GPUs."""
    with tempfile.TemporaryDirectory() as folder:
        command = [
            sys.executable, "-m", "torch.distributed.run", "--standalone",
            "--nproc-per-node", str(processes), "-m", "vae", "train", "ddp",
            "--runs-dir", folder, "--data-dir", str(root), "--no-download",
            "--epochs", str(sizes.epochs), "--val-size", str(sizes.val), "--sample-every", "0",
            "--batch-size", "1024", "--quiet",
        ]  # fmt: skip
        subprocess.run(command, check=True, timeout=240)
        records = [json.loads(line) for line in (Path(folder) / "ddp" / "metrics.jsonl").open()]
    warm = records[1:] or records
    per_second = statistics.median(r["images_per_second"] for r in warm)
    return Figure(
        f"torchrun, {processes} GPUs (nccl)",
        "MNIST recipe, global batch 1024",
        per_second,
        statistics.median(r["epoch_seconds"] for r in warm),
        note=f"{1024 / per_second * 1000:.2f} ms per step",
    )


def measure(root: Path, sizes: Sizes, device: str, compile_too: bool) -> list[Figure]:
    """Every figure, in the order of the table; a part that fails is a row saying why."""
    parts: list[tuple[str, str, Callable[[], Figure]]] = []
    for batch in sizes.batches:
        for compiled in (False, True) if compile_too else (False,):
            overrides = {"batch_size": batch, "compile": compiled}
            parts.append(
                (
                    "MNIST default recipe",
                    f"batch {batch}" + (", --compile" if compiled else ""),
                    lambda o=overrides: training_epochs(root, o, sizes, device),
                )
            )
    parts.append(
        (
            "CIFAR-10 recipe (synthetic 3x32x32)",
            "batch 256",
            lambda: training_epochs(root, CIFAR_RECIPE, sizes, device),
        )
    )
    figures = [run_part(part, setting, work) for part, setting, work in parts]
    figures.append(run_part("", "", lambda: evaluation_rate(root, sizes, device)))
    gpus = _gpu_count() if device != "cpu" else 0
    if gpus >= 2:
        figures.append(run_part("", "", lambda: torchrun_step(root, sizes, 2)))
    else:
        figures.append(
            run_part(
                "torchrun (nccl)",
                "-",
                lambda: Figure("", "", None, None, f"not measured: {gpus} GPU(s) here"),
            )
        )
    return figures


def run_part(part: str, setting: str, work: Callable[[], Figure]) -> Figure:
    """``work``'s figure, labelled, with its wall time; a failure becomes its row's note."""
    started = time.perf_counter()
    try:
        figure = work()
    except Exception as error:  # noqa: BLE001 - one failing part must not lose the others
        figure = Figure(part, setting, None, None, f"failed: {type(error).__name__}: {error}")
    figure.part = figure.part or part
    figure.setting = figure.setting or setting
    wall = f"{time.perf_counter() - started:.0f} s wall"
    figure.note = f"{figure.note}; {wall}" if figure.note else wall
    print(table_row(figure), flush=True)
    return figure


def _gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def table_row(figure: Figure) -> str:
    rate = f"{figure.images_per_second:,.0f}" if figure.images_per_second is not None else "-"
    epoch = f"{figure.epoch_seconds:.2f}" if figure.epoch_seconds is not None else "-"
    return f"| {figure.part} | {figure.setting} | {rate} | {epoch} | {figure.note} |"


def markdown(figures: list[Figure], machine: str) -> str:
    """The table for benchmarks/README.md."""
    lines = [
        f"Machine: {machine}",
        "",
        "| part | setting | images/s | epoch (s) | note |",
        "|---|---|---|---|---|",
        *(table_row(figure) for figure in figures),
    ]
    return "\n".join(lines) + "\n"


def describe(device: str) -> str:
    import platform

    import torch

    parts = [f"{os.cpu_count()} CPU cores", f"torch {torch.__version__}", f"device {device}"]
    if device != "cpu" and torch.cuda.is_available():
        parts.append(f"{_gpu_count()} x {torch.cuda.get_device_name(0)}")
    return f"{platform.node()}: " + ", ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--smoke", action="store_true", help="every part at small size (~30 s)")
    size.add_argument("--tiny", action="store_true", help="the test suite's size (CPU)")
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--no-compile", action="store_true", help="skip the --compile rows")
    parser.add_argument("--out", type=Path, default=Path("gpu-results"), help="output folder")
    args = parser.parse_args(argv)
    sizes = TINY if args.tiny else SMOKE if args.smoke else FULL
    if args.device != "cpu" and not _gpu_count():
        print("error: no CUDA GPU here (use --device cpu to check the logic)", file=sys.stderr)
        return 2
    machine = describe(args.device)
    print(machine, flush=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        make_data(root, sizes)
        figures = measure(root, sizes, args.device, compile_too=not args.no_compile)
    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "machine": machine,
        "sizes": asdict(sizes),
        "seconds": time.perf_counter() - started,
        "figures": [asdict(figure) for figure in figures],
    }
    (args.out / "gpu.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "gpu.md").write_text(markdown(figures, machine))
    print(f"wrote {args.out / 'gpu.json'} and {args.out / 'gpu.md'} ({report['seconds']:.0f} s)")
    return 1 if any(figure.note.startswith("failed") for figure in figures) else 0


if __name__ == "__main__":
    sys.exit(main())
