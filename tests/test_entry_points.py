"""The installed entry points (vae.entry) as real processes: Ctrl-C and SIGTERM at any moment
end them with one line and exit 130 / 143; Typer's usage errors are one line and exit 2."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vae.cli import _write_safely
from vae.errors import VAEError

BIN = Path(sys.executable).parent
TRAIN = [
    "--limit", "60", "--val-size", "20", "--batch-size", "30", "--latent-dim", "2",
    "--hidden-sizes", "8", "--conv-widths", "2,4", "--beta-warmup", "0", "--sample-every", "0",
    "--device", "cpu", "--no-download", "--quiet",
]  # fmt: skip


def start(command: list[str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs
    )


def wait_for_handler(process: subprocess.Popen, timeout: float = 30.0) -> None:
    """Until the process catches SIGTERM: the entry point's first action (Python itself never
    catches SIGTERM), so a signal sent now lands in the imports that follow."""
    bit = 1 << (signal.SIGTERM - 1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            status = Path(f"/proc/{process.pid}/status").read_text()
        except OSError:
            break
        caught = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
        if int(caught.split()[1], 16) & bit:
            return
        time.sleep(0.002)
    pytest.fail(f"no SIGTERM handler appeared: {process.communicate()}")


def finish(process: subprocess.Popen) -> tuple[int, list[str]]:
    _, stderr = process.communicate(timeout=120)
    assert "Traceback" not in stderr, stderr
    return process.returncode, stderr.splitlines()


needs_proc = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")


@needs_proc
@pytest.mark.parametrize(
    "command",
    [
        [str(BIN / "inference"), "--checkpoint", "none.safetensors"],
        [str(BIN / "info"), "none.safetensors"],
        [str(BIN / "generate"), "--checkpoint", "none.safetensors"],
        [str(BIN / "visualize"), "curves", "none"],
    ],
    ids=["inference", "info", "generate", "visualize"],
)
@pytest.mark.parametrize("extra_delay", [0.0, 0.05])
def test_ctrl_c_right_after_start_is_one_line_and_130(tmp_path, command, extra_delay):
    process = start(command, cwd=tmp_path)
    wait_for_handler(process)
    time.sleep(extra_delay)  # still in the imports of Typer and Rich
    process.send_signal(signal.SIGINT)
    code, lines = finish(process)
    if code == 1:  # finished first on a fast machine: its own one-line error
        assert len(lines) == 1 and lines[0].startswith("error: ")
        return
    assert code == 130 and lines == ["interrupted; files from the last completed save are intact"]


@needs_proc
def test_ctrl_c_through_python_m_vae_exits_130_not_by_signal(tmp_path):
    """``python -m vae``: CPython kills itself with SIGINT at exit when a KeyboardInterrupt
    went through code that exec() built from a string (2 in 40 tries before the entry point
    ended such exits itself); several moments in the imports, each one line and exit 130."""
    for delay in (0.0, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.12):
        process = start([sys.executable, "-m", "vae", "info", "none.safetensors"], cwd=tmp_path)
        wait_for_handler(process)
        time.sleep(delay)
        process.send_signal(signal.SIGINT)
        code, lines = finish(process)
        if code == 1:  # finished first: its own one-line error
            assert len(lines) == 1 and lines[0].startswith("error: "), lines
            continue
        assert code == 130, (delay, code, lines)
        assert lines == ["interrupted; files from the last completed save are intact"]


def test_ctrl_c_at_a_fixed_early_moment(tmp_path):
    # As a user would: about 0.1 s after pressing Enter, while torch and the CLI import.
    process = start([str(BIN / "inference"), "--checkpoint", "none.safetensors"], cwd=tmp_path)
    time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    code, lines = finish(process)
    assert code in (130, 1) and len(lines) == 1, lines


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory, synthetic_data_dir):
    """A train run stopped by SIGTERM once it saved its first checkpoint (its own run, not the
    session's shared one: the stopped process is what is under test)."""
    runs = tmp_path_factory.mktemp("runs")
    process = start(
        [str(BIN / "train"), "run", "--runs-dir", str(runs), "--data-dir",
         str(synthetic_data_dir), "--epochs", "50", *TRAIN]
    )  # fmt: skip
    last = runs / "run" / "checkpoint_last.safetensors"
    deadline = time.monotonic() + 120
    while not last.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert last.exists(), process.communicate()
    process.send_signal(signal.SIGTERM)
    code, lines = finish(process)
    return runs / "run", code, lines


def test_sigterm_stops_training_like_ctrl_c_and_resume_continues(stopped_run, synthetic_data_dir):
    run, code, lines = stopped_run
    assert code == 143
    assert len(lines) == 1 and "saved" in lines[0] and f"train --resume {run}" in lines[0]
    assert (run / "checkpoint_last.safetensors").exists()
    resumed = subprocess.run(
        [str(BIN / "train"), "--resume", str(run), "--epochs", "3", "--quiet"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "VAE_DATA_DIR": str(synthetic_data_dir)},
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stdout and (run / "checkpoint_best.safetensors").exists()


@needs_proc
def test_sigterm_outside_training_is_one_line_and_143(tmp_path, stopped_run):
    run, _, _ = stopped_run
    process = start(
        [str(BIN / "inference"), "--checkpoint", str(run / "checkpoint_last.safetensors"),
         "--mode", "sample", "--output-dir", str(tmp_path)]
    )  # fmt: skip
    wait_for_handler(process)
    time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    code, lines = finish(process)
    if code == 0:  # finished first: nothing to check
        return
    assert code == 143 and lines == [
        "stopped by SIGTERM; files from the last completed save are intact"
    ]


USAGE_ERRORS = [
    ["train", "--latent-dim", "x"],
    ["train", "--no-such-flag"],
    ["generate", "--num-samples"],
    ["inference", "--mode"],
    ["info"],
    ["evaluate", "--k", "1.5"],
    ["visualize", "interpolate", "--steps", "many"],
    ["visualize", "no-such-picture"],
    ["vae", "train", "--no-such-flag"],
    ["vae", "no-such-command"],
]


@pytest.mark.parametrize("argv", USAGE_ERRORS, ids=[" ".join(a) for a in USAGE_ERRORS])
def test_usage_errors_are_one_line_and_exit_2(argv):
    result = subprocess.run(
        [str(BIN / argv[0]), *argv[1:]], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert result.stdout == ""


def test_usage_error_through_python_m_vae():
    result = subprocess.run(
        [sys.executable, "-m", "vae", "info", "--bad"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr == "error: no such option: --bad (see python -m vae info --help)\n"


@pytest.mark.parametrize(
    "argv", [["train", "--help"], ["vae", "--help"], ["visualize", "interpolate", "--help"]]
)
def test_help_still_works(argv):
    result = subprocess.run(
        [str(BIN / argv[0]), *argv[1:]], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and "Usage" in result.stdout and result.stderr == ""


def test_info_entry_point_does_not_import_torch(stopped_run):
    run, _, _ = stopped_run
    code = (
        "import sys\n"
        "from vae.entry import info\n"
        f"sys.argv = ['info', {str(run / 'checkpoint_last.safetensors')!r}, '--json']\n"
        "try:\n    info()\nexcept SystemExit as done:\n    assert done.code == 0, done.code\n"
        "assert 'torch' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_a_failed_gif_write_names_the_gif(tmp_path):
    blocker = tmp_path / "FILE"
    blocker.write_text("a file where a folder should be")
    output, gif = tmp_path / "grid.png", blocker / "x.gif"

    def write() -> Path:
        raise OSError(errno.ENOTDIR, "Not a directory", str(blocker / ".x.gif.1.tmp"))

    with pytest.raises(VAEError) as caught:
        _write_safely(write, output, gif)
    assert str(caught.value) == f"cannot write {gif}: {blocker} is a file, not a folder"


def test_interpolate_gif_below_a_file_is_named(tmp_path, stopped_run):
    run, _, _ = stopped_run
    (tmp_path / "FILE").write_text("x")
    result = subprocess.run(
        [str(BIN / "visualize"), "interpolate", "--checkpoint",
         str(run / "checkpoint_last.safetensors"), "--output", "grid.png", "--gif", "FILE/x.gif",
         "--no-download"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode in (1, 2)
    assert result.stderr.startswith("error: cannot write FILE/x.gif")
    assert result.stderr.count("\n") == 1


def test_a_stop_inside_importlibs_lock_callback_is_delivered_again(monkeypatch):
    """A KeyboardInterrupt raised in importlib's module-lock weakref callback would be printed
    as "Exception ignored" and dropped: the handler sends the signal again instead."""
    import types

    from vae import interrupts

    sent = []
    monkeypatch.setattr(interrupts.os, "kill", lambda pid, signum: sent.append((pid, signum)))
    monkeypatch.setitem(interrupts._state, "phase", interrupts._RUNNING)
    monkeypatch.setitem(interrupts._state, "raise", True)
    monkeypatch.setitem(interrupts._state, "signal", 0)
    callback = types.SimpleNamespace(
        f_code=types.SimpleNamespace(co_name="cb", co_filename="<frozen importlib._bootstrap>")
    )
    interrupts._exit_on_signal(signal.SIGINT, callback)  # returns: nothing raised there
    deadline = time.monotonic() + 5
    while not sent and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sent == [(os.getpid(), signal.SIGINT)]
    assert interrupts._state["phase"] == interrupts._RUNNING  # not noted yet: it comes back
    with pytest.raises(KeyboardInterrupt):  # anywhere else it unwinds the command at once
        interrupts._exit_on_signal(signal.SIGINT, sys._getframe())


def test_a_stop_inside_a_descriptors_set_name_ends_as_a_stop(monkeypatch):
    """Python 3.11 wraps an exception from ``__set_name__`` (run while a class is made, as when
    ``ipaddress`` is imported) in a RuntimeError, which would end the command with a traceback:
    there the handler sends the signal again instead; later Pythons let it unwind as it is."""
    from vae import interrupts

    sent = []
    monkeypatch.setattr(interrupts.os, "kill", lambda pid, signum: sent.append((pid, signum)))
    monkeypatch.setitem(interrupts._state, "phase", interrupts._RUNNING)
    monkeypatch.setitem(interrupts._state, "raise", True)
    monkeypatch.setitem(interrupts._state, "signal", 0)

    class Descriptor:
        def __set_name__(self, owner, name):
            interrupts._exit_on_signal(signal.SIGINT, sys._getframe())

    def make_a_class():
        return type("Owner", (), {"attribute": Descriptor()})

    if sys.version_info >= (3, 12):
        with pytest.raises(KeyboardInterrupt):
            make_a_class()
        return
    assert make_a_class().__name__ == "Owner"  # nothing raised inside: the class is made
    deadline = time.monotonic() + 5
    while not sent and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sent == [(os.getpid(), signal.SIGINT)]
    assert interrupts._state["phase"] == interrupts._RUNNING


@pytest.mark.parametrize(
    ("argv", "preset", "expected"),
    [
        (["generate"], None, "[False] 1"),  # small NumPy work: one OpenBLAS thread
        (["vae", "generate"], None, "[False] 1"),
        (["explore"], None, "[False] 1"),
        (["vae", "explore"], None, "[False] 1"),
        (["generate"], "3", "[False] 3"),  # the user's own count is kept
        (["info"], None, "[] None"),  # other commands keep OpenBLAS's default
        (["vae", "train"], None, "[] None"),
    ],
)
def test_generate_and_explore_ask_for_one_blas_thread_before_numpy_loads(argv, preset, expected):
    """OpenBLAS reads its thread count as NumPy is imported (by the command line): the entry
    point asks before that."""
    code = """
import os, sys
from vae import blas_threads, entry
numpy_loaded = []
def spy():
    numpy_loaded.append("numpy" in sys.modules)
    blas_threads.use_one_blas_thread()
entry.use_one_blas_thread = spy
sys.argv = [*sys.argv[1:], "--help"]
try:
    getattr(entry, sys.argv[0])()
except SystemExit:
    pass
print(numpy_loaded, os.environ.get("OPENBLAS_NUM_THREADS"), file=sys.stderr)
"""
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    if preset is not None:
        env["OPENBLAS_NUM_THREADS"] = preset
    result = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines()[-1] == expected, result.stderr
