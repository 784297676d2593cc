"""Importance-weighted NLL evaluation rate (images/s) at k = 1000 and k = 5000.

    poetry run python benchmarks/evaluate.py [--checkpoint pretrained/checkpoint_best.safetensors]
                                             [--images 100] [--rounds 3] [--device auto]

Scores the first ``--images`` statically binarized MNIST test images with ``score_images``
(the function behind `evaluate`); decodes/s = images/s x k.
"""

from __future__ import annotations

import argparse
import time

from common import REPO, data_dir, describe_machine, summary, synchronize

from vae.checkpoint import load_model
from vae.config import DataConfig
from vae.data import TEST_BINARIZATION_SEED, binarize_once, load_raw, to_float
from vae.device import resolve_device
from vae.evaluation import score_images


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--checkpoint", default=str(REPO / "pretrained" / "checkpoint_best.safetensors")
    )
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    print(describe_machine(device))
    model = load_model(args.checkpoint, device)
    _, test = load_raw(DataConfig(dataset="mnist", data_dir=data_dir(), download=False))
    images = to_float(binarize_once(test, TEST_BINARIZATION_SEED).images[: args.images])
    print(f"{args.checkpoint}: {model.parameter_count():,} parameters, {args.images} test images")
    for k in (1000, 5000):
        rates = []
        for seed in range(args.rounds):
            synchronize(device)
            started = time.perf_counter()
            score_images(model, images, k, seed)
            synchronize(device)
            rates.append(args.images / (time.perf_counter() - started))
        decodes = [rate * k for rate in rates]
        print(f"k = {k}: {summary(rates, 'images/s', 2)}; {summary(decodes, 'decodes/s')}")
        print(
            f"  -> the 10,000-image test set takes {10_000 / min(rates) / 60:.0f} min or less per seed"
        )


if __name__ == "__main__":
    main()
