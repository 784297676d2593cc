"""One training step of the default MNIST model (conv, latent 32, mixture prior, batch 128) with
the ELBO and with the IWAE bound at K = 1 and 5 (``--objective iwae --iw-samples K``), timed
through our own trainer between two step callbacks (data loading not counted).

    VAE_DATA_DIR=../shared/data poetry run python benchmarks/iwae_step.py [--steps 30]
        [--rounds 3] [--device auto]

The three settings alternate for --rounds rounds; each line gives the milliseconds per step
(median, min, max over the rounds) and the ratio to the ELBO's median. The encoder runs once per
image whatever K; the decoder and the likelihood K times.
"""

from __future__ import annotations

import statistics

from common import summary, trainer_images_per_second, training_benchmark_setup

SETTINGS = {
    "elbo": {"objective": "elbo"},
    "iwae, K = 1": {"objective": "iwae", "iw_samples": 1},
    "iwae, K = 5": {"objective": "iwae", "iw_samples": 5},
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
    elbo = statistics.median(milliseconds["elbo"])
    for name, values in milliseconds.items():
        ratio = statistics.median(values) / elbo
        print(f"{name:12s} {summary(values, 'ms/step', 1)}  x{ratio:.2f} the ELBO's")


if __name__ == "__main__":
    main()
