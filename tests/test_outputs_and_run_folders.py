"""Named outputs never destroy, one writer per run folder, and a checkpoint decides no write
location (issue 19, items 1, 2 and 4)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import make_synthetic_mnist, one_line_error
from vae.cli import app
from vae.errors import VAEError
from vae.fileio import PICTURE, atomic_write_bytes, check_replaceable
from vae.images import save_grid
from vae.runlock import LOCK_NAME, RunFolderBusy, run_folder_lock

runner = CliRunner()
TINY = [
    "--limit", "60", "--val-size", "20", "--epochs", "1", "--batch-size", "30",
    "--latent-dim", "2", "--hidden-sizes", "8", "--conv-widths", "2,4", "--beta-warmup", "0",
    "--sample-every", "0", "--device", "cpu", "--no-download", "--prior-components", "3",
]  # fmt: skip


@pytest.fixture
def run(trained_run) -> Path:
    """The session's shared run (tests/conftest.py, a 3-component mixture prior); tests that
    change it copy it first."""
    return trained_run


@pytest.fixture
def checkpoint(run, tmp_path) -> Path:
    copy = tmp_path / "model.safetensors"
    shutil.copyfile(run / "checkpoint_best.safetensors", copy)
    return copy


# --- 1. named outputs never destroy ---------------------------------------------------------


def test_generate_onto_its_own_checkpoint_is_refused_and_the_file_kept(checkpoint):
    before = checkpoint.read_bytes()
    result = runner.invoke(
        app, ["generate", "--checkpoint", str(checkpoint), "--output", str(checkpoint)]
    )
    one_line_error(result, 1, "refusing", "reads")
    assert checkpoint.read_bytes() == before


def test_a_link_to_the_checkpoint_is_resolved(checkpoint, tmp_path):
    link = tmp_path / "out.png"
    link.symlink_to(checkpoint)
    before = checkpoint.read_bytes()
    result = runner.invoke(
        app, ["generate", "--checkpoint", str(checkpoint), "--output", str(link)]
    )
    one_line_error(result, 1, "refusing")
    assert checkpoint.read_bytes() == before and link.is_symlink()


def test_a_file_of_another_kind_is_never_replaced(checkpoint, tmp_path):
    notes = tmp_path / "notes.png"
    notes.write_text("my thesis, chapter 3\n")
    result = runner.invoke(
        app, ["generate", "--checkpoint", str(checkpoint), "--output", str(notes)]
    )
    one_line_error(result, 1, "not a picture")
    assert notes.read_text() == "my thesis, chapter 3\n"


def test_an_earlier_output_may_be_replaced(checkpoint, tmp_path):
    output = tmp_path / "samples.png"
    for seed in ("0", "1"):
        result = runner.invoke(
            app,
            ["generate", "--checkpoint", str(checkpoint), "--output", str(output), "--seed", seed],
        )
        assert result.exit_code == 0, result.output
    assert output.read_bytes().startswith(b"\x89PNG")
    jpeg = tmp_path / "photo.jpg"
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(jpeg)
    result = runner.invoke(
        app, ["generate", "--checkpoint", str(checkpoint), "--output", str(jpeg)]
    )
    assert result.exit_code == 0, result.output


def test_fifo_and_devices_are_never_replaced(checkpoint, tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    result = runner.invoke(
        app, ["generate", "--checkpoint", str(checkpoint), "--output", str(fifo)]
    )
    one_line_error(result, 1, "FIFO")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    result = runner.invoke(
        app, ["generate", "--checkpoint", str(checkpoint), "--output", "/dev/null"]
    )
    one_line_error(result, 1, "device")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_evaluate_output_is_checked_before_the_evaluation(checkpoint, tmp_path, synthetic_data_dir):
    before = checkpoint.read_bytes()
    common = ["evaluate", "--checkpoint", str(checkpoint), "--data-dir", str(synthetic_data_dir),
              "--no-download", "--k", "2", "--limit", "10", "--quiet"]  # fmt: skip
    result = runner.invoke(app, [*common, "--output", str(checkpoint)])
    one_line_error(result, 1, "refusing")
    assert checkpoint.read_bytes() == before
    other = tmp_path / "other.json"
    other.write_text('{"my": "settings"}')
    one_line_error(runner.invoke(app, [*common, "--output", str(other)]), 1, "evaluation JSON")
    assert other.read_text() == '{"my": "settings"}'
    output = tmp_path / "evaluation.json"
    for _ in range(2):  # an earlier evaluation is replaced
        result = runner.invoke(app, [*common, "--output", str(output)])
        assert result.exit_code == 0, result.output
    assert "metrics" in json.loads(output.read_text())


def test_curves_onto_a_checkpoint_of_the_run_is_refused(run):
    last = run / "checkpoint_last.safetensors"
    before = last.read_bytes()
    result = runner.invoke(app, ["visualize", "curves", str(run), "--output", str(last)])
    one_line_error(result, 1, "not a picture")
    assert last.read_bytes() == before


def test_inference_never_writes_over_its_input_image(checkpoint, tmp_path):
    folder = tmp_path / "pictures"
    folder.mkdir()
    original = folder / "samples.png"
    Image.fromarray((np.arange(28 * 28) % 256).astype(np.uint8).reshape(28, 28)).save(original)
    before = original.read_bytes()
    result = runner.invoke(
        app,
        ["inference", "--checkpoint", str(checkpoint), "--input", str(original),
         "--output-dir", str(folder)],
    )  # fmt: skip
    one_line_error(result, 1, "reads")
    assert original.read_bytes() == before


def test_the_library_checks_again_at_write_time(tmp_path):
    """Between the command's early check and its write, a file may appear: still not replaced."""
    document = tmp_path / "grid.png"
    document.write_bytes(b"%PDF-1.7 a document")
    with pytest.raises(VAEError, match="not a picture"):
        save_grid(np.zeros((1, 1, 4, 4), np.float32), document)
    assert document.read_bytes() == b"%PDF-1.7 a document"
    assert [p.name for p in tmp_path.iterdir()] == ["grid.png"]  # no temporary left behind
    check_replaceable(tmp_path / "absent.png", PICTURE)
    with pytest.raises(VAEError, match="folder"):
        atomic_write_bytes(tmp_path, b"x")


# --- 2. one writer per run folder -----------------------------------------------------------


def test_the_lock_refuses_a_second_holder_and_names_the_first(tmp_path):
    folder = tmp_path / "runs" / "a"
    with run_folder_lock(folder):
        assert (folder / LOCK_NAME).read_text().strip() == str(os.getpid())
        code = (
            "import sys\nfrom pathlib import Path\nfrom vae.runlock import run_folder_lock\n"
            "try:\n    with run_folder_lock(Path(sys.argv[1])):\n        print('held')\n"
            "except Exception as error:\n    print(error)\n"
        )
        other = subprocess.run(
            [sys.executable, "-c", code, str(folder)], capture_output=True, text=True, timeout=60
        )
        assert f"in use by process {os.getpid()}" in other.stdout, other.stdout + other.stderr
        with pytest.raises(RunFolderBusy):  # a second open file description: refused too
            with run_folder_lock(folder):
                pass
    assert not (tmp_path / "runs").exists()  # what the lock created and nobody used is removed


def test_a_killed_holder_releases_the_lock(tmp_path):
    folder = tmp_path / "a"
    code = (
        "import sys, time\nfrom pathlib import Path\nfrom vae.runlock import run_folder_lock\n"
        "with run_folder_lock(Path(sys.argv[1])):\n    print('held', flush=True)\n"
        "    time.sleep(60)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunFolderBusy, match=str(holder.pid)):
            with run_folder_lock(folder):
                pass
    finally:
        holder.kill()  # SIGKILL: no clean-up runs, the stale file stays
        holder.wait()
    assert (folder / LOCK_NAME).exists()
    with run_folder_lock(folder):
        assert (folder / LOCK_NAME).read_text().strip() == str(os.getpid())


def test_two_trains_on_one_run_name_one_refused(tmp_path, synthetic_data_dir):
    """Started together: exactly one trains; the other says the folder is in use (or, if the
    first already finished, that the run exists), and the folder holds one run's files."""
    runs = tmp_path / "runs"
    args = ["train", "same", "--runs-dir", str(runs), "--data-dir", str(synthetic_data_dir),
            *TINY, "--quiet"]  # fmt: skip
    entry = Path(sys.executable).with_name("vae")
    processes = [
        subprocess.Popen([str(entry), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
        for _ in range(2)
    ]  # fmt: skip
    results = [(p.wait(timeout=120), p.stderr.read()) for p in processes]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2] or codes == [0, 1], results
    refusal = next(err for code, err in results if code != 0)
    assert len(refusal.strip().splitlines()) == 1, refusal
    assert "in use by process" in refusal or "already exists" in refusal, refusal
    assert not (runs / "same" / LOCK_NAME).exists()


def test_a_lock_file_alone_is_not_a_run(tmp_path, synthetic_data_dir):
    runs = tmp_path / "runs"
    (runs / "x").mkdir(parents=True)
    (runs / "x" / LOCK_NAME).write_text("12345\n")  # left by a killed run
    result = runner.invoke(
        app, ["train", "x", "--runs-dir", str(runs), "--data-dir", str(synthetic_data_dir), *TINY]
    )
    assert result.exit_code == 0, result.output


def test_a_refused_start_leaves_no_folder(tmp_path):
    runs = tmp_path / "runs"
    result = runner.invoke(
        app, ["train", "x", "--runs-dir", str(runs), "--data-dir", str(tmp_path / "none"), *TINY]
    )
    assert result.exit_code == 1, result.output
    assert not (runs / "x").exists()


# --- 4. a checkpoint decides no write location ----------------------------------------------


def _with_data_dir(run_dir: Path, data_dir: str) -> None:
    """Rewrite the run's checkpoint_last so that its stored configuration names ``data_dir``."""
    from test_hostile_checkpoints import join, split

    path = run_dir / "checkpoint_last.safetensors"
    header, body = split(path.read_bytes())
    vae = json.loads(header["__metadata__"]["vae"])
    vae["config"]["data"]["data_dir"] = data_dir
    vae["config"]["data"]["download"] = True
    header["__metadata__"]["vae"] = json.dumps(vae)
    path.write_bytes(join(header, body))


def test_resume_writes_under_the_command_lines_data_folder(tmp_path, run, monkeypatch):
    copy = tmp_path / "r"
    shutil.copytree(run, copy)
    elsewhere = tmp_path / "elsewhere"
    _with_data_dir(copy, str(elsewhere))
    data = make_synthetic_mnist(tmp_path / "data")
    monkeypatch.delenv("VAE_DATA_DIR", raising=False)
    result = runner.invoke(
        app, ["train", "--resume", str(copy), "--epochs", "3", "--data-dir", str(data), "--quiet"]
    )
    assert result.exit_code == 0, result.output
    assert not elsewhere.exists()  # the checkpoint's path was never used


def test_resume_on_other_data_is_refused_naming_data_dir(tmp_path, run, monkeypatch):
    copy = tmp_path / "r"
    shutil.copytree(run, copy)
    before = {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file()}
    other = make_synthetic_mnist(tmp_path / "other", seed=7)
    monkeypatch.delenv("VAE_DATA_DIR", raising=False)
    result = runner.invoke(
        app, ["train", "--resume", str(copy), "--epochs", "3", "--data-dir", str(other)]
    )
    one_line_error(result, 2, "--data-dir", "content hash")
    assert {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file()} == before
    monkeypatch.chdir(tmp_path)  # no data under ./data and no VAE_DATA_DIR: a clear data error
    started = time.monotonic()
    result = runner.invoke(app, ["train", "--resume", str(copy), "--epochs", "3", "--no-download"])
    assert result.exit_code in (1, 2), result.output
    assert time.monotonic() - started < 30


# --- 3. bounded work for any option ---------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        (["generate", "--num-samples", "1000000000"], "--num-samples"),
        (["generate", "--temperature", "inf"], "--temperature"),
        (["generate", "--temperature", "nan"], "--temperature"),
        (["inference", "--num-images", "1000000000"], "--num-images"),
        (["visualize", "interpolate", "--steps", "1000000"], "--steps"),
        (["visualize", "manifold", "--size", "100000"], "--size"),
        (["visualize", "manifold", "--span", "inf"], "--span"),
        (["visualize", "traverse", "--span", "inf"], "--span"),
        (["visualize", "traverse", "--steps", "100000"], "--steps"),
        (["evaluate", "--k", "1000000000"], "--k"),
        (["evaluate", "--batch-size", "1000000000"], "--batch-size"),
    ],
)
def test_sizes_from_options_are_bounded_before_any_work(checkpoint, tmp_path, arguments, fragment):
    command = [*arguments, "--checkpoint", str(checkpoint)]
    if arguments[0] == "generate":
        command += ["--output", str(tmp_path / "out.png"), "--grid-size", "1"]
    elif arguments[0] == "visualize":
        command += ["--output", str(tmp_path / "out.png")]
    elif arguments[0] == "inference":
        command += ["--output-dir", str(tmp_path)]
    else:
        command += ["--limit", "1"]
    started = time.monotonic()
    result = runner.invoke(app, command)
    one_line_error(result, 2, fragment)
    assert time.monotonic() - started < 10
    assert list(tmp_path.iterdir()) == [checkpoint]


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--latent-dim", "1000000000"], "--latent-dim"),
        (["--hidden-sizes", "2000000"], "--hidden-sizes"),
        (["--conv-widths", "8,100000"], "--conv-widths"),
        (["--batch-size", "100000000"], "--batch-size"),
        (["--image-size", "100000"], "--image-size"),
        (["--prior-components", "1000000000"], "--prior-components"),
        (["--beta", "inf"], "--beta"),
        (["--lr", "inf"], "--lr"),
    ],
)
def test_training_sizes_are_bounded(tmp_path, flags, fragment):
    result = runner.invoke(
        app, ["train", "x", "--runs-dir", str(tmp_path / "runs"), "--no-download", *flags]
    )
    one_line_error(result, 2, fragment)
    assert not (tmp_path / "runs").exists()


# --- what a hostile review found --------------------------------------------------------------


def _image_folder(folder: Path, count: int = 4) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        pixels = np.full((28, 28), 40 * index, np.uint8)
        Image.fromarray(pixels).save(folder / f"img{index}.png")
    return folder


def test_outputs_inside_a_folder_dataset_that_is_read_are_refused(checkpoint, tmp_path):
    from test_hostile_checkpoints import join, split

    from vae.cli.common import read_paths

    images = _image_folder(tmp_path / "mine")
    before = (images / "img1.png").read_bytes()
    result = runner.invoke(
        app,
        ["evaluate", "--checkpoint", str(checkpoint), "--ood-dataset", f"folder:{images}",
         "--histogram", str(images / "img1.png"), "--k", "2", "--limit", "4", "--quiet"],
    )  # fmt: skip
    one_line_error(result, 1, "refusing", "reads")
    assert (images / "img1.png").read_bytes() == before
    # A checkpoint trained on folder:PATH reads PATH's images only when given --dataset.
    header, body = split(checkpoint.read_bytes())
    vae = json.loads(header["__metadata__"]["vae"])
    vae["data"]["dataset"] = f"folder:{images}"
    header["__metadata__"]["vae"] = json.dumps(vae)
    checkpoint.write_bytes(join(header, body))
    assert images not in read_paths(checkpoint)
    assert images in read_paths(checkpoint, f"folder:{images}")
    result = runner.invoke(
        app,
        ["inference", "--checkpoint", str(checkpoint), "--dataset", f"folder:{images}",
         "--output-dir", str(images)],
    )  # fmt: skip
    one_line_error(result, 1, "refusing", "reads")
    assert sorted(path.name for path in images.iterdir()) == [f"img{i}.png" for i in range(4)]


def test_evaluate_refuses_one_file_for_json_and_histogram_before_evaluating(checkpoint, tmp_path):
    same = tmp_path / "same.png"
    result = runner.invoke(
        app,
        ["evaluate", "--checkpoint", str(checkpoint), "--ood-dataset", "fashionmnist",
         "--output", str(same), "--histogram", str(same)],
    )  # fmt: skip
    one_line_error(result, 2, "--histogram", "name two files")
    assert not same.exists()


def test_links_planted_in_a_folder_never_redirect_a_write(tmp_path, checkpoint):
    import os as _os

    precious = tmp_path / "precious.txt"
    precious.write_text("precious")
    shared = tmp_path / "shared"
    shared.mkdir()
    # The temporary name an atomic write uses (pid-based): a link there is removed, not followed.
    (shared / f".out.png.{_os.getpid()}.tmp").symlink_to(precious)
    result = runner.invoke(
        app, ["generate", "--checkpoint", str(checkpoint), "--output", str(shared / "out.png")]
    )
    assert result.exit_code == 0, result.output
    assert precious.read_text() == "precious" and not (shared / "out.png").is_symlink()
    # A .lock that is a link in a run folder: refused, the file it points to untouched.
    run_dir = tmp_path / "runs" / "x"
    run_dir.mkdir(parents=True)
    (run_dir / LOCK_NAME).symlink_to(precious)
    with pytest.raises(VAEError, match="not a plain file"):
        with run_folder_lock(run_dir):
            pass
    assert precious.read_text() == "precious"


def test_a_run_whose_images_folder_is_a_link_is_not_resumed(run, tmp_path, synthetic_data_dir):
    copy = tmp_path / "r"
    shutil.copytree(run, copy)
    victim = tmp_path / "victim"
    victim.mkdir()
    if (copy / "images").exists():
        shutil.rmtree(copy / "images")
    (copy / "images").symlink_to(victim)
    result = runner.invoke(
        app,
        ["train", "--resume", str(copy), "--epochs", "3", "--sample-every", "1",
         "--data-dir", str(synthetic_data_dir)],
    )  # fmt: skip
    one_line_error(result, 2, "images", "not a folder of the run")
    assert list(victim.iterdir()) == []


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        (["visualize", "manifold", "--span", "1e39"], "--span"),
        (["visualize", "traverse", "--span", "1e308"], "--span"),
        (["generate", "--temperature", "1e308"], "--temperature"),
    ],
)
def test_finite_but_huge_scales_are_refused(checkpoint, tmp_path, arguments, fragment):
    result = runner.invoke(
        app, [*arguments, "--checkpoint", str(checkpoint), "--output", str(tmp_path / "o.png")]
    )
    one_line_error(result, 2, fragment, "limit")


def test_broken_metrics_files_are_one_line(run, tmp_path):
    for content in (
        b"\xff\xfe\x00garbage\n",
        b"[" * 200_000 + b"\n",
        b'{"epoch": 1, "train_loss": NaN}\n',
    ):
        copy = tmp_path / f"r{len(content)}"
        shutil.copytree(run, copy)
        with open(copy / "metrics.jsonl", "ab") as handle:
            handle.write(content)
        result = runner.invoke(
            app, ["visualize", "curves", str(copy), "--output", str(copy / "c.png")]
        )
        one_line_error(result, 1, "metrics.jsonl")


def test_pictures_of_non_finite_values_are_refused(tmp_path):
    target = tmp_path / "grid.png"
    with pytest.raises(VAEError, match="NaN or infinite"):
        save_grid(np.full((2, 1, 4, 4), np.nan, np.float32), target)
    assert not target.exists()


def test_headers_the_loaders_refuse_are_refused_by_info_too(checkpoint, tmp_path):
    from test_hostile_checkpoints import split

    header, body = split(checkpoint.read_bytes())
    utf16 = json.dumps(header).encode("utf-16")
    (tmp_path / "utf16.safetensors").write_bytes(struct.pack("<Q", len(utf16)) + utf16 + body)
    vae = json.loads(header["__metadata__"]["vae"])
    vae["epoch"] = float("nan")
    header["__metadata__"]["vae"] = json.dumps(vae)  # Python writes the NaN, JSON has none
    text = json.dumps(header).encode()
    (tmp_path / "nan.safetensors").write_bytes(struct.pack("<Q", len(text)) + text + body)
    for name in ("utf16", "nan"):
        for command in (["info", str(tmp_path / f"{name}.safetensors")],
                        ["generate", "--checkpoint", str(tmp_path / f"{name}.safetensors"),
                         "--output", str(tmp_path / "o.png")]):  # fmt: skip
            assert runner.invoke(app, command).exit_code == 1, (name, command)


def test_result_lines_show_file_names_escaped(checkpoint, tmp_path):
    name = tmp_path / "ev\x1b[31mil\nx.png"
    result = runner.invoke(
        app, ["generate", "--checkpoint", str(checkpoint), "--output", str(name)]
    )
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "\\x1b[31mil\\nx.png" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_resume_on_changed_folder_images_says_to_put_them_back(tmp_path, monkeypatch):
    """A folder: run's images are read from the path it records, so --data-dir cannot help: the
    error says which folder's images to restore."""
    images = _image_folder(tmp_path / "mine", count=6)
    monkeypatch.setenv("VAE_DATA_DIR", str(tmp_path / "data"))
    arguments = [
        "train", "f", "--runs-dir", str(tmp_path / "runs"), "--dataset", f"folder:{images}",
        "--image-size", "8", "--val-size", "2", "--batch-size", "2", "--epochs", "1",
        "--architecture", "mlp", "--hidden-sizes", "8", "--latent-dim", "2", "--beta-warmup",
        "0", "--sample-every", "0", "--device", "cpu", "--quiet",
    ]  # fmt: skip
    result = runner.invoke(app, arguments)
    assert result.exit_code == 0, result.output
    Image.fromarray(np.full((28, 28), 255, np.uint8)).save(images / "img0.png")
    run = tmp_path / "runs" / "f"
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    result = runner.invoke(app, ["train", "--resume", str(run), "--epochs", "2", "--quiet"])
    line = one_line_error(result, 2, "put the run's images back in", str(images))
    assert "--data-dir" not in line
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
