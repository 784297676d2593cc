"""One training step of the default MNIST model (conv, latent 32, batch 128) with the mog prior
(500 components) and with the VampPrior at 500 and 100 pseudo-inputs (``--prior vamp
--pseudo-inputs K``), run as the trainer runs it (``iwae_step.training_step``: noise, forward
under bf16 autocast where the trainer uses it, loss, backward, Adam) on a fixed batch of binarized
random images (no data loading).

    poetry run python benchmarks/vamp_step.py [--steps 20] [--rounds 5] [--device auto]

The settings take turns step by step, so that a busy machine slows them alike; each line gives
the milliseconds per step (median, min, max over --steps x --rounds steps, after 3 untimed ones)
and the ratio of medians to the mog prior's. A VampPrior step also encodes its K pseudo-inputs,
forward and backward, at the batch's precision: K / 128 batches' more encoder work.
"""

from __future__ import annotations

import statistics

from common import interleaved_step_times, summary, training_benchmark_setup
from iwae_step import training_step

SETTINGS = {
    "mog, 500": {"prior": "mog"},
    "vamp, 500": {"prior": "vamp", "pseudo_inputs": 500},
    "vamp, 100": {"prior": "vamp", "pseudo_inputs": 100},
}


def main() -> None:
    args, _root, device = training_benchmark_setup(__doc__)
    steps = {name: training_step(overrides, device) for name, overrides in SETTINGS.items()}
    milliseconds = interleaved_step_times(steps, args.steps * args.rounds, device)
    mog = statistics.median(milliseconds["mog, 500"])
    for name, values in milliseconds.items():
        ratio = statistics.median(values) / mog
        print(f"{name:10s} {summary(values, 'ms/step', 1)}  x{ratio:.2f} the mog prior's")


if __name__ == "__main__":
    main()
