"""Multi-process training with torchrun (gloo on CPU): same checkpoints as one process, one
voice on the terminal, every rank stopping together."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from vae.checkpoint import load_model, read_metadata
from vae.config import RunConfig
from vae.data import ImageSet, training_batches
from vae.distributed import PeerFailed, World, run_together
from vae.errors import DataError
from vae.interrupts import graceful_interrupt
from vae.training import train

BIN = Path(sys.executable).parent
TORCHRUN = BIN / "torchrun"


def _flags(config: RunConfig) -> list[str]:
    return [
        "--dataset=mnist",
        f"--data-dir={config.data.data_dir}",
        "--no-download",
        f"--val-size={config.data.val_size}",
        "--hidden-sizes=32",
        "--conv-widths=8,16",
        "--latent-dim=4",
        "--beta-warmup=1",
        f"--epochs={config.train.epochs}",
        f"--batch-size={config.train.batch_size}",
        "--device=cpu",
        "--no-bf16",
        "--sample-every=0",
        f"--runs-dir={config.train.runs_dir}",
        "--quiet",
    ]


def _torchrun(processes: int, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    if not TORCHRUN.exists():
        pytest.skip(f"torchrun not installed beside {sys.executable}")
    command = [
        str(TORCHRUN),
        f"--nproc-per-node={processes}",
        "--standalone",
        str(BIN / "train"),
        *args,
    ]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, env=environment, check=False
    )


@pytest.fixture
def ddp_config(tiny_config: RunConfig) -> RunConfig:
    tiny_config.train.bf16 = False
    tiny_config.train.sample_every = 0
    tiny_config.train.batch_size = 40  # 200 training images: 5 full batches of 20 per rank
    return tiny_config


def test_two_processes_train_the_same_weights_as_one(ddp_config: RunConfig) -> None:
    """With the learned mixture prior, whose parameters are used outside the model's forward
    pass (in the KL) and must still be averaged over processes."""
    ddp_config.model.prior = "mog"
    ddp_config.model.prior_components = 3
    single = train(ddp_config, Path(ddp_config.train.runs_dir) / "single")
    result = _torchrun(2, "ddp", *_flags(ddp_config), "--prior=mog", "--prior-components=3")
    assert result.returncode == 0, result.stderr[-2000:]
    # Rank 0 alone reports.
    assert result.stdout.count("best checkpoint:") == 1
    run_dir = Path(ddp_config.train.runs_dir) / "ddp"
    model = load_model(run_dir / "checkpoint_last.safetensors")
    reference = load_model(single.last_path)
    assert reference.prior is not None
    assert (
        read_metadata(run_dir / "checkpoint_last.safetensors")["epoch"] == ddp_config.train.epochs
    )
    for name, weights in reference.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], weights, atol=1e-4, rtol=1e-4)
    # Resuming with a different number of processes continues the same run.
    ddp_config.train.epochs = 3
    resumed = train(ddp_config, run_dir, resume=True)
    assert resumed.progress.epoch == 3
    assert read_metadata(run_dir / "checkpoint_last.safetensors")["epoch"] == 3


def test_a_nan_stops_every_process_with_one_message(ddp_config: RunConfig) -> None:
    result = _torchrun(2, "nan", *_flags(ddp_config), "--lr=1e30")
    assert result.returncode != 0
    assert result.stderr.count("error: loss became") == 1, result.stderr[-2000:]


def test_ctrl_c_stops_every_process_and_the_run_resumes(ddp_config: RunConfig) -> None:
    if not TORCHRUN.exists():
        pytest.skip(f"torchrun not installed beside {sys.executable}")
    run_dir = Path(ddp_config.train.runs_dir) / "stopped"
    flags = [f for f in _flags(ddp_config) if not f.startswith(("--epochs", "--batch-size"))]
    command = [str(TORCHRUN), "--standalone", "--nproc-per-node=2", str(BIN / "train"),
               "stopped", *flags, "--epochs=500", "--batch-size=10"]  # fmt: skip
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    # A session of its own: the SIGINT goes to torchrun and both workers, as a terminal's would.
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=environment, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (run_dir / "checkpoint_last.safetensors").exists():
            assert process.poll() is None and time.monotonic() < deadline, "no checkpoint came"
            time.sleep(0.2)
        os.killpg(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode != 0
    assert stderr.count("continue with: train --resume") == 1, stderr[-2000:]
    stopped_at = read_metadata(run_dir / "checkpoint_last.safetensors")["epoch"]
    assert 1 <= stopped_at < 500
    ddp_config.train.epochs = stopped_at + 1
    ddp_config.train.batch_size = 10
    resumed = train(ddp_config, run_dir, resume=True)
    assert resumed.progress.epoch == stopped_at + 1


class _FakeWorld(World):
    """One rank of a world whose other ranks report the flags given (no process group)."""

    def __init__(self, rank: int, world_size: int, others: list[list[float]]) -> None:
        super().__init__(rank, world_size)
        object.__setattr__(self, "others", others)

    def all_reduce_max(self, values: torch.Tensor) -> torch.Tensor:
        for other in self.others:  # type: ignore[attr-defined]
            values.copy_(torch.maximum(values, torch.tensor(other)))
        return values


def _fail() -> None:
    raise DataError("cannot load dataset 'mnist'")


def test_a_failure_on_any_rank_stops_every_rank_and_one_reports_it() -> None:
    # Every rank fails: rank 0 reports, rank 1 stays quiet.
    with pytest.raises(DataError, match="^cannot load"):
        run_together(_FakeWorld(0, 2, [[1.0, 1.0]]), torch.device("cpu"), _fail)
    with pytest.raises(PeerFailed) as quiet:
        run_together(_FakeWorld(1, 2, [[1.0, 2.0]]), torch.device("cpu"), _fail)
    assert quiet.value.exit_code == DataError.exit_code
    # Only rank 2 of 3 fails: it reports (naming itself), the others fail quietly.
    with pytest.raises(DataError, match="^rank 2: cannot load") as loud:
        run_together(_FakeWorld(2, 3, [[0.0, 0.0], [0.0, 0.0]]), torch.device("cpu"), _fail)
    assert loud.value.quiet is False  # type: ignore[attr-defined]
    with pytest.raises(PeerFailed, match="rank 2 failed"):
        run_together(_FakeWorld(0, 3, [[1.0, 1.0]]), torch.device("cpu"), lambda: 5)
    # No rank fails: the result comes back.
    assert run_together(_FakeWorld(1, 3, [[0.0, 0.0]]), torch.device("cpu"), lambda: 5) == 5


@pytest.mark.parametrize(
    ("rank", "error", "printed"),
    [
        ("0", DataError("cannot load dataset 'mnist'"), True),
        ("1", DataError("cannot load dataset 'mnist'"), False),
        ("0", PeerFailed("training process of rank 1 failed; see its message"), False),
    ],
)
def test_only_one_rank_prints_an_error(
    rank: str,
    error: Exception,
    printed: bool,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import typer

    from vae.cli import handle_errors

    monkeypatch.setenv("RANK", rank)
    monkeypatch.setenv("WORLD_SIZE", "2")

    @handle_errors
    def command() -> None:
        raise error

    with pytest.raises(typer.Exit) as exited:
        command()
    assert exited.value.exit_code == 1
    assert (str(error) in capsys.readouterr().err) is printed


@pytest.mark.parametrize("count", [0, 1, 5, 40, 41, 127])
@pytest.mark.parametrize("world_size", [1, 2, 3, 8])
def test_shards_are_disjoint_and_cover_the_batch(count: int, world_size: int) -> None:
    parts = [World(rank, world_size).shard(count) for rank in range(world_size)]
    covered = [index for part in parts for index in range(count)[part]]
    assert covered == list(range(count))
    sizes = [len(range(count)[part]) for part in parts]
    assert max(sizes) - min(sizes) <= 1


def test_sharded_batches_join_into_the_single_process_batches() -> None:
    images = ImageSet(torch.randint(0, 256, (103, 1, 6, 6), dtype=torch.uint8))
    whole = list(training_batches(images, 25, 7, 3, True))
    parts = [
        list(training_batches(images, 25, 7, 3, True, shard=World(rank, 3).shard))
        for rank in range(3)
    ]
    for index, batch in enumerate(whole):
        torch.testing.assert_close(torch.cat([p[index] for p in parts]), batch, rtol=0, atol=0)


def test_torchrun_signals_are_one_stop_request() -> None:
    # torchrun forwards the terminal's Ctrl-C, so a worker sees it twice, then SIGTERM.
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with graceful_interrupt(distributed=True) as stop_requested:
        assert not stop_requested()
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop_requested()
    with graceful_interrupt(distributed=True) as stop_requested:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop_requested()
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_a_single_process_keeps_the_second_ctrl_c_as_an_abort() -> None:
    with pytest.raises(KeyboardInterrupt), graceful_interrupt() as stop_requested:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop_requested()
        os.kill(os.getpid(), signal.SIGINT)


def test_a_malformed_torchrun_environment_is_one_line() -> None:
    from typer.testing import CliRunner

    from vae.cli import train_app

    result = CliRunner().invoke(train_app, ["x"], env={"WORLD_SIZE": "two"})
    assert result.exit_code == 2
    assert "WORLD_SIZE='two' is not an integer" in result.output
    assert "Traceback" not in result.output
