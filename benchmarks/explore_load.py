"""The explorer under an attacker's load, and the address space it reserves.

    VAE_DATA_DIR=../shared/data poetry run python benchmarks/explore_load.py [--tree DIR]

``python -m vae explore`` with the shipped checkpoint on 127.0.0.1 (``--tree``: the ``vae``
package of another tree, for instance ``git archive <commit> vae | tar -x -C DIR``, to measure
before a change), then:

- address space: VmSize of the idle explorer once everything has loaded, and again after a
  burst of 50 decodes and 50 encodings at once (twice), with the part not mapped from files;
- incomplete requests: 3,000 connections that send half their headers and 1,000 that send half
  a body, and how many of them are still open 1, 6, 12 and 30 s after the last one opened;
- a flood: two client processes opening 10,500 connections each and holding them, while a
  well-behaved client asks for ``/api/status`` every half second (answered or not, and how fast),
  the explorer's open file descriptors are counted, and its stderr is weighed.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from common import REPO, data_dir, describe_machine, summary

CHECKPOINT = str(REPO / "pretrained" / "checkpoint_best.safetensors")
LATENT = 32
HALF_HEADERS, HALF_BODIES = 3000, 1000
FLOOD_CLIENTS, FLOOD_CONNECTIONS = 2, 10_500


def start(tree: str | None, stderr: object) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "COLUMNS": "200"}
    if tree:
        env["PYTHONPATH"] = tree
    command = [sys.executable, "-m", "vae", "explore", "--port", "0", "--no-open",
               "--checkpoint", CHECKPOINT, "--data-dir", data_dir()]  # fmt: skip
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env, cwd=tree or REPO
    )
    line = process.stdout.readline()
    if not line.startswith("vae explore: http://"):
        process.kill()
        sys.exit(f"explore did not start: {line}")
    return process, line.split()[2]


def wait_until_loaded(url: str) -> None:
    while True:
        with urllib.request.urlopen(url + "api/status", timeout=60) as response:
            features = json.loads(response.read())["features"]
        if all(feature["state"] != "loading" for feature in features.values()):
            return
        time.sleep(0.3)


def address_space(pid: int) -> str:
    status = Path(f"/proc/{pid}/status").read_text()
    kilobytes = int(re.search(r"VmSize:\s+(\d+) kB", status).group(1))
    threads = re.search(r"Threads:\s+(\d+)", status).group(1)
    own = 0
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) < 6 or fields[5].startswith("["):
            low, high = (int(x, 16) for x in fields[0].split("-"))
            own += high - low
    return (
        f"VmSize {kilobytes:,} kB ({kilobytes / 2**20:.2f} GiB), not from files "
        f"{own >> 20:,} MiB, {threads} threads"
    )


def post(url: str, path: str, body: dict) -> int:
    request = urllib.request.Request(
        url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return response.status


def burst(url: str) -> None:
    with ThreadPoolExecutor(50) as pool:
        for _ in range(2):
            list(pool.map(lambda i: post(url, "api/decode", {"z": [0.01 * i] * LATENT}), range(50)))
            list(pool.map(lambda i: post(url, "api/encode/test", {"index": i % 20}), range(50)))


def still_open(connections: list[socket.socket]) -> int:
    """How many of ``connections`` the server has neither answered (a 408) nor closed."""
    count = 0
    for connection in connections:
        if connection.fileno() < 0:
            continue
        connection.setblocking(False)  # with a timeout, recv would wait for it first
        try:
            connection.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            count += 1
            continue
        except OSError:
            pass
        connection.close()  # closed, or answered before its request was complete: a 408
    return count


def incomplete_requests(port: int) -> None:
    connections = []
    started = time.monotonic()
    for index in range(HALF_HEADERS + HALF_BODIES):
        try:
            connection = socket.create_connection(("127.0.0.1", port), timeout=5)
            if index < HALF_HEADERS:
                connection.sendall(b"GET /api/status HTTP/1.1\r\nHost: 127.0")
            else:
                connection.sendall(
                    b"POST /api/decode HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                    b"application/json\r\nContent-Length: 1000\r\n\r\n" + b" " * 100
                )
            connections.append(connection)
        except OSError:
            pass
    print(f"  opened {len(connections):,} in {time.monotonic() - started:.1f} s")
    started = time.monotonic()
    for moment in (1, 6, 12, 30):
        time.sleep(max(0.0, started + moment - time.monotonic()))
        print(f"  still open after {moment} s: {still_open(connections):,}")
    for connection in connections:
        connection.close()


def flood_client(port: int, count: int, hold: float, opened: Any) -> None:
    """Open ``count`` connections (each may be closed by the server at once) and hold them;
    ``opened``: how many connected."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, count + 100)), hard))
    held, started = [], time.monotonic()
    for _ in range(count):
        if time.monotonic() - started > hold:
            break
        try:
            held.append(socket.create_connection(("127.0.0.1", port), timeout=1))
        except OSError:
            pass
    with opened.get_lock():
        opened.value += len(held)
    time.sleep(max(0.0, hold - (time.monotonic() - started)))


def flood(url: str, port: int, pid: int, seconds: float) -> None:
    opened = multiprocessing.Value("i", 0)
    clients = [
        multiprocessing.Process(
            target=flood_client, args=(port, FLOOD_CONNECTIONS, seconds, opened)
        )
        for _ in range(FLOOD_CLIENTS)
    ]
    for client in clients:
        client.start()
    answered, latencies, descriptors = 0, [], 0
    asked = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        asked += 1
        began = time.monotonic()
        try:
            with urllib.request.urlopen(url + "api/status", timeout=5) as response:
                response.read()
            answered += 1
            latencies.append((time.monotonic() - began) * 1000)
        except OSError:
            pass
        try:
            descriptors = max(descriptors, len(os.listdir(f"/proc/{pid}/fd")))
        except OSError:
            pass
        time.sleep(max(0.0, 0.5 - (time.monotonic() - began)))
    for client in clients:
        client.join()
    print(f"  the clients connected {opened.value:,} times")
    print(f"  /api/status answered {answered} of {asked} asked during the flood"
          + (f", {summary(latencies, 'ms', 1)}" if latencies else ""))  # fmt: skip
    print(f"  the explorer's open file descriptors, most seen: {descriptors:,}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tree", help="a folder holding another tree's vae package")
    parser.add_argument("--flood-seconds", type=float, default=20.0)
    args = parser.parse_args()
    print(describe_machine(torch.device("cpu")))
    print(f"ulimit -n {resource.getrlimit(resource.RLIMIT_NOFILE)[0]:,}; tree {args.tree or REPO}")
    with tempfile.TemporaryFile() as stderr:
        process, url = start(args.tree, stderr)
        port = int(url.rstrip("/").rsplit(":", 1)[1])
        try:
            wait_until_loaded(url)
            time.sleep(1)
            print(f"idle, loaded: {address_space(process.pid)}")
            burst(url)
            time.sleep(1)
            print(f"idle after a burst: {address_space(process.pid)}")
            print(f"{HALF_HEADERS:,} half-sent headers and {HALF_BODIES:,} half-sent bodies:")
            incomplete_requests(port)
            print(f"{FLOOD_CLIENTS} clients opening {FLOOD_CONNECTIONS:,} connections each:")
            flood(url, port, process.pid, args.flood_seconds)
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()
        stderr.seek(0)
        written = stderr.read()
    lines = written.decode(errors="replace").splitlines()
    print(f"the explorer's stderr: {len(written):,} bytes, {len(lines):,} lines")
    for line in lines[:6]:
        print(f"  {line[:160]}")


if __name__ == "__main__":
    main()
