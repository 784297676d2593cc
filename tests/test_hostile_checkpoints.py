"""Broken and hostile checkpoint files: every reader answers with one line and exit 1 or 2.

Structured cases go through every command that reads a checkpoint (CliRunner); a seeded
byte-mutation fuzz loop then hits the readers behind them thousands of times.
"""

from __future__ import annotations

import json
import random
import resource
import shutil
import struct
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save as save_safetensors
from typer.testing import CliRunner

from vae.checkpoint import LAST_NAME, load_model
from vae.cli import app
from vae.errors import VAEError
from vae.info import describe_checkpoint
from vae.training import prepare_resume

runner = CliRunner()
FUZZ_CASES = 3000


@pytest.fixture(scope="module")
def good_run(tmp_path_factory, synthetic_data_dir) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    result = runner.invoke(
        app,
        ["train", "good", "--runs-dir", str(runs), "--data-dir", str(synthetic_data_dir),
         "--limit", "60", "--val-size", "20", "--epochs", "1", "--batch-size", "30",
         "--latent-dim", "2", "--hidden-sizes", "8", "--conv-widths", "2,4",
         "--beta-warmup", "0", "--sample-every", "0", "--device", "cpu", "--no-download"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return runs / "good"


def split(data: bytes) -> tuple[dict, bytes]:
    (size,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + size]), data[8 + size :]


def join(header: dict, body: bytes) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + body


def with_metadata(data: bytes, change) -> bytes:
    """Our checkpoint with its vae metadata JSON changed by ``change(dict)``."""
    header, body = split(data)
    vae = json.loads(header["__metadata__"]["vae"])
    change(vae)
    header["__metadata__"]["vae"] = json.dumps(vae)
    return join(header, body)


def with_tensor_entry(data: bytes, name: str, **entry) -> bytes:
    header, body = split(data)
    header[name].update(entry)
    return join(header, body)


def structured_cases(good: bytes) -> dict[str, bytes | None]:
    """Name -> file content (None: a directory in the file's place)."""
    header, body = split(good)
    first_weight = next(name for name in header if name.startswith("model."))
    cases: dict[str, bytes | None] = {
        "empty file": b"",
        "random bytes": random.Random(0).randbytes(5000),
        "header length larger than the file": struct.pack("<Q", 10_000) + b"{}",
        "header of gigabytes claimed": struct.pack("<Q", 5 * 2**30) + b"{" * 100,
        "malformed header JSON": struct.pack("<Q", 12) + b'{"a": [1, 2' + b" " * 20,
        "header JSON not an object": struct.pack("<Q", 2) + b"[]",
        "valid safetensors, not ours": save_safetensors({"w": torch.zeros(3)}),
        "our format, metadata not JSON": join(
            {**header, "__metadata__": {**header["__metadata__"], "vae": "{nope"}}, body
        ),
        "metadata without a model": with_metadata(good, lambda m: m.pop("model")),
        "model spec missing a field": with_metadata(good, lambda m: m["model"].pop("latent_dim")),
        "latent size a string": with_metadata(good, lambda m: m["model"].update(latent_dim="2")),
        "latent size 0": with_metadata(good, lambda m: m["model"].update(latent_dim=0)),
        "latent size a trillion": with_metadata(
            good, lambda m: m["model"].update(latent_dim=10**12)
        ),
        "unknown architecture": with_metadata(good, lambda m: m["model"].update(architecture="x")),
        "model spec a list": with_metadata(good, lambda m: m.update(model=[1, 2])),
        "metadata a list": join(
            {**header, "__metadata__": {**header["__metadata__"], "vae": "[1]"}}, body
        ),
        "tensor with a wrong shape": with_tensor_entry(good, first_weight, shape=[3, 3]),
        "tensor with a wrong dtype": with_tensor_entry(good, first_weight, dtype="I64"),
        "tensor offsets past the end": with_tensor_entry(
            good, first_weight, data_offsets=[0, 10**9]
        ),
        "directory instead of a file": None,
    }
    for fraction in (0.01, 0.1, 0.5, 0.9, 0.999):
        cases[f"truncated at {fraction:.1%}"] = good[: int(len(good) * fraction)]
    return cases


def place(case: bytes | None, folder: Path, name: str = LAST_NAME) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if case is None:
        path.mkdir()
    else:
        path.write_bytes(case)
    return path


def command_lines(path: Path) -> dict[str, list[str]]:
    return {
        "info": ["info", str(path)],
        "generate": ["generate", "--checkpoint", str(path), "--output", str(path.parent / "g.png")],
        "inference": ["inference", "--checkpoint", str(path), "--output-dir", str(path.parent)],
        "evaluate": ["evaluate", "--checkpoint", str(path), "--k", "2", "--limit", "4"],
        "train --resume": ["train", "--resume", str(path.parent)],
    }


def test_every_command_refuses_every_broken_checkpoint_in_one_line(
    tmp_path, good_run, synthetic_data_dir, monkeypatch
):
    monkeypatch.setenv("VAE_DATA_DIR", str(synthetic_data_dir))
    good = (good_run / LAST_NAME).read_bytes()
    failures = []
    for index, (name, case) in enumerate(structured_cases(good).items()):
        path = place(case, tmp_path / f"case{index}")
        for command, arguments in command_lines(path).items():
            started = time.perf_counter()
            result = runner.invoke(app, arguments)
            seconds = time.perf_counter() - started
            lines = [line for line in result.output.splitlines() if line.strip()]
            ok = (
                result.exit_code in (1, 2)
                and isinstance(result.exception, SystemExit | None)
                and len(lines) == 1
                and lines[0].startswith("error:")
                and seconds < 10
            )
            if not ok:
                failures.append(f"{name} / {command}: exit {result.exit_code}: {result.output!r}")
    assert not failures, "\n".join(failures)


def read_everything(path: Path) -> None:
    """What info, generate/inference/evaluate and train --resume do with a checkpoint."""
    describe_checkpoint(path)
    load_model(path)
    prepare_resume(path.parent, {})


def test_fuzzed_checkpoints_raise_only_clear_errors(tmp_path, good_run):
    good = (good_run / LAST_NAME).read_bytes()
    header_end = 8 + struct.unpack("<Q", good[:8])[0]
    generator = random.Random(1234)
    folder = tmp_path / "fuzz"
    folder.mkdir()
    (folder / "config.yaml").write_text((good_run / "config.yaml").read_text())
    path = folder / LAST_NAME
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    outcomes = {"refused": 0, "loaded": 0}
    unexpected = []
    for case in range(FUZZ_CASES):
        data = bytearray(good)
        for _ in range(generator.randint(1, 8)):
            # Mostly the header (where parsing happens), sometimes the length or the tensors.
            where = generator.choice(("length", "header", "header", "header", "anywhere"))
            if where == "length":
                position = generator.randrange(8)
            elif where == "header":
                position = generator.randrange(8, header_end)
            else:
                position = generator.randrange(len(data))
            data[position] = generator.randrange(256)
        if generator.random() < 0.1:
            data = data[: generator.randrange(len(data))]
        path.write_bytes(bytes(data))
        try:
            read_everything(path)
            outcomes["loaded"] += 1
        except VAEError as error:
            outcomes["refused"] += 1
            if "\n" in str(error) or not str(error):
                unexpected.append(f"case {case}: multi-line or empty message {str(error)!r}")
        except Exception as error:  # noqa: BLE001 - the point of the test is to catch these
            unexpected.append(f"case {case}: {type(error).__name__}: {error}")
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert not unexpected, "\n".join(unexpected[:20])
    assert outcomes["refused"] > FUZZ_CASES // 2  # the mutations do reach the checks
    assert grown_mib < 300, f"peak memory grew by {grown_mib:.0f} MiB"


def test_a_copied_good_checkpoint_still_loads(tmp_path, good_run):
    """The fuzz baseline: the unmutated file passes every reader."""
    shutil.copytree(good_run, tmp_path / "copy")
    read_everything(tmp_path / "copy" / LAST_NAME)
