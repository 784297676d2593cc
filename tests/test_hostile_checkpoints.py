"""Broken and hostile checkpoint files: every reader answers with one line and exit 1 or 2.

Structured cases go through every command that reads a checkpoint (CliRunner); a seeded
byte-mutation fuzz loop then hits the readers behind them: $VAE_TEST_FUZZ_CASES times (300 by
default, 3000 in CI; see tests/conftest.py).
"""

from __future__ import annotations

import io
import json
import math
import os
import random
import resource
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save as save_safetensors
from typer.testing import CliRunner

from conftest import env_count
from vae.checkpoint import LAST_NAME, MODEL_PREFIX, load_model
from vae.cli import _write_json, app
from vae.errors import VAEError
from vae.info import describe_checkpoint
from vae.limits import MAX_PICTURE_PIXELS
from vae.spec import ModelSpec, _tensor_shapes
from vae.training import prepare_resume

runner = CliRunner()
FUZZ_CASES = env_count("VAE_TEST_FUZZ_CASES", 300)


@pytest.fixture
def good_run(trained_run) -> Path:
    """The session's shared run (tests/conftest.py); tests that change it copy it first."""
    return trained_run


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
    cases.update(header_cases(good))
    return cases


def with_raw_metadata(data: bytes, **values) -> bytes:
    """Our checkpoint with entries of its safetensors ``__metadata__`` replaced as they are."""
    header, body = split(data)
    header["__metadata__"].update(values)
    return join(header, body)


def header_cases(good: bytes) -> dict[str, bytes]:
    """Headers that parse but lie: wrong kinds, deep nesting, spans that do not tile the data."""
    header, body = split(good)
    names = sorted((e["data_offsets"], n) for n, e in header.items() if n != "__metadata__")
    (first_offsets, first), (second_offsets, second) = names[0], names[1]
    second_size = second_offsets[1] - second_offsets[0]
    deep = "[" * 100_000 + "]" * 100_000
    raw_deep = b'{"x": ' + deep.encode() + b"}"
    vae = json.loads(header["__metadata__"]["vae"])
    return {
        "vae metadata a JSON object, not a string": with_raw_metadata(good, vae=vae),
        "vae metadata nested 100,000 deep": with_raw_metadata(good, vae=deep),
        "vae metadata nested 500 deep": with_raw_metadata(
            good, vae=json.dumps({**vae, "x": json.loads("[" * 500 + "]" * 500)})
        ),
        "training state nested 100,000 deep": with_raw_metadata(good, training_state=deep),
        "header JSON nested 100,000 deep": struct.pack("<Q", len(raw_deep)) + raw_deep + body,
        "format_version a list": with_raw_metadata(good, format_version=[1]),
        "format_version null": with_raw_metadata(good, format_version=None),
        "format_version a huge number": with_raw_metadata(good, format_version="9" * 5000),
        "model height disagrees with the data's": with_metadata(
            good, lambda m: m["data"].update(height=32)
        ),
        "model channels disagree with the data's": with_metadata(
            good, lambda m: m["data"].update(channels=3)
        ),
        "data section a list": with_metadata(good, lambda m: m.update(data=[1])),
        "model channels 2": with_metadata(good, lambda m: m["model"].update(channels=2)),
        "hidden layer 2,000,000 wide": with_metadata(
            good, lambda m: m["model"].update(hidden_sizes=[2_000_000])
        ),
        "conv images 8192 pixels a side": with_metadata(
            good, lambda m: m["model"].update(height=8192, width=8192)
        ),
        "too many conv layers": with_metadata(
            good, lambda m: m["model"].update(conv_widths=[2] * 40)
        ),
        "a shape larger than its data span": with_tensor_entry(good, first, shape=[2_000_000, 784]),
        "a tensor with an unknown dtype": with_tensor_entry(good, first, dtype="Q7"),
        "a tensor with negative offsets": with_tensor_entry(good, first, data_offsets=[-4, 0]),
        "two tensors overlapping": with_tensor_entry(
            good, second, data_offsets=[first_offsets[0], first_offsets[0] + second_size]
        ),
        "bytes after the last tensor": good + bytes(16),
    }


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
        "visualize": [
            "visualize",
            "interpolate",
            "--checkpoint",
            str(path),
            "--pairs",
            "1",
            "--steps",
            "3",
            "--output",
            str(path.parent / "i.png"),
        ],
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


# --- bounded work, finite weights, edited run files -----------------------------------------


def forged_checkpoint(good: bytes, honest: bool = True, **model_changes) -> bytes:
    """A weights-only checkpoint for ``good``'s model with ``model_changes``, its tensor table
    written for that model: data of the right length (zeros) when ``honest``, else 4 bytes each."""
    header, _ = split(good)
    vae = json.loads(header["__metadata__"]["vae"])
    vae["model"].update(prior="standard", prior_components=0, **model_changes)
    vae["data"].update({key: vae["model"][key] for key in ("channels", "height", "width")})
    table, position = {}, 0
    for name, tensor in _tensor_shapes(ModelSpec.from_dict(vae["model"])).items():
        size = 4 * math.prod(tensor.shape) if honest else 4
        entry = {"dtype": "F32", "shape": list(tensor.shape)}
        table[MODEL_PREFIX + name] = {**entry, "data_offsets": [position, position + size]}
        position += size
    metadata = {**header["__metadata__"], "vae": json.dumps(vae)}
    metadata.pop("training_state", None)
    return join({"__metadata__": metadata, **table}, bytes(position))


def big_cases(good: bytes) -> dict[str, bytes]:
    return {
        # The table claims 7 GB of weights in a 3 KB file (the spans are 4 bytes each).
        "hidden layer 2,000,000 wide": forged_checkpoint(
            good, honest=False, architecture="mlp", conv_widths=[], hidden_sizes=[2_000_000]
        ),
        # Valid in every other respect: 13 one-channel convolutions bring 8192 pixels to 1.
        "conv images 8192 pixels a side": forged_checkpoint(
            good, height=8192, width=8192, conv_widths=[1] * 13, hidden_sizes=[]
        ),
    }


def test_the_big_cases_are_small_files(good_run):
    cases = big_cases((good_run / LAST_NAME).read_bytes())
    assert all(len(case) < 12_000 for case in cases.values()), {
        name: len(case) for name, case in cases.items()
    }


@pytest.mark.parametrize("case", ["hidden layer 2,000,000 wide", "conv images 8192 pixels a side"])
@pytest.mark.parametrize("command", ["info", "generate", "inference"])
def test_a_tiny_file_claiming_a_huge_model_is_refused_quickly_and_small(
    tmp_path, good_run, synthetic_data_dir, case, command
):
    """In a fresh process (torch import included): one line, exit 1, < 10 s, < 1 GB peak."""
    path = place(big_cases((good_run / LAST_NAME).read_bytes())[case], tmp_path / "case")
    code, lines, seconds, peak_kib = run_measured(
        command_lines(path)[command], tmp_path, synthetic_data_dir
    )
    assert code == 1, lines
    assert len(lines) == 1 and lines[0].startswith("error:"), lines
    assert "limit" in lines[0] or "data span" in lines[0], lines[0]
    assert seconds < 10, f"{seconds:.1f} s"
    assert peak_kib < 1024 * 1024, f"peak {peak_kib / 1024:.0f} MiB"


# Runs the command given after it and writes its exit status and peak memory (KiB) to the file
# named first. A child's peak counts the memory of the process it was forked from (Linux records
# the old address space's peak at exec), so the command is started from this small interpreter,
# not from pytest's large one.
_MEASURE = """
import json, os, subprocess, sys
process = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(process.pid, 0)
with open(sys.argv[1], "w") as handle:
    json.dump([os.waitstatus_to_exitcode(status), usage.ru_maxrss], handle)
"""


def run_measured(
    arguments: list[str], cwd: Path, data_dir: Path | None = None
) -> tuple[int, list[str], float, int]:
    """Exit code, non-blank output lines, seconds and peak memory (KiB) of ``python -m vae``
    (with ``VAE_DATA_DIR`` set to ``data_dir`` when given)."""
    env = {**os.environ, **({"VAE_DATA_DIR": str(data_dir)} if data_dir else {})}
    report = cwd / "measured.json"
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(report), sys.executable, "-m", "vae", *arguments],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    code, peak_kib = json.loads(report.read_text())
    output = result.stdout + result.stderr
    return code, [line for line in output.splitlines() if line.strip()], seconds, peak_kib


def test_the_largest_picture_stays_bounded(tmp_path, good_run):
    """A valid 30 KB checkpoint of 1024-pixel RGB images: the most samples the picture limit
    allows decode in bounded memory (a few images at a time); one more is refused at once."""
    case = forged_checkpoint(
        (good_run / LAST_NAME).read_bytes(),
        height=1024,
        width=1024,
        channels=3,
        conv_widths=[4] * 8,
        hidden_sizes=[],
    )
    path = place(case, tmp_path / "big")
    output = tmp_path / "big" / "g.png"
    most = MAX_PICTURE_PIXELS // (3 * 1024 * 1024)
    common = ["generate", "--checkpoint", str(path), "--grid-size", "1", "--output", str(output)]
    code, lines, seconds, peak_kib = run_measured([*common, "--num-samples", str(most)], tmp_path)
    assert code == 0, lines
    assert peak_kib < 1024 * 1024, f"peak {peak_kib / 1024:.0f} MiB"
    # 6.6 s on an idle 2-core machine (docs/checkpoints.md); the bound catches unbatched or
    # unbounded decoding (73 s before the limits), not a busy machine.
    assert seconds < 30, f"{seconds:.1f} s"
    with Image.open(output) as picture:
        assert picture.size[0] == 1024 + 4 and picture.size[1] > most * 1024
    code, lines, seconds, _ = run_measured([*common, "--num-samples", str(most + 1)], tmp_path)
    assert code == 2 and len(lines) == 1 and "limit" in lines[0], lines
    assert seconds < 10


def with_values(data: bytes, name: str, value: float) -> bytes:
    """``data`` with every element of the float32 tensor ``name`` set to ``value``."""
    header, body = split(data)
    begin, end = header[name]["data_offsets"]
    body = body[:begin] + struct.pack("<f", value) * ((end - begin) // 4) + body[end:]
    return join(header, body)


def one_line_error(result, *fragments: str) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code in (1, 2), result.output
    assert isinstance(result.exception, SystemExit | None), repr(result.exception)
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_non_finite_weights_are_refused_by_every_loader(
    tmp_path, good_run, synthetic_data_dir, monkeypatch, value
):
    monkeypatch.setenv("VAE_DATA_DIR", str(synthetic_data_dir))
    shutil.copytree(good_run, tmp_path / "run")
    path = tmp_path / "run" / LAST_NAME
    # A decoder weight: generate's NumPy path reads only the decoder.
    name = "model.decoder.output.weight"
    path.write_bytes(with_values(path.read_bytes(), name, value))
    for command, arguments in command_lines(path).items():
        if command == "info":
            continue  # info reads no tensor data, by design
        result = runner.invoke(app, arguments)
        one_line_error(result, name, "NaN or infinite")


def test_evaluate_refuses_metrics_that_come_out_non_finite(
    tmp_path, good_run, synthetic_data_dir, monkeypatch
):
    monkeypatch.setenv("VAE_DATA_DIR", str(synthetic_data_dir))
    path = tmp_path / "overflow.safetensors"
    # Finite weights whose posterior means square to infinity in float32: the KL is inf.
    good = (good_run / LAST_NAME).read_bytes()
    path.write_bytes(with_values(good, "model.encoder.head.bias", 1e30))
    output = tmp_path / "result.json"
    arguments = ["evaluate", "--checkpoint", str(path), "--k", "2", "--limit", "4", "--quiet"]
    one_line_error(runner.invoke(app, [*arguments, "--output", str(output)]), "evaluation gave")
    assert not output.exists()


def test_evaluation_json_is_never_written_with_nan(tmp_path):
    written: dict[Path, str] = {}

    def write(path: Path, text: str) -> None:
        written[path] = text

    with pytest.raises(VAEError, match="not be valid JSON"):
        _write_json(tmp_path / "a.json", {"metrics": {"nll": math.nan}}, write)
    assert not written
    _write_json(tmp_path / "b.json", {"metrics": {"nll": 80.5}}, write)
    assert json.loads(written[tmp_path / "b.json"]) == {"metrics": {"nll": 80.5}}


def edit_state(data: bytes, change) -> bytes:
    header, body = split(data)
    state = json.loads(header["__metadata__"]["training_state"])
    change(state)
    header["__metadata__"]["training_state"] = json.dumps(state)
    return join(header, body)


def edit_metrics(text: str, **values) -> str:
    records = [json.loads(line) for line in text.splitlines()]
    records[-1].update(values)
    return "".join(json.dumps(record) + "\n" for record in records)


@pytest.mark.parametrize(
    "case",
    [
        "metrics epoch a string",
        "metrics train_loss a string",
        "metrics validation a string",
        "state epoch a string",
        "state best_val a string",
        "state lr a string",
        "state betas too short",
        "state scalars a string",
        "state batch_in_epoch 10**9",
        "state step off by one",
    ],
)
def test_resume_refuses_run_files_with_text_where_numbers_belong(
    tmp_path, good_run, synthetic_data_dir, monkeypatch, case
):
    monkeypatch.setenv("VAE_DATA_DIR", str(synthetic_data_dir))
    run = tmp_path / "run"
    shutil.copytree(good_run, run)
    metrics, last = run / "metrics.jsonl", run / LAST_NAME
    edits = {
        "metrics epoch a string": lambda: edit_metrics(metrics.read_text(), epoch="1"),
        "metrics train_loss a string": lambda: edit_metrics(metrics.read_text(), train_loss="x"),
        "metrics validation a string": lambda: edit_metrics(metrics.read_text(), validation="x"),
    }
    changes = {
        "state epoch a string": lambda s: s["progress"].update(epoch="1"),
        "state best_val a string": lambda s: s["progress"].update(best_val="80"),
        "state lr a string": lambda s: s["optimizer"]["param_groups"][0].update(lr="0.001"),
        "state betas too short": lambda s: s["optimizer"]["param_groups"][0].update(betas=[0.9]),
        "state scalars a string": lambda s: s["optimizer"].update(scalars={"0": {"step": "x"}}),
        "state batch_in_epoch 10**9": lambda s: s["progress"].update(batch_in_epoch=10**9),
        "state step off by one": lambda s: s["progress"].update(step=s["progress"]["step"] + 1),
    }
    if case in edits:
        metrics.write_text(edits[case]())
    else:
        last.write_bytes(edit_state(last.read_bytes(), changes[case]))
    before = {path.name: path.read_bytes() for path in run.iterdir() if path.is_file()}
    one_line_error(runner.invoke(app, ["train", "--resume", str(run)]))
    if case.startswith("state") and "string" not in case:
        after = {path.name: path.read_bytes() for path in run.iterdir() if path.is_file()}
        assert after == before


def broken_png(path: Path) -> Path:
    """A PNG whose IDAT chunk claims 5 bytes: Pillow raises SyntaxError while decoding it."""
    buffer = io.BytesIO()
    Image.fromarray((np.arange(28 * 28) % 256).astype(np.uint8).reshape(28, 28)).save(buffer, "PNG")
    good = buffer.getvalue()
    at = good.index(b"IDAT") - 4
    path.write_bytes(good[:at] + (5).to_bytes(4, "big") + good[at + 4 :])
    return path


def test_a_png_that_pillow_fails_on_with_syntax_error_is_one_line(tmp_path, good_run):
    (tmp_path / "in").mkdir()
    image = broken_png(tmp_path / "in" / "broken.png")
    with pytest.raises(SyntaxError), Image.open(image) as opened:
        opened.load()  # the case is the one the test means
    checkpoint = str(good_run / LAST_NAME)
    for arguments in (
        ["inference", "--checkpoint", checkpoint, "--input", str(image), "--mode", "reconstruct",
         "--output-dir", str(tmp_path / "out")],
        ["evaluate", "--checkpoint", checkpoint, "--input", str(image), "--k", "2"],
        ["visualize", "interpolate", "--checkpoint", checkpoint, "--input", str(tmp_path / "in"),
         "--output", str(tmp_path / "i.png")],
    ):  # fmt: skip
        one_line_error(runner.invoke(app, arguments), "cannot read image", "broken.png")


def test_info_accepts_only_what_every_loader_accepts(tmp_path, good_run):
    """Every file info calls fine passes the loaders' header checks (the structured and big
    cases are refused by both; the good file by neither)."""
    good = (good_run / LAST_NAME).read_bytes()
    for index, case in enumerate([*header_cases(good).values(), *big_cases(good).values()]):
        path = place(case, tmp_path / f"case{index}")
        with pytest.raises(VAEError):
            describe_checkpoint(path)
        with pytest.raises(VAEError):
            load_model(path)
