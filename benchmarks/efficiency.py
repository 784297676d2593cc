"""Training efficiency: achieved FLOP/s of a training step as a fraction of dense matmul FLOP/s.

    poetry run python benchmarks/efficiency.py [--steps 200] [--rounds 3] [--device auto]

FLOPs of forward + backward per image are counted with torch's FlopCounterMode (matmuls and
convolutions); images/s come from our trainer on MNIST; the matmul rate is measured in the
same run (float32 and bf16, 2048x2048). The fraction is against the float32 figure.
"""

from __future__ import annotations

import statistics

import torch
from common import (
    matmul_flops_per_second,
    summary,
    trainer_images_per_second,
    training_benchmark_setup,
)
from throughput import MLP_AS_TEXTBOOK
from torch.utils.flop_counter import FlopCounterMode

from vae.config import RunConfig
from vae.model import build_model
from vae.objectives import elbo_terms
from vae.spec import model_spec

MODELS = {
    "MLP 784-400-20": MLP_AS_TEXTBOOK,
    "default conv": {},
}


def training_flops_per_image(overrides: dict, batch_size: int = 128) -> float:
    """Forward + backward FLOPs of one training step, per image."""
    config = RunConfig().override(overrides)
    model = build_model(model_spec(config, {"channels": 1, "height": 28, "width": 28}))
    log_prior = None if model.prior is None else model.prior.log_density
    x = torch.bernoulli(torch.full((batch_size, 1, 28, 28), 0.2))
    with FlopCounterMode(display=False) as counter:
        noise = torch.randn(batch_size, model.spec.latent_dim)
        decoded, mu, logvar = model(x, noise=noise)
        terms = elbo_terms(decoded, x, mu, logvar, "bce", log_prior=log_prior, noise=noise)
        terms.loss.backward()
    return counter.get_total_flops() / batch_size


def main() -> None:
    args, root, device = training_benchmark_setup(__doc__)
    matmul: list[float] = []
    matmul_bf16: list[float] = []
    rates: dict[str, list[float]] = {name: [] for name in MODELS}
    for _ in range(args.rounds):
        matmul.append(matmul_flops_per_second(device))
        matmul_bf16.append(matmul_flops_per_second(device, torch.bfloat16))
        for name, overrides in MODELS.items():
            rates[name].append(
                trainer_images_per_second(overrides, root, args.steps, device=args.device)
            )
    peak = statistics.median(matmul)
    print(f"dense matmul float32: {summary([v / 1e9 for v in matmul], 'GFLOP/s', 1)}")
    print(f"dense matmul bf16:    {summary([v / 1e9 for v in matmul_bf16], 'GFLOP/s', 1)}")
    for name, overrides in MODELS.items():
        flops = training_flops_per_image(overrides)
        achieved = flops * statistics.median(rates[name])
        print(
            f"{name}: {flops / 1e6:.1f} MFLOP per image (forward + backward), "
            f"{summary(rates[name], 'img/s')}, {achieved / 1e9:.1f} GFLOP/s = "
            f"{100 * achieved / peak:.0f}% of float32 matmul"
        )


if __name__ == "__main__":
    main()
