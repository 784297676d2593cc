"""Shared fixtures and suite-wide checks.

Fixtures: synthetic MNIST-format data (fast, always there), one tiny trained run shared by every
module that needs a run (``trained_run``), and the real data (optional).

The suite never writes into the checkout: ``pytest_sessionstart``/``pytest_sessionfinish`` compare
``git status --porcelain --ignored`` before and after, and fail the run naming any path that
appeared (skipped with a note where git or a checkout is missing).

Environment variables that size the long tests (CI's ``.ci/run`` sets the large values):

``VAE_TEST_FUZZ_CASES``
    how many randomly mutated checkpoints ``tests/test_hostile_checkpoints.py`` loads
    (default 300; CI 3000).
``VAE_TEST_KILL_TRIALS``
    how many kill -9 trials ``tests/test_fault_injection.py`` runs against a training process
    (default 2; CI 10).
``VAE_DATA_DIR``
    a folder holding the real datasets (``MNIST/raw/`` …), else ``../shared/data`` beside the
    checkout; tests that need them skip when neither holds them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from vae.config import RunConfig

REPO = Path(__file__).resolve().parents[1]


def one_line_error(result, exit_code: int, *fragments: str) -> str:
    """Assert a CliRunner ``result`` failed with ``exit_code`` and exactly one ``error:`` line
    holding every fragment (no traceback); returns that line."""
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == exit_code, result.output
    assert isinstance(result.exception, SystemExit | None), repr(result.exception)
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def env_count(name: str, default: int) -> int:
    """A positive whole number from the environment variable ``name`` (see the docstring)."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise pytest.UsageError(f"{name} must be a whole number, not {text!r}") from None
    if value < 1:
        raise pytest.UsageError(f"{name} must be 1 or more, not {value}")
    return value


# --- the checkout stays as it was ---------------------------------------------------------------

# Not the suite's doing: pytest's and Python's own caches, and the environment CI's clean clone
# gets from ``poetry install`` before the suite runs.
_NOT_OURS = (".venv", ".pytest_cache", "__pycache__")
_STATUS_KEY = pytest.StashKey[list]()


def _checkout_status() -> list[str] | None:
    """``git status --porcelain --ignored`` of the repository (one line per file, the caches
    left out), or None where git is missing or REPO is not a work tree."""
    if shutil.which("git") is None:
        return None
    command = ["git", "-C", str(REPO), "status", "--porcelain", "--ignored", "--untracked-files=all",
               "--", ".", *(f":(exclude,glob)**/{name}/**" for name in _NOT_OURS)]  # fmt: skip
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    if result.returncode != 0:
        return None
    lines = result.stdout.splitlines()
    return [line for line in lines if not any(part in _NOT_OURS for part in line[3:].split("/"))]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "click_parsed: a bad flag refused by click's parser (boxed under CliRunner)"
    )


def pytest_sessionstart(session: pytest.Session) -> None:
    # Hypothesis keeps its example database and caches in ./.hypothesis: send them to a temporary
    # folder instead (removed at the end).
    home = None
    try:
        from hypothesis import configuration
    except ImportError:  # a dev dependency; only tests/test_properties.py needs it
        pass
    else:
        home = Path(tempfile.mkdtemp(prefix="vae-tests-hypothesis-"))
        configuration.set_hypothesis_home_dir(home)
    session.stash[_STATUS_KEY] = [home, _checkout_status()]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    home, before = session.stash.get(_STATUS_KEY, [None, None])
    if home is not None:
        shutil.rmtree(home, ignore_errors=True)
    after = _checkout_status() if before is not None else None
    if before is None or after is None:
        lines = [
            "note: not checking that the suite left the checkout clean (no git, or not a checkout)"
        ]
    else:
        appeared = sorted(set(after) - set(before))
        lines = [
            "error: the test suite wrote into the checkout (git status, new since the start):",
            *(f"  {line}" for line in appeared),
        ] if appeared else []  # fmt: skip
        if appeared:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if lines and reporter is not None:
        reporter.write("\n")  # after the progress line
    for line in lines:
        (reporter.write_line if reporter is not None else print)(line)


def assert_runs_without_torch(app_name: str, argv: list[str]) -> None:
    """Run ``vae.cli.<app_name>`` with ``argv`` in a fresh interpreter; it must succeed without
    ever importing torch (the start-up time users wait for is mostly ``import torch``)."""
    code = (
        "import sys\n"
        f"from vae.cli import {app_name}\n"
        f"sys.argv = {argv!r}\n"
        f"try:\n    {app_name}()\nexcept SystemExit as done:\n    assert done.code in (0, None), done.code\n"
        f"assert 'torch' not in sys.modules, '{argv[0]} imported torch'\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")


def grid_cells(path: Path, side: int = 28, padding: int = 2) -> np.ndarray:
    """The images of a saved grid (white ``padding`` between them) as a (rows, columns, side,
    side) uint8 array, after checking that the padding is white and the grid is whole."""
    from PIL import Image

    with Image.open(path) as picture:
        pixels = np.asarray(picture.convert("L"))
    step = side + padding
    rows, columns = (pixels.shape[0] - padding) // step, (pixels.shape[1] - padding) // step
    assert pixels.shape == (rows * step + padding, columns * step + padding), pixels.shape
    for axis in (0, 1):
        gaps = [i for i in range(pixels.shape[axis]) if i % step < padding]
        assert (np.take(pixels, gaps, axis=axis) == 255).all(), f"{path}: padding not white"
    cells = pixels[padding:, padding:].reshape(rows, step, columns, step)[:, :side, :, :side]
    return cells.transpose(0, 2, 1, 3)


def _write_idx(path: Path, array: torch.Tensor) -> None:
    dims = list(array.shape)
    magic = 0x0800 + len(dims)
    with open(path, "wb") as handle:
        handle.write(struct.pack(">I", magic))
        handle.write(struct.pack(">" + "I" * len(dims), *dims))
        handle.write(array.to(torch.uint8).numpy().tobytes())


def make_synthetic_mnist(root: Path, train: int = 240, test: int = 60, seed: int = 0) -> Path:
    """MNIST's raw IDX layout with simple shapes (bars and blobs) that a VAE can learn quickly."""
    generator = torch.Generator().manual_seed(seed)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", train), ("t10k", test)):
        labels = torch.randint(0, 10, (count,), generator=generator)
        images = torch.zeros(count, 28, 28)
        rows = torch.arange(28).view(28, 1).float()
        cols = torch.arange(28).view(1, 28).float()
        for index in range(count):
            cy, cx = torch.randint(8, 20, (2,), generator=generator).float()
            radius = 3.0 + labels[index].item() / 2
            blob = ((rows - cy) ** 2 + (cols - cx) ** 2) <= radius**2
            images[index][blob] = 255.0
            if labels[index] % 2:
                images[index, :, int(cx)] = 200.0
        _write_idx(raw / f"{split}-images-idx3-ubyte", images)
        _write_idx(raw / f"{split}-labels-idx1-ubyte", labels)
    return root


@pytest.fixture(scope="session")
def synthetic_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_mnist(tmp_path_factory.mktemp("synthetic-data"))


# Every module that needs a trained run uses this one (trained once per session). Its settings
# cover what they check: a mixture prior (3 components), two epochs with sample grids, 120
# training images. Tests that change a run copy it to tmp_path first; the fixture fails at the end
# of the session if any file of the shared run changed.
TRAINED_RUN_FLAGS = [
    "--limit", "120", "--val-size", "40", "--epochs", "2", "--batch-size", "40",
    "--latent-dim", "4", "--hidden-sizes", "16", "--conv-widths", "4,8", "--beta-warmup", "1",
    "--prior-components", "3", "--device", "cpu", "--no-download", "--quiet",
]  # fmt: skip


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory, synthetic_data_dir: Path):
    """The folder of a tiny run trained through ``vae train`` (read-only: copy it to change it)."""
    from vae.cli import app

    runs = tmp_path_factory.mktemp("shared-runs")
    result = CliRunner().invoke(
        app,
        ["train", "tiny", "--runs-dir", str(runs), "--data-dir", str(synthetic_data_dir),
         *TRAINED_RUN_FLAGS],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    run = runs / "tiny"
    before = _digests(run)
    yield run
    assert _digests(run) == before, "a test changed the shared run: copy it to tmp_path first"


# The gallery needs a VAE and an autoencoder trained alike, on runs that have learnt more (200
# images, 3 epochs, wider layers) than the shared one. Read-only, like ``trained_run``.
GALLERY_RUN_FLAGS = [
    "--limit", "200", "--val-size", "40", "--epochs", "3", "--batch-size", "40",
    "--latent-dim", "4", "--hidden-sizes", "32", "--conv-widths", "8,16", "--beta-warmup", "1",
    "--device", "cpu", "--no-download", "--quiet",
]  # fmt: skip


@pytest.fixture(scope="session")
def gallery_runs(tmp_path_factory: pytest.TempPathFactory, synthetic_data_dir: Path):
    """{"vae": run folder, "ae": run folder} of two small runs trained alike (read-only)."""
    from vae.cli import app

    folder = tmp_path_factory.mktemp("gallery-runs")
    runs = {}
    for name, extra in (("vae", []), ("ae", ["--model", "ae"])):
        result = CliRunner().invoke(
            app,
            ["train", name, "--runs-dir", str(folder), "--data-dir", str(synthetic_data_dir),
             *GALLERY_RUN_FLAGS, *extra],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        runs[name] = folder / name
    before = {name: _digests(run) for name, run in runs.items()}
    yield runs
    assert {name: _digests(run) for name, run in runs.items()} == before, "a test changed them"


@pytest.fixture
def tiny_config(synthetic_data_dir: Path, tmp_path: Path) -> RunConfig:
    """A run that trains in about a second on CPU."""
    return make_tiny_config(synthetic_data_dir, tmp_path / "runs")


def make_tiny_config(data_dir: Path, runs_dir: Path) -> RunConfig:
    """``tiny_config``'s settings, for fixtures of a wider scope."""
    config = RunConfig()
    config.data.dataset = "mnist"
    config.data.data_dir = str(data_dir)
    config.data.download = False
    config.data.val_size = 40
    config.model.hidden_sizes = [32]
    config.model.conv_widths = [8, 16]
    config.model.latent_dim = 4
    config.objective.beta_warmup = "1"
    config.train.epochs = 2
    config.train.batch_size = 50
    config.train.device = "cpu"
    config.train.sample_every = 1
    config.train.runs_dir = str(runs_dir)
    return config


def real_data_dir() -> Path | None:
    """$VAE_DATA_DIR or ../shared/data, when it holds MNIST's raw files."""
    candidates = [os.environ.get("VAE_DATA_DIR"), str(REPO.parent / "shared" / "data")]
    for candidate in candidates:
        if candidate and (Path(candidate) / "MNIST" / "raw" / "train-images-idx3-ubyte").exists():
            return Path(candidate)
    return None


@pytest.fixture
def mnist_dir() -> Path:
    found = real_data_dir()
    if found is None:
        pytest.skip("real MNIST not found: set VAE_DATA_DIR to a folder holding MNIST/raw/")
    return found
