"""Shared pieces of the benchmarks: machine description, statistics, the textbook VAE pipeline.

The textbook pipeline is written out here on purpose (pytorch/examples' ``vae/main.py``:
torchvision dataset + ``ToTensor`` + ``DataLoader``, an MLP 784-400-20 with a sigmoid output,
summed BCE + KL, a ``loss.item()`` every step) so that the comparison does not depend on our code.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # the installed entry points live beside this interpreter


def training_benchmark_setup(doc: str | None) -> tuple[Any, str, torch.device]:
    """Parse --steps, --rounds, --device, --compile; print the machine; return (args, data root, device)."""
    import argparse

    from vae.device import resolve_device

    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--compile", action="store_true", help="also measure our trainer with --compile"
    )
    args = parser.parse_args()
    device = resolve_device(args.device)
    print(describe_machine(device))
    return args, data_dir(), device


def data_dir() -> str:
    """The dataset root: $VAE_DATA_DIR, else ../shared/data beside the repository."""
    root = os.environ.get("VAE_DATA_DIR") or str(REPO.parent / "shared" / "data")
    if not (Path(root) / "MNIST" / "raw").is_dir():
        sys.exit(f"error: no MNIST under {root}; set VAE_DATA_DIR to a folder holding MNIST/raw")
    return root


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def describe_machine(device: torch.device) -> str:
    """One line: CPU, cores, threads, accelerator, versions."""
    parts = [
        f"{cpu_model()} ({os.cpu_count()} logical cores, {torch.get_num_threads()} torch threads)",
        f"python {platform.python_version()}, torch {torch.__version__}",
    ]
    if device.type == "cuda":
        parts.append(f"GPU {torch.cuda.get_device_name(device)}")
    # Start-up figures depend on it: without cached bytecode every import compiles from source.
    cached = Path(importlib.util.cache_from_source(torch.__file__)).exists()
    parts.append("bytecode cached" if cached else "no cached bytecode (poetry install --compile)")
    return "; ".join(parts) + f"; device {device}"


def summary(values: list[float], unit: str, digits: int = 0) -> str:
    """'median X unit (min A, max B, n N)'."""
    fmt = f"{{:,.{digits}f}}"
    return (
        f"median {fmt.format(statistics.median(values))} {unit} "
        f"(min {fmt.format(min(values))}, max {fmt.format(max(values))}, n {len(values)})"
    )


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_flops_per_second(
    device: torch.device, dtype: torch.dtype = torch.float32, size: int = 2048, repeats: int = 5
) -> float:
    """The machine's dense matmul rate: the median over ``repeats`` timed square products."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    a @ b
    rates = []
    for _ in range(repeats):
        synchronize(device)
        started = time.perf_counter()
        a @ b
        synchronize(device)
        rates.append(2 * size**3 / (time.perf_counter() - started))
    return statistics.median(rates)


class TextbookVAE(nn.Module):
    """pytorch/examples' VAE, line for line."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, 20)
        self.fc22 = nn.Linear(400, 20)
        self.fc3 = nn.Linear(20, 400)
        self.fc4 = nn.Linear(400, 784)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        std = torch.exp(0.5 * logvar)
        eps = torch.randn_like(std)
        return mu + eps * std

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        h3 = F.relu(self.fc3(z))
        return torch.sigmoid(self.fc4(h3))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x.view(-1, 784))
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar


def textbook_loss(
    recon_x: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor
) -> torch.Tensor:
    bce = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


def textbook_loader(root: str, batch_size: int = 128, indices: list[int] | None = None) -> Any:
    """torchvision MNIST + ToTensor + a shuffling DataLoader, as in pytorch/examples."""
    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets, transforms

    dataset: Any = datasets.MNIST(root, train=True, download=False, transform=transforms.ToTensor())
    if indices is not None:
        dataset = Subset(dataset, indices)
    return DataLoader(dataset, batch_size=batch_size, shuffle=True)


def endless(loader: Any) -> Iterator[Any]:
    while True:
        yield from loader


def interleaved_step_times(
    steps: dict[str, Callable[[], None]], count: int, device: torch.device, warmup: int = 3
) -> dict[str, list[float]]:
    """Milliseconds of each of ``count`` calls of every step, the steps taking turns call by
    call, so that a busy machine slows them alike and their ratios stay comparable."""
    for _ in range(warmup):
        for step in steps.values():
            step()
    milliseconds: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(count):
        for name, step in steps.items():
            synchronize(device)
            started = time.perf_counter()
            step()
            synchronize(device)
            milliseconds[name].append(1000 * (time.perf_counter() - started))
    return milliseconds


def time_steps(step: Callable[[], None], steps: int, warmup: int, device: torch.device) -> float:
    """Seconds for ``steps`` calls of ``step`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        step()
    synchronize(device)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return time.perf_counter() - started


def textbook_images_per_second(
    root: str, device: torch.device, steps: int, warmup: int = 10, batch_size: int = 128
) -> float:
    """Training images/s of pytorch/examples' loop (MLP, Adam 1e-3, batch 128)."""
    torch.manual_seed(0)
    model = TextbookVAE().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    batches = endless(textbook_loader(root, batch_size))
    train_loss = 0.0

    def step() -> None:
        nonlocal train_loss
        data, _ = next(batches)
        data = data.to(device)
        optimizer.zero_grad()
        recon_batch, mu, logvar = model(data)
        loss = textbook_loss(recon_batch, data, mu, logvar)
        loss.backward()
        train_loss += loss.item()
        optimizer.step()

    return steps * batch_size / time_steps(step, steps, warmup, device)


class _StopTraining(Exception):
    pass


def trainer_images_per_second(
    overrides: dict[str, Any], root: str, steps: int, warmup: int = 10, device: str = "auto"
) -> float:
    """Training images/s of our own trainer (``vae.training.train``) over ``steps`` steps.

    Timed between two step callbacks, so data loading before the first step is not counted
    (the textbook figure does not count its dataset construction either)."""
    import tempfile

    from vae.config import RunConfig
    from vae.training import train

    config = RunConfig().override(
        {"data_dir": root, "download": False, "sample_every": 0, "device": device, **overrides}
    )
    config.train.epochs = 1000  # never reached: the callback stops the run
    marks: dict[int, float] = {}
    batch_size = config.train.batch_size

    def callback(step: int) -> None:
        if step in (warmup, warmup + steps):
            if torch.cuda.is_available() and config.train.device != "cpu":
                torch.cuda.synchronize()
            marks[step] = time.perf_counter()
        if step == warmup + steps:
            raise _StopTraining

    with tempfile.TemporaryDirectory() as folder:
        try:
            train(config, Path(folder) / "run", step_callback=callback)
        except _StopTraining:
            pass
    return steps * batch_size / (marks[warmup + steps] - marks[warmup])


def run_entry_point(arguments: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run one of our installed entry points (train, info, ...) and return the finished process."""
    command = [str(BIN / arguments[0]), *arguments[1:]]
    return subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)
