"""Training throughput: pytorch/examples' textbook pipeline against our trainer, same model.

    poetry run python benchmarks/throughput.py [--steps 200] [--rounds 3] [--device auto] [--compile]

Model: MLP 784-400-20, batch 128, Adam 1e-3, Bernoulli likelihood, MNIST. (a) the textbook
pipeline (torchvision dataset + ToTensor + DataLoader, written out in benchmarks/common.py);
(b) ``vae.training.train`` with the same model. Alternated A B A B ... in one process; prints
medians, min-max and the ratio, then the default conv model's images/s through our trainer.
``--compile`` adds our trainer with torch.compile (compiling happens in the untimed warm-up steps).
"""

from __future__ import annotations

import statistics

from common import (
    summary,
    textbook_images_per_second,
    trainer_images_per_second,
    training_benchmark_setup,
)

# Our trainer with the textbook's model and optimiser settings (N(0, I) prior, no KL warm-up,
# constant lr).
MLP_AS_TEXTBOOK = {
    "architecture": "mlp",
    "prior": "standard",
    "hidden_sizes": [400],
    "latent_dim": 20,
    "batch_size": 128,
    "lr": 1e-3,
    "lr_schedule": "none",
    "beta_schedule": "constant",
}


def main() -> None:
    args, root, device = training_benchmark_setup(__doc__)
    textbook, ours, ours_fp32, ours_compiled = [], [], [], []
    for round_index in range(args.rounds):
        textbook.append(textbook_images_per_second(root, device, args.steps))
        ours.append(
            trainer_images_per_second(MLP_AS_TEXTBOOK, root, args.steps, device=args.device)
        )
        ours_fp32.append(
            trainer_images_per_second(
                {**MLP_AS_TEXTBOOK, "bf16": False}, root, args.steps, device=args.device
            )
        )
        if args.compile:
            ours_compiled.append(
                trainer_images_per_second(
                    {**MLP_AS_TEXTBOOK, "compile": True}, root, args.steps, device=args.device
                )
            )
        print(
            f"round {round_index + 1}: textbook {textbook[-1]:,.0f}  ours {ours[-1]:,.0f}  "
            f"ours fp32 {ours_fp32[-1]:,.0f} img/s"
            + (f"  ours --compile {ours_compiled[-1]:,.0f} img/s" if args.compile else "")
        )
    print(f"MLP 784-400-20, batch 128, {args.steps} timed steps per measurement")
    print(f"  textbook pipeline     {summary(textbook, 'img/s')}")
    print(f"  our trainer (default) {summary(ours, 'img/s')}")
    print(f"  our trainer, fp32     {summary(ours_fp32, 'img/s')}")
    if args.compile:
        print(f"  our trainer, --compile {summary(ours_compiled, 'img/s')}")
    ratio = statistics.median(ours) / statistics.median(textbook)
    ratio_fp32 = statistics.median(ours_fp32) / statistics.median(textbook)
    print(f"  ratio ours / textbook: {ratio:.2f}x (fp32: {ratio_fp32:.2f}x)")
    conv = [
        trainer_images_per_second({}, root, args.steps, device=args.device)
        for _ in range(args.rounds)
    ]
    print(f"default conv model, our trainer: {summary(conv, 'img/s')}")
    if args.compile:
        compiled = [
            trainer_images_per_second({"compile": True}, root, args.steps, device=args.device)
            for _ in range(args.rounds)
        ]
        print(f"default conv model, our trainer, --compile: {summary(compiled, 'img/s')}")


if __name__ == "__main__":
    main()
