"""One training step of the default MNIST model (conv, latent 32, mixture prior, batch 128) with
the ELBO and with the IWAE bound at K = 1 and 5 (``--objective iwae --iw-samples K``): the
posterior noise, the forward pass (under bf16 autocast where the trainer uses it), the loss,
backward and Adam, as ``vae.trainer.Trainer`` runs them, on a fixed batch of binarized random
images (no data loading).

    poetry run python benchmarks/iwae_step.py [--steps 20] [--rounds 5] [--device auto]

The three settings take turns step by step (each step of one between steps of the others), so
that a busy machine slows them alike; each line gives the milliseconds per step (median, min, max
over --steps x --rounds steps, after 3 untimed ones) and the ratio of medians to the ELBO's. The
encoder runs once per image whatever K; the decoder and the likelihood K times.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

import torch
from common import interleaved_step_times, summary, training_benchmark_setup

from vae.config import RunConfig
from vae.distributed import World
from vae.loss_name import training_loss_name
from vae.objectives import elbo_terms
from vae.spec import model_spec
from vae.trainer.objective import RunObjective
from vae.trainer.stepped import SteppedModule
from vae.training_state import TrainingState

SETTINGS = {
    "elbo": {"objective": "elbo"},
    "iwae, K = 1": {"objective": "iwae", "iw_samples": 1},
    "iwae, K = 5": {"objective": "iwae", "iw_samples": 5},
}
BATCH_SIZE = 128
MNIST = {"dataset": "mnist", "channels": 1, "height": 28, "width": 28}


def training_step(overrides: dict[str, object], device: torch.device) -> Callable[[], None]:
    """One optimisation step of a fresh default model trained as ``overrides`` say."""
    config = RunConfig().override(overrides).validate()
    state = TrainingState(config, model_spec(config, MNIST), device)
    model, objective = state.model, RunObjective(config, training_loss_name(config.to_dict()))
    stepped = SteppedModule(model, config, device, World())
    x = (torch.rand(BATCH_SIZE, 1, 28, 28, device=device) > 0.5).float()
    settings = config.objective

    def step() -> None:
        noise = objective.noise(model, state.noise, BATCH_SIZE, device, World())
        decoded, mu, logvar = stepped(x, noise)
        if objective.samples is not None:
            terms = objective.bound_terms(model, decoded, x, mu, logvar, noise, 1.0)
        else:
            sigma = model.likelihood_sigma(settings.gaussian_sigma)
            kl = model.kl_term(mu, logvar, noise)
            terms = elbo_terms(decoded, x, mu, logvar, settings.likelihood, 1.0, 0.0, sigma, kl=kl)
        state.optimizer.zero_grad(set_to_none=True)
        terms.loss.backward()
        state.optimizer.step()

    return step


def main() -> None:
    args, _root, device = training_benchmark_setup(__doc__)
    steps = {name: training_step(overrides, device) for name, overrides in SETTINGS.items()}
    milliseconds = interleaved_step_times(steps, args.steps * args.rounds, device)
    elbo = statistics.median(milliseconds["elbo"])
    for name, values in milliseconds.items():
        ratio = statistics.median(values) / elbo
        print(f"{name:12s} {summary(values, 'ms/step', 1)}  x{ratio:.2f} the ELBO's")


if __name__ == "__main__":
    main()
