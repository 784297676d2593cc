"""How quick a checkpoint is to sample and to explore: `generate`'s wall time and the explorer's
decode, side by side for several checkpoints.

    poetry run python benchmarks/decode_time.py [CHECKPOINT ...] [--repeats 9]

For each checkpoint (default: the shipped one), in turns so that a busy machine slows all alike:

- `generate` (64 samples to a temporary PNG) through the installed entry point, from launch to
  exit: the torch-free NumPy path on the CPU;
- the explorer's decode of one latent (what a dragged slider asks for), in process with the
  explorer's one OpenBLAS thread (vae.blas_threads): the NumPy
  decoder alone, and with the PNG the page receives (`vae.explore.decoder.Decoder`).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from vae.blas_threads import use_one_blas_thread

use_one_blas_thread()  # as the explorer's process does, before NumPy loads OpenBLAS

import numpy as np  # noqa: E402
import torch  # noqa: E402
from common import REPO, describe_machine, run_entry_point, summary  # noqa: E402

from vae.explore.decoder import Decoder  # noqa: E402

SHIPPED = str(REPO / "pretrained" / "checkpoint_best.safetensors")
DECODES_PER_ROUND = 50


def generate_seconds(checkpoint: str, output: Path) -> float:
    """Wall time of one `generate` of 64 samples."""
    started = time.perf_counter()
    finished = run_entry_point(["generate", "--checkpoint", checkpoint, "--output", str(output)])
    seconds = time.perf_counter() - started
    if finished.returncode != 0:
        raise SystemExit(f"generate failed on {checkpoint}: {finished.stderr.strip()}")
    return seconds


def decode_milliseconds(decoder: Decoder, with_png: bool, rng: np.random.Generator) -> float:
    """Median time of one latent's decode (and its PNG) over a round of decodes."""
    times = []
    for _ in range(DECODES_PER_ROUND):
        code = rng.standard_normal((1, decoder.spec.latent_dim)).astype(np.float32)
        started = time.perf_counter()
        if with_png:
            decoder.pictures(code)
        else:
            decoder.decode(code)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoints", nargs="*", default=[SHIPPED])
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    print(describe_machine(torch.device("cpu")))
    decoders = {path: Decoder(path) for path in args.checkpoints}
    rng = np.random.default_rng(0)
    results: dict[str, dict[str, list[float]]] = {
        path: {"generate": [], "decode": [], "decode+png": []} for path in args.checkpoints
    }
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.repeats):
            for path in args.checkpoints:
                times = results[path]
                times["generate"].append(generate_seconds(path, Path(folder) / "grid.png"))
                times["decode"].append(decode_milliseconds(decoders[path], False, rng))
                times["decode+png"].append(decode_milliseconds(decoders[path], True, rng))
    for path in args.checkpoints:
        times = results[path]
        print(f"{path}:")
        print(f"  generate (64 samples): {summary(times['generate'], 's', 2)}")
        print(f"  explorer decode, NumPy: {summary(times['decode'], 'ms', 2)}")
        print(f"  explorer decode + PNG: {summary(times['decode+png'], 'ms', 2)}")


if __name__ == "__main__":
    main()
