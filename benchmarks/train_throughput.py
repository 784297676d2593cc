"""Training throughput (images/s) of the built-in architectures on synthetic MNIST-sized batches.

    poetry run python benchmarks/train_throughput.py [--device auto] [--repeats 5] [--steps 20]

Prints the median and spread over repeats for each model, measured side by side in one process.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from vae.device import resolve_device
from vae.model import ModelSpec, build_model
from vae.objectives import elbo_terms

MODELS = {
    "conv default (32,64 + 512)": ModelSpec("conv", 32, 1, 28, 28, "bce", [512], [32, 64]),
    "mlp (512,256)": ModelSpec("mlp", 32, 1, 28, 28, "bce", [512, 256], []),
}


def images_per_second(spec: ModelSpec, device: torch.device, batch_size: int, steps: int) -> float:
    model = build_model(spec).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.bernoulli(torch.full((batch_size, spec.channels, spec.height, spec.width), 0.2)).to(
        device
    )
    for step in range(steps + 3):  # 3 warm-up steps
        if step == 3:
            if device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
        decoded, mu, logvar = model(x)
        loss = elbo_terms(decoded, x, mu, logvar, spec.likelihood).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch_size / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    device = resolve_device(args.device)
    print(
        f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}"
    )
    results: dict[str, list[float]] = {name: [] for name in MODELS}
    for _ in range(args.repeats):  # interleaved, so machine noise hits every model alike
        for name, spec in MODELS.items():
            results[name].append(images_per_second(spec, device, args.batch_size, args.steps))
    for name, values in results.items():
        print(
            f"{name:28s} median {statistics.median(values):8.0f} img/s  (min {min(values):.0f}, max {max(values):.0f})"
        )


if __name__ == "__main__":
    main()
