"""The explorer under load, as a real server on a free port: requests that stop half-way are
cut off, connections past the limit are closed while others are still answered, running out of
file descriptors is one line (no traceback per attempt), and the idle process keeps its address
space small. Timeouts are shortened through ``serve``'s ``limits`` (a ``python -c`` explorer);
the limit on connections and the memory are checked on the installed command."""

from __future__ import annotations

import json
import os
import re
import resource
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

import explore_screenshot  # noqa: E402

from vae.explore.connections import Limits
from vae.explore.footprint import THREADS
from vae.explore.server import RESERVED_FILES, fitted

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "pretrained" / "checkpoint_best.safetensors"
LATENT = 32  # the shipped model's
# An explorer with the given Limits (keyword arguments after the checkpoint and data folder);
# an optional `ulimit -n` and descriptors held open by the process itself before it serves.
SERVE = """
import os, resource, sys
from pathlib import Path
from vae.explore.connections import Limits
from vae.explore.footprint import THREADS
from vae.explore.server import serve
from vae.reporting import RichReporter
checkpoint, data_dir, limits, files, held = sys.argv[1:]
if int(files):
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (int(files), hard))
kept = [os.open(os.devnull, os.O_RDONLY) for _ in range(int(held))]
serve(Path(checkpoint), "127.0.0.1", 0, RichReporter(), data_dir=data_dir,
      limits=Limits(**eval(limits)))
"""


def start(
    data_dir: Path, limits: dict, files: int = 0, held: int = 0
) -> tuple[subprocess.Popen, str]:
    """``serve`` with ``limits`` in a process of its own; the process and the page's address."""
    arguments = [str(SHIPPED), str(data_dir), repr(limits), str(files), str(held)]
    process = subprocess.Popen(
        [sys.executable, "-c", SERVE, *arguments],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("vae explore: http://"):
        process.kill()
        raise AssertionError(f"the explorer did not start: {line}{process.communicate()[1]}")
    return process, line.split()[2]


def stop(process: subprocess.Popen) -> list[str]:
    """Stop the explorer (SIGTERM); the lines of its stderr."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        _, stderr = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        _, stderr = process.communicate()
    return stderr.strip().splitlines()


def port_of(url: str) -> int:
    return int(url.rstrip("/").rsplit(":", 1)[1])


def connect(url: str, sent: bytes = b"") -> socket.socket:
    connection = socket.create_connection(("127.0.0.1", port_of(url)), timeout=30)
    if sent:
        connection.sendall(sent)
    return connection


def answer_and_close(connection: socket.socket, within: float) -> tuple[bytes, float]:
    """What the server sends before closing ``connection``, and how long that took."""
    started, received = time.monotonic(), b""
    connection.settimeout(within)
    try:
        while chunk := connection.recv(4096):
            received += chunk
    except ConnectionResetError:
        pass
    except TimeoutError:
        raise AssertionError(f"still open after {within} s (received {received!r})") from None
    finally:
        connection.close()
    return received, time.monotonic() - started


def closed(connection: socket.socket) -> bool:
    """Whether the server has closed ``connection`` (sending nothing)."""
    timeout = connection.gettimeout()
    connection.setblocking(False)  # a socket with a timeout would wait for it before recv
    try:
        return connection.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
    finally:
        connection.settimeout(timeout)


def get_status(url: str) -> int:
    with urllib.request.urlopen(url + "api/status", timeout=30) as response:
        json.loads(response.read())
        return response.status


def wait_until_loaded(url: str) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        with urllib.request.urlopen(url + "api/status", timeout=30) as response:
            features = json.loads(response.read())["features"]
        if all(feature["state"] != "loading" for feature in features.values()):
            return
        time.sleep(0.2)
    raise AssertionError(f"still loading after 90 s: {features}")


DECODE = (
    b"POST /api/decode HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n"
)
SHORT = {"header_seconds": 1.0, "body_idle_seconds": 1.0, "report_seconds": 30.0}
TIMED_OUT = "whose request did not arrive in time"


def test_half_sent_headers_are_answered_408_and_closed_within_the_timeout(synthetic_data_dir):
    process, url = start(synthetic_data_dir, SHORT)
    try:
        started = time.monotonic()
        half_line = connect(url, b"GET /api/sta")
        half_headers = connect(url, b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\nAcc")
        unused = connect(url)  # as a browser opens one ahead of need
        for connection in (half_line, half_headers):
            received, _ = answer_and_close(connection, within=10)
            assert received.startswith(b"HTTP/1.1 408 "), received
            assert received.endswith(b'{"error": "the request did not arrive in time"}')
        assert answer_and_close(unused, within=10)[0] == b""
        assert time.monotonic() - started < 5  # 1 s, on a busy machine a little more
        assert get_status(url) == 200  # the others are answered as before
    finally:
        lines = stop(process)
    # One line for the two, when the explorer stops; nothing for the connection never used.
    assert len(lines) == 1 and TIMED_OUT in lines[0] and "closed 2 connections" in lines[0], lines
    assert "Traceback" not in "\n".join(lines)


def trickle(connection: socket.socket, seconds: float) -> float:
    """Send a byte every 0.3 s (never a second without one, 3 bytes a second) until the server
    answers or closes; how long that took."""
    started = time.monotonic()
    poller = select.poll()
    poller.register(connection, select.POLLIN)
    while time.monotonic() - started < seconds:
        if poller.poll(300):
            return time.monotonic() - started
        try:
            connection.sendall(b" ")
        except OSError:
            return time.monotonic() - started
    raise AssertionError(f"a trickle still accepted after {seconds} s")


def test_a_body_that_stops_or_trickles_is_cut_off_and_a_steady_one_answered(synthetic_data_dir):
    body = json.dumps({"z": [0.0] * LATENT}).encode()
    process, url = start(synthetic_data_dir, SHORT)
    try:
        with ThreadPoolExecutor(1) as pool:
            started = time.monotonic()
            stopped = connect(url, DECODE % len(body) + body[:20])
            trickled = connect(url, DECODE % len(body) + body[:5])
            trickling = pool.submit(trickle, trickled, 6)
            left = connect(url, DECODE % len(body) + body[:20])
            left.close()  # a closed tab mid-upload: nothing to say on the terminal
            # 100 kB at 40 kB/s, in pieces half a second apart: above the rate, under the idle time.
            padded = body + b" " * (100_000 - len(body))
            steady = connect(url, DECODE % len(padded))
            for index in range(0, len(padded), 20_000):
                time.sleep(0.5)
                steady.sendall(padded[index : index + 20_000])
            received, _ = answer_and_close(steady, within=30)
            assert received.startswith(b"HTTP/1.1 200 ") and b"data:image/png" in received
            received, took = answer_and_close(stopped, within=10)
            assert received.startswith(b"HTTP/1.1 408 "), received
            assert time.monotonic() - started < 10
            # Its second of credit ran out: 3 bytes a second buy a third of a millisecond.
            assert trickling.result() < 3
            assert answer_and_close(trickled, within=10)[0].startswith(b"HTTP/1.1 408 ")
    finally:
        lines = stop(process)
    assert len(lines) == 1 and TIMED_OUT in lines[0] and "closed 2 connections" in lines[0], lines


def test_connections_past_the_limit_are_closed_at_once_and_others_still_answered(
    synthetic_data_dir,
):
    """The installed command with its own limits: 300 connections that send nothing, more than
    the 256 it keeps open; the oldest ones go as new ones arrive, a request is still answered
    meanwhile, and the terminal gets one line with the count."""
    process, url = explore_screenshot.start_explorer(
        "--checkpoint", str(SHIPPED), "--data-dir", str(synthetic_data_dir)
    )
    limit = fitted(Limits(), resource.getrlimit(resource.RLIMIT_NOFILE)[0]).max_connections
    idle: list[socket.socket] = []
    try:
        idle = [connect(url) for _ in range(300)]
        deadline = time.monotonic() + 3
        while sum(closed(c) for c in idle) < 300 - limit and time.monotonic() < deadline:
            time.sleep(0.05)
        gone = [c for c in idle if closed(c)]
        assert len(gone) == 300 - limit  # the first 44: still within their 5 s to send a request
        assert all(closed(c) for c in idle[: 300 - limit])
        assert get_status(url) == 200  # takes the place of the oldest one left
        time.sleep(0.2)
        assert closed(idle[300 - limit])
    finally:
        for connection in idle:
            connection.close()
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    lines = stderr.strip().splitlines()
    assert len(lines) == 2 and lines[1] == "stopped the explorer", lines
    assert lines[0].startswith(f"warning: explorer: closed {300 - limit + 1} connections over ")
    assert f"the limit of {limit} open at once" in lines[0]


def test_running_out_of_file_descriptors_is_counted_in_a_line_not_a_traceback_each(
    synthetic_data_dir,
):
    """`ulimit -n 128` with 90 of them taken by the process itself: 60 connections need more
    than are left. asyncio would try accept() again at once up to 2,048 times, with a traceback
    for each; the explorer says it once (with how many times it failed), serves again as soon as
    descriptors are free, and its limit on connections fits under the ulimit."""
    assert fitted(Limits(), 128).max_connections == (128 - RESERVED_FILES) // 2
    assert fitted(Limits(), 1 << 20) == Limits() and fitted(Limits(), None) == Limits()
    limits = {**SHORT, "report_seconds": 60.0}
    process, url = start(synthetic_data_dir, limits, files=128, held=90)
    idle: list[socket.socket] = []
    try:
        wait_until_loaded(url)  # torch and the data are read: the attack takes what is left
        idle = [connect(url) for _ in range(60)]
        time.sleep(2.5)  # accept() fails, the accepted ones time out (1 s), the rest follow
        for connection in idle:
            connection.close()
        time.sleep(1.5)
        assert get_status(url) == 200
    finally:
        for connection in idle:
            connection.close()
        lines = stop(process)
    assert len(lines) == 1, lines
    failed = re.fullmatch(
        r"warning: explorer: out of file descriptors \(ulimit -n 128\): accepting new "
        r"connections failed (\d+) times? in [\d.]+ s",
        lines[0],
    )
    assert failed and 1 <= int(failed.group(1)) <= 10, lines  # once a second, not thousands


def _address_space(pid: int) -> tuple[int, int]:
    """VmSize and the part of it that is not mapped from files (heaps, arenas, stacks), bytes."""
    status = Path(f"/proc/{pid}/status").read_text()
    total = int(re.search(r"VmSize:\s+(\d+) kB", status).group(1)) * 1024
    own = 0
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) < 6 or fields[5].startswith("["):
            start, end = (int(x, 16) for x in fields[0].split("-"))
            own += end - start
    return total, own


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux's /proc")
def test_the_idle_explorer_reserves_little_address_space_after_a_burst(synthetic_data_dir):
    """After 50 decodes and 50 encodings at once, the idle explorer's own reservations
    (everything but the files it maps, 2.2 GiB of which torch's CUDA libraries with a CUDA
    build: see vae/explore/footprint.py) stay under 700 MiB; they were 971 MiB here on 2 cores
    (a 64 MiB malloc arena and an 8 MiB stack for each of min(32, cores + 4) workers, and a
    thread per core for torch and OpenBLAS), 501 MiB with the caps."""
    process, url = explore_screenshot.start_explorer(
        "--checkpoint", str(SHIPPED), "--data-dir", str(synthetic_data_dir)
    )
    try:
        wait_until_loaded(url)

        def post(path: str, body: dict) -> int:
            request = urllib.request.Request(
                url + path, data=json.dumps(body).encode(),
                headers={"Content-Type": "application/json"},
            )  # fmt: skip
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status

        with ThreadPoolExecutor(50) as pool:
            decodes = pool.map(lambda i: post("api/decode", {"z": [0.01 * i] * LATENT}), range(50))
            encodings = pool.map(lambda i: post("api/encode/test", {"index": i % 20}), range(50))
            assert set(decodes) == {200} and set(encodings) == {200}
        time.sleep(0.5)
        total, own = _address_space(process.pid)
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)
    assert own < 700 << 20, f"{own / 2**20:.0f} MiB of {total / 2**20:.0f} MiB"


@pytest.mark.parametrize("command", [["explore"], ["vae", "explore"]])
def test_the_explorer_caps_its_threads_before_numpy_loads(command):
    """OpenBLAS starts its threads, one per core, as NumPy is imported, and the command line
    imports NumPy: the explorer's entry point sets their number (and torch's) before that,
    keeping a value the user set."""
    code = """
import os, sys
import vae.explore.footprint as footprint
numpy_loaded = []
footprint.reserve_less = lambda: numpy_loaded.append("numpy" in sys.modules)
from vae import entry
sys.argv = [*sys.argv[1:], "--port", "70000"]  # refused once parsed: no server starts
try:
    getattr(entry, sys.argv[0])()
except SystemExit:
    pass
print(numpy_loaded)
"""
    result = subprocess.run(
        [sys.executable, "-c", code, *command], capture_output=True, text=True, timeout=120
    )
    assert result.stdout.strip() == "[False]", result.stderr
    found = subprocess.run(
        [sys.executable, "-c", "import os; from vae.explore.footprint import reserve_less; "
         "reserve_less(); print(os.environ['OMP_NUM_THREADS'], os.environ['MKL_NUM_THREADS'])"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "OMP_NUM_THREADS": "7"},
    )  # fmt: skip
    assert found.stdout.split() == ["7", str(THREADS)], found.stderr
