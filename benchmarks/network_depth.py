"""Networks that fit the image: a default-settings ``train --image-size 256`` on colour photos, with
today's depth rule (``--conv-widths auto``) and with the widths every size had before (32,64).

    poetry run python benchmarks/network_depth.py [--images 400] [--limit 256] [--epochs 1]
        [--rounds 1] [--work DIR] [--keep]

Builds a folder of --images synthetic 256-px RGB JPEGs (the generator of benchmarks/data_scale.py),
decodes it once into the shard cache, then for each network trains --epochs epochs on the first
--limit images in a child process (the ``vae`` entry point, default settings but for the data,
``--device cpu`` and no sample pictures), sampling its ``Anonymous:`` memory
(``/proc/PID/smaps_rollup``) every 0.2 s as benchmarks/data_scale.py does. Reports each model's
parameter count (from its checkpoint), the peak anonymous memory, the training images/s of its
last epoch (``metrics.jsonl``), and the ratio of the two rates; the two networks alternate for
--rounds rounds (medians). Everything is written under --work (default: a new folder in /tmp,
removed at the end unless --keep).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import torch
from common import BIN, describe_machine
from data_scale import _anonymous, build_images, first_decode

SIDE = 256
NETWORKS = {"auto (today's rule)": [], "32,64 (before)": ["--conv-widths", "32,64"]}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--limit", type=int, default=256, help="training images per epoch")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep --work's files")
    args = parser.parse_args()
    print(describe_machine(torch.device("cpu")))
    work = args.work or Path(tempfile.mkdtemp(prefix="vae-network-depth-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        folder, cache = work / "photos", work / "cache"
        build_images(folder, args.images, (SIDE, SIDE))
        first_decode(folder, cache, workers=None, image_size=SIDE)
        results: dict[str, list[dict[str, Any]]] = {name: [] for name in NETWORKS}
        for round_number in range(args.rounds):
            for name, flags in NETWORKS.items():
                runs = work / f"runs-{round_number}-{len(results[name])}-{len(flags)}"
                result = train_and_sample(folder, cache, runs, flags, args.limit, args.epochs)
                results[name].append(result)
                print(f"round {round_number + 1}, {name}: {describe(result)}", flush=True)
        report(results)
    finally:
        if not args.keep and args.work is None:
            shutil.rmtree(work, ignore_errors=True)


def train_and_sample(
    folder: Path, cache: Path, runs: Path, flags: list[str], limit: int, epochs: int
) -> dict[str, Any]:
    """Train a default-settings model in a child process while sampling its memory."""
    command = [
        str(BIN / "vae"), "train", "run", "--dataset", f"folder:{folder}", "--cache-dir",
        str(cache), "--image-size", str(SIDE), "--limit", str(limit), "--val-size", "32",
        "--epochs", str(epochs), "--sample-every", "1000", "--device", "cpu", "--no-download",
        "--quiet", "--runs-dir", str(runs), *flags,
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    samples: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(_anonymous(process.pid))
            stop.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = process.communicate()
    stop.set()
    sampler.join()
    if process.returncode != 0:
        sys.exit(f"error: training failed ({process.returncode}):\n{output[-3000:]}")
    run = runs / "run"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    from vae.checkpoint import read_metadata

    metadata = read_metadata(run / "checkpoint_last.safetensors")
    return {
        "parameters": metadata["parameter_count"],
        "widths": metadata["model"]["conv_widths"],
        "peak_anonymous": max(samples),
        "images_per_second": records[-1]["images_per_second"],
    }


def describe(result: dict[str, Any]) -> str:
    return (
        f"widths {result['widths']}, {result['parameters']:,} parameters, peak anonymous "
        f"{result['peak_anonymous'] / 2**30:.2f} GiB, {result['images_per_second']:.1f} images/s"
    )


def report(results: dict[str, list[dict[str, Any]]]) -> None:
    medians = {}
    print("\n| network | conv widths | parameters | peak anonymous | images/s (median of rounds) |")
    print("|---|---|---:|---:|---:|")
    for name, runs in results.items():
        rate = statistics.median(r["images_per_second"] for r in runs)
        peak = statistics.median(r["peak_anonymous"] for r in runs)
        medians[name] = rate
        widths = ",".join(map(str, runs[0]["widths"]))
        print(
            f"| {name} | {widths} | {runs[0]['parameters']:,} | {peak / 2**30:.2f} GiB | "
            f"{rate:.1f} |"
        )
    today, before = medians.values()
    print(f"\nimages/s, today's rule over the old widths: {today / before:.2f}x")


if __name__ == "__main__":
    main()
