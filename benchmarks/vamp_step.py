"""One training step of the default MNIST model (conv, latent 32, batch 128) with the mog prior
(500 components) and with the VampPrior at 500 and 100 pseudo-inputs (``--prior vamp
--pseudo-inputs K``), timed through our own trainer between two step callbacks (data loading not
counted).

    VAE_DATA_DIR=../shared/data poetry run python benchmarks/vamp_step.py [--steps 30]
        [--rounds 3] [--device auto]

The settings alternate for --rounds rounds; each line gives the milliseconds per step (median,
min, max over the rounds) and the ratio to the mog prior's median. A VampPrior step also encodes
its K pseudo-inputs (forward and backward), as many images again as K / 128 batches.
"""

from __future__ import annotations

import statistics

from common import summary, trainer_images_per_second, training_benchmark_setup

SETTINGS = {
    "mog, 500": {"prior": "mog"},
    "vamp, 500": {"prior": "vamp", "pseudo_inputs": 500},
    "vamp, 100": {"prior": "vamp", "pseudo_inputs": 100},
}
BATCH_SIZE = 128


def main() -> None:
    args, root, device = training_benchmark_setup(__doc__)
    milliseconds: dict[str, list[float]] = {name: [] for name in SETTINGS}
    for _ in range(args.rounds):
        for name, overrides in SETTINGS.items():
            rate = trainer_images_per_second(
                {**overrides, "batch_size": BATCH_SIZE, "compile": args.compile},
                root,
                args.steps,
                warmup=5,
                device=str(device),
            )
            milliseconds[name].append(1000 * BATCH_SIZE / rate)
    mog = statistics.median(milliseconds["mog, 500"])
    for name, values in milliseconds.items():
        ratio = statistics.median(values) / mog
        print(f"{name:10s} {summary(values, 'ms/step', 1)}  x{ratio:.2f} the mog prior's")


if __name__ == "__main__":
    main()
