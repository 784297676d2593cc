"""Time to quality: wall seconds until the validation -ELBO first reaches 100 nats on
dynamically binarized MNIST, for `train` with default settings and for the textbook loop.

    poetry run python benchmarks/time_to_quality.py [--target 100] [--rounds 2] [--timeout 900]

Both run as fresh processes and are timed from launch (imports and data loading included).
ours: the installed `train` entry point, default settings, polled through metrics.jsonl.
textbook: pytorch/examples' loop (torchvision MNIST + ToTensor + DataLoader, Adam 1e-3,
beta = 1, a loss.item() per step) training our default conv model, its default prior included,
on the same 55,000 training images, binarized per batch, validated after every epoch on the same
5,000 validation images.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import BIN, data_dir, describe_machine, summary


def textbook_worker(target: float) -> None:
    """The textbook loop; prints one JSON line per epoch."""
    import torch
    from common import textbook_loader

    from vae.config import RunConfig
    from vae.data import DEFAULT_VAL_SIZE, SPLIT_SEED, load_splits
    from vae.evaluation import evaluate_elbo
    from vae.model import build_model
    from vae.objectives import elbo_terms
    from vae.spec import model_spec

    config = RunConfig().override({"data_dir": data_dir(), "download": False})
    splits = load_splits(config.data, "bce")  # the validation images, binarized as ours
    # The same 55,000 training images as ours: load_splits' split, by index.
    order = torch.randperm(60_000, generator=torch.Generator().manual_seed(SPLIT_SEED))
    indices = order[DEFAULT_VAL_SIZE:].sort().values.tolist()
    loader = textbook_loader(config.data.data_dir, 128, indices)
    torch.manual_seed(0)
    # Our default model, its learned mixture prior included: only the pipeline differs.
    model = build_model(model_spec(config, splits.info))
    log_prior = None if model.prior is None else model.prior.log_density
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for epoch in range(1, 1000):
        model.train()
        train_loss = 0.0
        for data, _ in loader:
            data = torch.bernoulli(data)
            optimizer.zero_grad()
            noise = torch.randn(len(data), model.spec.latent_dim)
            decoded, mu, logvar = model(data, noise=noise)
            loss = elbo_terms(
                decoded, data, mu, logvar, "bce", log_prior=log_prior, noise=noise
            ).loss
            loss.backward()
            train_loss += loss.item()
            optimizer.step()
        validation = evaluate_elbo(model, splits.val, batch_size=1000)
        print(json.dumps({"epoch": epoch, "val_neg_elbo": validation["neg_elbo"]}), flush=True)
        if validation["neg_elbo"] <= target:
            return


def seconds_to_target(command: list[str], metrics: Path | None, target: float, timeout: float):
    """Launch ``command``; return (seconds until a record with val_neg_elbo <= target, epoch)."""
    started = time.perf_counter()
    stdout = subprocess.PIPE if metrics is None else subprocess.DEVNULL
    process = subprocess.Popen(command, stdout=stdout, stderr=subprocess.DEVNULL, text=True)
    try:
        while time.perf_counter() - started < timeout:
            if metrics is None:
                line = process.stdout.readline()
                records = [json.loads(line)] if line.strip() else []
                if not line and process.poll() is not None:
                    break
            else:
                time.sleep(0.1)
                text = metrics.read_text() if metrics.exists() else ""
                records = [json.loads(r) for r in text.splitlines() if r.strip()]
                if process.poll() is not None and not records:
                    break
            for record in records:
                if record["val_neg_elbo"] <= target:
                    return time.perf_counter() - started, record["epoch"]
        raise SystemExit(f"error: {command[0]} did not reach {target} nats within {timeout} s")
    finally:
        process.kill()
        process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--target", type=float, default=100.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--textbook-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.textbook_worker:
        textbook_worker(args.target)
        return
    import torch

    print(describe_machine(torch.device("cpu")))
    env = {**os.environ, "VAE_DATA_DIR": data_dir()}
    os.environ.update(env)
    ours: list[float] = []
    textbook: list[float] = []
    for round_index in range(args.rounds):
        with tempfile.TemporaryDirectory() as folder:
            command = [str(BIN / "train"), "ttq", "--runs-dir", folder, "--no-download"]
            seconds, epoch = seconds_to_target(
                command, Path(folder) / "ttq" / "metrics.jsonl", args.target, args.timeout
            )
        ours.append(seconds)
        print(f"round {round_index + 1}: ours {seconds:.1f} s (epoch {epoch})", flush=True)
        command = [sys.executable, __file__, "--textbook-worker", "--target", str(args.target)]
        seconds, epoch = seconds_to_target(command, None, args.target, args.timeout)
        textbook.append(seconds)
        print(f"round {round_index + 1}: textbook {seconds:.1f} s (epoch {epoch})", flush=True)
    print(f"seconds until validation -ELBO <= {args.target:g} nats (default conv model):")
    print(f"  ours     {summary(ours, 's', 1)}")
    print(f"  textbook {summary(textbook, 's', 1)}")
    print(f"  ratio textbook / ours: {statistics.median(textbook) / statistics.median(ours):.2f}x")


if __name__ == "__main__":
    main()
