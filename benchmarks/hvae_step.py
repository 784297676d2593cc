"""One training step of the default MNIST VAE (conv, latent 32, mixture prior, batch 128) beside
hierarchical VAEs (``--model hvae``) of a few sizes: the posterior noise, the forward pass (under
bf16 autocast where the trainer uses it), the ELBO with its KL, backward and Adam, as
``vae.trainer.Trainer`` runs them, on a fixed batch of binarized random images (no data loading).

    poetry run python benchmarks/hvae_step.py [--steps 20] [--rounds 5] [--device auto]

The models take turns step by step (each step of one between steps of the others), so that a
busy machine slows them alike; each line gives the milliseconds per step (median, min, max over
--steps x --rounds steps, after 3 untimed ones), the images per second of the fastest step, and
the ratio of medians to the VAE's: about the ratio of their epochs' times.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

import torch
from common import interleaved_step_times, summary, training_benchmark_setup

from vae.config import RunConfig
from vae.distributed import World
from vae.spec import model_spec
from vae.trainer.stepped import SteppedModule
from vae.training_state import TrainingState

HIERARCHY = {"model_type": "hvae", "hidden_sizes": []}
SETTINGS = {
    "vae (default)": {},
    "hvae 2 x 16, cells 32": {**HIERARCHY, "latent_dim": 32, "latent_groups": 2},
    "hvae 3 x 16, cells 32": {**HIERARCHY, "latent_dim": 48, "latent_groups": 3},
    "hvae 4 x 16, cells 32": {**HIERARCHY, "latent_dim": 64, "latent_groups": 4},
    "hvae 4 x 16, cells 64": {**HIERARCHY, "latent_dim": 64, "latent_groups": 4,
                              "cell_channels": 64},
}  # fmt: skip
BATCH_SIZE = 128
MNIST = {"dataset": "mnist", "channels": 1, "height": 28, "width": 28}


def training_step(overrides: dict[str, object], device: torch.device) -> Callable[[], None]:
    """One optimisation step of a fresh model of the default settings with ``overrides``."""
    config = RunConfig().override(overrides).validate()
    state = TrainingState(config, model_spec(config, MNIST), device)
    model = state.model
    stepped = SteppedModule(model, config, device, World())
    x = (torch.rand(BATCH_SIZE, 1, 28, 28, device=device) > 0.5).float()

    def step() -> None:
        from vae.objectives import elbo_terms

        noise = torch.randn(BATCH_SIZE, model.latent_dim, generator=state.noise, device=device)
        decoded, mu, logvar = stepped(x, noise)
        terms = elbo_terms(decoded, x, mu, logvar, "bce", kl=model.kl_term(mu, logvar, noise))
        state.optimizer.zero_grad(set_to_none=True)
        terms.loss.backward()
        state.optimizer.step()

    return step


def main() -> None:
    args, _root, device = training_benchmark_setup(__doc__)
    steps = {name: training_step(overrides, device) for name, overrides in SETTINGS.items()}
    milliseconds = interleaved_step_times(steps, args.steps * args.rounds, device)
    vae = statistics.median(milliseconds["vae (default)"])
    for name, values in milliseconds.items():
        ratio = statistics.median(values) / vae
        fastest = 1000 * BATCH_SIZE / min(values)
        print(
            f"{name:22s} {summary(values, 'ms/step', 1)}  fastest {fastest:,.0f} images/s  "
            f"x{ratio:.2f} the VAE's"
        )


if __name__ == "__main__":
    main()
