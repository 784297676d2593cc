"""How live the explorer feels: start-up to a usable page, a decode's round trip, and a bounded
load test.

    VAE_DATA_DIR=../shared/data poetry run python benchmarks/explore_latency.py [--starts 5]

Against the installed ``explore`` on 127.0.0.1 with the shipped checkpoint, as a browser talks
to it (HTTP/1.1, one kept-alive connection):

- start-up to usable: from launching the process to the first answered ``/api/decode`` (what the
  sliders and Sample need), and to the background features (encoder, test images, latent map)
  being ready, over ``--starts`` launches;
- decode round trip: ``--decodes`` ``/api/decode`` requests one after another, a different latent
  each time (as a dragged slider sends them), wall time from request to parsed answer; the target
  is a median under 50 ms;
- load test: ``--rounds`` rounds of 50 concurrent decode requests, each on its own connection;
  every one must answer 200.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import torch
from common import REPO, data_dir, describe_machine, summary

sys.path.insert(0, str(REPO / "tools"))

import explore_screenshot  # noqa: E402

CHECKPOINT = str(REPO / "pretrained" / "checkpoint_best.safetensors")
TARGET_MS = 50.0
CONCURRENT = 50


def request(
    connection: http.client.HTTPConnection, method: str, path: str, body: object = None
) -> tuple[int, dict]:
    """One request on a kept-alive connection: (status, parsed JSON)."""
    payload = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if payload is not None else {}
    connection.request(method, path, body=payload, headers=headers)
    response = connection.getresponse()
    return response.status, json.loads(response.read())


def connect(url: str) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)


def wait_until_ready(url: str) -> None:
    """Until the background features (encoder, test images, map) are loaded."""
    connection = connect(url)
    while True:
        _, answer = request(connection, "GET", "/api/status")
        states = {feature["state"] for feature in answer["features"].values()}
        if "loading" not in states:
            if states != {"ready"}:
                raise SystemExit(f"error: a feature failed to load: {answer['features']}")
            return
        time.sleep(0.02)


def start_once(tool: Any) -> tuple[float, float]:
    """Seconds from launch to the first decode answered, and to every feature ready."""
    started = time.perf_counter()
    process, url = tool.start_explorer("--checkpoint", CHECKPOINT)
    try:
        zeros = {"z": [0.0] * 32}
        while True:
            try:
                status, _ = request(connect(url), "POST", "/api/decode", zeros)
            except OSError:
                status = 0
            if status == 200:
                usable = time.perf_counter() - started
                break
            time.sleep(0.005)
        wait_until_ready(url)
        return usable, time.perf_counter() - started
    finally:
        process.terminate()
        process.communicate(timeout=30)


def decode_round_trips(url: str, count: int) -> list[float]:
    """Milliseconds per sequential decode, each of a new latent."""
    connection = connect(url)
    generator = np.random.default_rng(0)
    times = []
    for _ in range(count):
        latent = {"z": generator.normal(size=32).round(4).tolist()}
        begin = time.perf_counter()
        status, answer = request(connection, "POST", "/api/decode", latent)
        times.append(1000 * (time.perf_counter() - begin))
        assert status == 200 and answer["image"].startswith("data:image/png")
    return times


def load_round(url: str) -> tuple[float, list[float], list[int]]:
    """50 decodes at once, one connection each: wall seconds, per-request ms, statuses."""
    barrier = threading.Barrier(CONCURRENT)
    times: list[float] = [0.0] * CONCURRENT
    statuses: list[int] = [0] * CONCURRENT

    def one(index: int) -> None:
        connection = connect(url)
        barrier.wait()
        begin = time.perf_counter()
        try:
            statuses[index], _ = request(
                connection, "POST", "/api/decode", {"z": [0.05 * index] * 32}
            )
        except OSError:
            statuses[index] = 0
        times[index] = 1000 * (time.perf_counter() - begin)

    threads = [threading.Thread(target=one, args=(index,)) for index in range(CONCURRENT)]
    begin = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - begin, times, statuses


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--decodes", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    os.environ["VAE_DATA_DIR"] = data_dir()
    print(describe_machine(torch.device("cpu")))
    tool = explore_screenshot

    usable, ready = zip(*(start_once(tool) for _ in range(args.starts)), strict=True)
    print(f"start-up to usable (first decode answered): {summary(list(usable), 's', 3)}")
    print(f"start-up to every feature ready (encoder, 10,000 test images, map): "
          f"{summary(list(ready), 's', 3)}")  # fmt: skip

    process, url = tool.start_explorer("--checkpoint", CHECKPOINT)
    try:
        # While torch loads and the test set is encoded in the background (the first seconds).
        loading = decode_round_trips(url, 60)
        print(f"decode round trip while the encoder loads: {summary(loading, 'ms', 2)}")
        wait_until_ready(url)
        times = decode_round_trips(url, args.decodes)
        median = statistics.median(times)
        verdict = "met" if median < TARGET_MS else "NOT met"
        print(f"decode round trip: {summary(times, 'ms', 2)}; target < {TARGET_MS:g} ms: {verdict}")
        walls, latencies, failures = [], [], 0
        for _ in range(args.rounds):
            wall, each, statuses = load_round(url)
            walls.append(wall)
            latencies += each
            failures += sum(status != 200 for status in statuses)
        print(
            f"load test, {args.rounds} rounds of {CONCURRENT} concurrent decodes: "
            f"{args.rounds * CONCURRENT - failures} of {args.rounds * CONCURRENT} answered 200; "
            f"round {summary(walls, 's', 3)}; per request {summary(latencies, 'ms', 1)}"
        )
        still = decode_round_trips(url, 5)
        print(f"after the load: decode round trip {summary(still, 'ms', 2)}")
    finally:
        process.terminate()
        process.communicate(timeout=30)
    if failures:
        raise SystemExit(f"error: {failures} requests of the load test failed")


if __name__ == "__main__":
    main()
