"""Data larger than memory: memory of mapped training, mapped vs in-memory throughput, first decode.

    poetry run python benchmarks/data_scale.py [--parts memory,throughput,decode,load]
        [--small 25000] [--large 200000] [--jpegs 20000] [--rounds 5] [--work DIR]

``memory``: builds a synthetic 64-px RGB JPEG set at --small and --large images (8x apart), decodes
each once into the shard cache, then trains a small MLP for 2 epochs on each with
``--storage mapped`` in a child process, sampling its ``Anonymous:`` memory
(``/proc/PID/smaps_rollup``) every 0.5 s, and the machine's used memory (``free``'s "used": total
less free, buffers and page cache); then the large set with torchrun and 2 processes (the sum of
both processes). The shards are evicted from the page cache before each run
(``posix_fadvise(DONTNEED)``), so the first epoch reads from disk and the second is cache-warm.
``throughput``: MNIST images/s of the default model through ``vae.training.train``, in memory and
mapped (``--storage``), alternated for --rounds rounds in this process; medians and their ratio.
``decode``: a folder of --jpegs 500x375 JPEGs decoded into shards with 1 and 2 decoding processes
(``--decode-workers``); then a decode killed (SIGKILL) halfway and run again, counting what the
second run decoded.
``load``: the first decode of the --large 64-px set into a fresh shard cache, then the load a
training run starts with (``load_splits``: the validation carve and the data fingerprint, which
reads every training and validation image, and the check of each shard's content hash), mapped
and in memory, page cache warm, --rounds times each; medians. Not in the default parts.

Everything is written under --work (default: a new folder in /tmp, removed at the end unless
--keep); needs VAE_DATA_DIR with MNIST/raw for ``throughput``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import BIN, data_dir, describe_machine, summary

SMALL_MODEL = [
    "--architecture", "mlp", "--hidden-sizes", "64", "--latent-dim", "8", "--prior", "standard",
    "--likelihood", "mse", "--batch-size", "256", "--val-size", "1000", "--sample-every", "100",
    "--device", "cpu", "--no-download", "--quiet",
]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--parts", default="memory,throughput,decode")
    parser.add_argument("--small", type=int, default=25_000)
    parser.add_argument("--large", type=int, default=200_000)
    parser.add_argument("--jpegs", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=150, help="timed steps per throughput round")
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep --work's files")
    args = parser.parse_args()
    print(describe_machine(torch.device("cpu")))
    print(f"memory: {_meminfo()['MemTotal'] / 2**30:.1f} GiB; load average {os.getloadavg()}")
    work = args.work or Path(tempfile.mkdtemp(prefix="vae-data-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    parts = set(args.parts.split(","))
    try:
        if "memory" in parts:
            memory_part(work, args.small, args.large)
        if "throughput" in parts:
            throughput_part(args.rounds, args.steps)
        if "decode" in parts:
            decode_part(work, args.jpegs)
        if "load" in parts:
            load_part(work, args.large, args.rounds)
    finally:
        if not args.keep and args.work is None:
            shutil.rmtree(work, ignore_errors=True)


# --- memory ---------------------------------------------------------------------------------


def memory_part(work: Path, small: int, large: int) -> None:
    results = {}
    for count in (small, large):
        folder = work / f"set-{count}"
        started = time.perf_counter()
        build_images(folder, count, (64, 64))
        print(f"built {count:,} 64-px JPEGs in {time.perf_counter() - started:.0f} s")
        cache = work / f"cache-{count}"
        started = time.perf_counter()
        first_decode(folder, cache, workers=None)
        print(f"first decode of {count:,}: {time.perf_counter() - started:.0f} s")
        results[count] = train_and_sample(folder, cache, work / f"runs-{count}", processes=1)
        report_run(f"{count:,} images, 1 process", results[count])
    two = train_and_sample(work / f"set-{large}", work / f"cache-{large}", work / "runs-ddp", 2)
    report_run(f"{large:,} images, torchrun 2 processes", two)
    growth = results[large]["peak_anonymous"] - results[small]["peak_anonymous"]
    print(
        f"peak anonymous memory: {results[small]['peak_anonymous'] / 2**20:,.0f} MiB "
        f"({small:,}) -> {results[large]['peak_anonymous'] / 2**20:,.0f} MiB ({large:,}): "
        f"grows by {growth / 2**20:,.0f} MiB (target < 100)"
    )
    limit = 2 * results[small]["peak_anonymous"]
    print(
        f"torchrun, 2 processes, {large:,} images: peak sum {two['peak_anonymous'] / 2**20:,.0f} "
        f"MiB (target <= 2 x the small one-process figure, {limit / 2**20:,.0f} MiB); data on "
        f"disk {two['data_bytes'] / 2**20:,.0f} MiB; machine's used memory rose by at most "
        f"{two['peak_used_rise'] / 2**20:,.0f} MiB"
    )


def build_images(folder: Path, count: int, size: tuple[int, int], quality: int = 90) -> None:
    """``count`` JPEGs of ``size`` (smooth colour fields with noise), 1,000 a sub-folder, written
    on every core; kept when already there."""
    done = folder / ".complete"
    if done.exists():
        return
    import concurrent.futures

    batches = [
        (folder, begin, min(begin + 1000, count), size, quality) for begin in range(0, count, 1000)
    ]
    with concurrent.futures.ProcessPoolExecutor(os.cpu_count() or 1) as pool:
        list(pool.map(_write_batch, batches))
    done.write_text("")


def _write_batch(job: tuple[Path, int, int, tuple[int, int], int]) -> None:
    from PIL import Image

    folder, begin, end, (width, height), quality = job
    sub = folder / f"{begin // 1000:04d}"
    sub.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(begin)
    y, x = np.mgrid[0:height, 0:width]
    for index in range(begin, end):
        base = np.stack([x * (index % 7 + 1), y * (index % 5 + 1), (x + y) * (index % 3 + 1)], -1)
        noise = rng.integers(0, 40, size=(height, width, 3))
        array = ((base + noise + index) % 256).astype(np.uint8)
        Image.fromarray(array).save(sub / f"{index:07d}.jpg", quality=quality)


def first_decode(folder: Path, cache: Path, workers: int | None, image_size: int = 64) -> None:
    """Decode ``folder`` into the shard cache at ``cache`` (in this process's pool)."""
    from vae.config import DataConfig
    from vae.data import load_raw

    config = DataConfig(
        dataset=f"folder:{folder}",
        cache_dir=str(cache),
        image_size=image_size,
        storage="mapped",
        decode_workers=workers,
    )
    load_raw(config)


def evict(cache: Path) -> int:
    """Drop the shards' pages from the page cache (a cold first epoch); returns their bytes."""
    total = 0
    for path in cache.rglob("*.safetensors"):
        with open(path, "rb") as handle:
            os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        total += path.stat().st_size
    return total


def train_and_sample(folder: Path, cache: Path, runs: Path, processes: int) -> dict[str, Any]:
    """Train 2 epochs (mapped) in a child process while sampling memory every 0.5 s."""
    data_bytes = evict(cache)
    arguments = [
        "train", "run", "--dataset", f"folder:{folder}", "--cache-dir", str(cache),
        "--image-size", "64", "--storage", "mapped", "--epochs", "2", "--runs-dir", str(runs),
        *SMALL_MODEL,
    ]  # fmt: skip
    if processes == 1:
        command = [str(BIN / "vae"), *arguments]
    else:
        command = [
            str(BIN / "torchrun"), "--standalone", f"--nproc-per-node={processes}", "-m", "vae",
            *arguments,
        ]  # fmt: skip
    baseline = _used_memory()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    samples: list[tuple[int, int]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            pids = _workers(process.pid, processes)
            samples.append((sum(_anonymous(pid) for pid in pids), _used_memory()))
            stop.wait(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = process.communicate()
    stop.set()
    sampler.join()
    if process.returncode != 0:
        sys.exit(f"error: training failed ({process.returncode}):\n{output[-3000:]}")
    records = [
        json.loads(line) for line in (runs / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    return {
        "peak_anonymous": max(a for a, _ in samples),
        "peak_used_rise": max(u for _, u in samples) - baseline,
        "epoch_seconds": [r["epoch_seconds"] for r in records],
        "images_per_second": [r["images_per_second"] for r in records],
        "data_bytes": data_bytes,
    }


def report_run(label: str, result: dict[str, Any]) -> None:
    seconds = ", ".join(f"{s:.1f}" for s in result["epoch_seconds"])
    rates = ", ".join(f"{r:,.0f}" for r in result["images_per_second"])
    print(
        f"{label}: peak anonymous {result['peak_anonymous'] / 2**20:,.0f} MiB; used memory rose "
        f"by at most {result['peak_used_rise'] / 2**20:,.0f} MiB; epoch 1 (cold) and 2 (warm): "
        f"{seconds} s, {rates} images/s; shards {result['data_bytes'] / 2**20:,.0f} MiB"
    )


def _workers(pid: int, processes: int) -> list[int]:
    """The training processes: ``pid`` itself, or torchrun's children."""
    if processes == 1:
        return [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [int(child) for child in children]


def _anonymous(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Anonymous:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _meminfo() -> dict[str, int]:
    values = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        name, value = line.split(":", 1)
        values[name] = int(value.split()[0]) * 1024
    return values


def _used_memory() -> int:
    """``free``'s "used": total less free, buffers, page cache and reclaimable slab."""
    m = _meminfo()
    return m["MemTotal"] - m["MemFree"] - m["Buffers"] - m["Cached"] - m["SReclaimable"]


# --- load -----------------------------------------------------------------------------------


def load_part(work: Path, count: int, rounds: int) -> None:
    from vae.config import DataConfig
    from vae.data import load_splits

    folder = work / f"set-{count}"
    build_images(folder, count, (64, 64))
    cache = work / "load-cache"
    shutil.rmtree(cache, ignore_errors=True)
    started = time.perf_counter()
    first_decode(folder, cache, workers=None)
    print(f"load: first decode of {count:,} 64-px JPEGs: {time.perf_counter() - started:.1f} s")
    for storage in ("mapped", "memory"):
        seconds = []
        for _ in range(rounds):
            config = DataConfig(
                dataset=f"folder:{folder}", cache_dir=str(cache), image_size=64, storage=storage
            )
            started = time.perf_counter()
            load_splits(config, "mse")
            seconds.append(time.perf_counter() - started)
        print(f"load: load_splits of {count:,} images, {storage}: {summary(seconds, 's', 2)}")
    print(f"load average {os.getloadavg()}")


# --- throughput -----------------------------------------------------------------------------


def throughput_part(rounds: int, steps: int) -> None:
    from common import trainer_images_per_second

    root = data_dir()
    rates: dict[str, list[float]] = {"memory": [], "mapped": []}
    for _ in range(rounds):
        for storage in rates:
            rate = trainer_images_per_second({"storage": storage}, root, steps, device="cpu")
            rates[storage].append(rate)
    for storage, values in rates.items():
        print(f"MNIST, default model, {storage}: {summary(values, 'images/s')}")
    ratio = statistics.median(rates["mapped"]) / statistics.median(rates["memory"])
    print(f"mapped / in memory: {ratio:.3f} (target >= 0.95); load average {os.getloadavg()}")


# --- decode ---------------------------------------------------------------------------------


def decode_part(work: Path, count: int) -> None:
    folder = work / f"jpegs-{count}"
    started = time.perf_counter()
    build_images(folder, count, (500, 375), quality=85)
    print(f"built {count:,} 500x375 JPEGs in {time.perf_counter() - started:.0f} s")
    rates = {}
    for workers in (1, 2):
        cache = work / f"decode-cache-{workers}"
        shutil.rmtree(cache, ignore_errors=True)
        started = time.perf_counter()
        first_decode(folder, cache, workers)
        rates[workers] = count / (time.perf_counter() - started)
        print(f"first decode, {workers} worker(s): {rates[workers]:,.0f} images/s")
        shutil.rmtree(cache, ignore_errors=True)
    print(f"2 workers / 1 worker: {rates[2] / rates[1]:.2f}x (target >= 1.8x)")
    killed_and_resumed(folder, work / "decode-cache-killed", count)


def killed_and_resumed(folder: Path, cache: Path, count: int) -> None:
    """SIGKILL a first decode once half the shards exist, then decode again and count."""
    from vae.data import cache as shard_cache

    per_shard = shard_cache.SHARD_BYTES // (3 * 64 * 64)
    shards = -(-count // per_shard)
    if shards < 2:  # too few images for two shards: use smaller ones for this check
        per_shard = max(1, count // 4)
        shards = -(-count // per_shard)
    script = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import vae.data.cache as c; "
        f"c.SHARD_BYTES = {per_shard * 3 * 64 * 64}; import data_scale as d; "
        f"d.first_decode(__import__('pathlib').Path({str(folder)!r}), "
        f"__import__('pathlib').Path({str(cache)!r}), None)"
    )  # fmt: skip
    process = subprocess.Popen([sys.executable, "-c", script])
    while len(_complete_shards(cache)) < shards // 2 and process.poll() is None:
        time.sleep(0.2)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    before = len(_complete_shards(cache))
    counted: list[int] = []
    from vae.data import decoding

    real = decoding.decode_into

    def counting(out: Any, sources: list[Any], *rest: Any) -> None:
        counted.append(len(sources))
        real(out, sources, *rest)

    decoding.decode_into = counting  # type: ignore[assignment]
    original = shard_cache.SHARD_BYTES
    shard_cache.SHARD_BYTES = per_shard * 3 * 64 * 64
    try:
        started = time.perf_counter()
        first_decode(folder, cache, None)
    finally:
        decoding.decode_into = real  # type: ignore[assignment]
        shard_cache.SHARD_BYTES = original
    print(
        f"killed after {before} of {shards} shards ({before * per_shard:,} images); the rerun "
        f"decoded {sum(counted):,} images in {time.perf_counter() - started:.1f} s "
        f"(expected {count - min(count, before * per_shard):,})"
    )


def _complete_shards(cache: Path) -> list[Path]:
    return list(cache.glob("folder-*/*.safetensors")) if cache.exists() else []


if __name__ == "__main__":
    main()
