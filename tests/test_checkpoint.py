import json
import os
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from vae.checkpoint import (
    FORMAT_VERSION,
    build_metadata,
    load_model,
    read_header,
    read_metadata,
    save_checkpoint,
)
from vae.errors import CheckpointError
from vae.fileio import atomic_write_bytes
from vae.model import ModelSpec, build_model

DATA_INFO = {"dataset": "mnist", "channels": 1, "height": 28, "width": 28, "binarize": "dynamic"}


@pytest.fixture
def model():
    torch.manual_seed(0)
    return build_model(ModelSpec("conv", 6, 1, 28, 28, "bce", [16], [8, 16]))


@pytest.fixture
def checkpoint(tmp_path, model):
    path = tmp_path / "checkpoint_best.safetensors"
    metadata = build_metadata(
        model=model,
        data_info=DATA_INFO,
        config={"objective": {"beta": 1.0, "beta_schedule": "linear"}},
        epoch=3,
        step=30,
        validation={"neg_elbo": 101.5},
        kind="best",
        run_name="test",
    )
    save_checkpoint(path, model, metadata)
    return path


def test_round_trip_keeps_weights_and_metadata(checkpoint, model):
    loaded = load_model(checkpoint)
    for (name, original), (_, restored) in zip(
        model.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert torch.equal(original, restored), name
    metadata = read_metadata(checkpoint)
    assert metadata["model"] == model.spec.to_dict()
    assert metadata["epoch"] == 3 and metadata["step"] == 30
    assert metadata["validation"] == {"neg_elbo": 101.5}
    assert metadata["parameter_count"] == model.parameter_count()
    assert metadata["format_version"] == FORMAT_VERSION
    assert metadata["data"]["dataset"] == "mnist"
    assert metadata["created_utc"].endswith("Z")
    assert not loaded.training  # ready for inference
    x = torch.rand(2, 1, 28, 28)
    assert torch.equal(model.eval().reconstruct(x), loaded.reconstruct(x))


def test_load_onto_each_available_device(checkpoint):
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        loaded = load_model(checkpoint, device=device)
        assert next(loaded.parameters()).device.type == device


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_checkpoint_saved_from_gpu_loads_on_cpu(tmp_path, model, checkpoint):
    gpu_model = load_model(checkpoint, device="cuda")
    path = tmp_path / "from_gpu.safetensors"
    save_checkpoint(path, gpu_model, read_metadata(checkpoint))
    restored = load_model(path, device="cpu")
    for original, loaded in zip(
        model.state_dict().values(), restored.state_dict().values(), strict=True
    ):
        assert torch.equal(original, loaded)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_model(tmp_path / "nope.safetensors")


def test_not_a_safetensors_file(tmp_path):
    path = tmp_path / "image.safetensors"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))
    with pytest.raises(CheckpointError, match="is not a safetensors file"):
        load_model(path)
    tiny = tmp_path / "tiny.safetensors"
    tiny.write_bytes(b"abc")
    with pytest.raises(CheckpointError, match="is not a safetensors file"):
        read_header(tiny)


def test_truncated_file(tmp_path, checkpoint):
    data = checkpoint.read_bytes()
    for cut in (len(data) - 10, 8 + 20):  # inside the tensors; inside the header
        path = tmp_path / f"cut{cut}.safetensors"
        path.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="is truncated"):
            load_model(path)


def test_safetensors_file_that_is_not_ours(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"weight": torch.zeros(3)}, str(path), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="not a vae checkpoint"):
        load_model(path)


def test_newer_format_version(tmp_path, checkpoint):
    data = checkpoint.read_bytes()
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + size])
    header["__metadata__"]["format_version"] = str(FORMAT_VERSION + 1)
    new_header = json.dumps(header).encode()
    path = tmp_path / "future.safetensors"
    path.write_bytes(struct.pack("<Q", len(new_header)) + new_header + data[8 + size :])
    with pytest.raises(CheckpointError, match="newer than this vae"):
        load_model(path)


def test_errors_are_distinct(tmp_path, checkpoint):
    messages = set()
    cases = {
        "missing": None,
        "garbage": b"hello world, not a checkpoint at all",
        "truncated": checkpoint.read_bytes()[:-5],
    }
    for name, content in cases.items():
        path = tmp_path / f"{name}.safetensors"
        if content is not None:
            path.write_bytes(content)
        with pytest.raises(CheckpointError) as caught:
            read_header(path)
        messages.add(str(caught.value).replace(str(path), "PATH"))
    assert len(messages) == len(cases)


def test_atomic_write_leaves_old_file_intact_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "checkpoint_last.safetensors"
    target.write_bytes(b"old contents")

    def failing_fsync(descriptor):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="No space"):
        atomic_write_bytes(target, b"new contents that never land")
    assert target.read_bytes() == b"old contents"
    assert [p.name for p in tmp_path.iterdir()] == [target.name]  # no temporary file left


def test_atomic_save_of_a_checkpoint_keeps_the_previous_one_loadable(
    tmp_path, model, checkpoint, monkeypatch
):
    before = checkpoint.read_bytes()

    def failing_replace(source, destination):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError):
        save_checkpoint(checkpoint, model, read_metadata(checkpoint))
    monkeypatch.undo()
    assert checkpoint.read_bytes() == before
    load_model(checkpoint)


# --- checkpoint format 1: the same weights under the names of nn.Sequential positions ----------

PRETRAINED = Path(__file__).resolve().parent.parent / "pretrained"
SHIPPED = sorted(PRETRAINED.rglob("*.safetensors"))
# Shipped before format 2 and kept byte for byte since; later models are written in today's format.
SHIPPED_IN_FORMAT_1 = {"checkpoint_best.safetensors", "standard-prior/checkpoint_best.safetensors",
                       "fashionmnist/checkpoint_best.safetensors", "ae/checkpoint_best.safetensors"}  # fmt: skip


def _as_version_1(path, target):
    """``path`` (today's format) rewritten as format 1 wrote it: Sequential-position names."""
    from safetensors import safe_open

    from vae.plan import version1_names

    header = read_header(path)
    spec = ModelSpec.from_dict(header.metadata["model"])
    old_names = {new: old for old, new in version1_names(spec).items()}
    with safe_open(str(path), framework="pt") as handle:
        raw = handle.metadata()
        tensors = {}
        for name in handle.keys():
            short = name.removeprefix("model.")
            stored = "model." + old_names.get(short, short) if name.startswith("model.") else name
            tensors[stored] = handle.get_tensor(name)
    described = json.dumps({**json.loads(raw["vae"]), "format_version": 1}, sort_keys=True)
    save_file(tensors, str(target), metadata={**raw, "format_version": "1", "vae": described})
    return target


def test_new_checkpoints_name_layers_as_the_plan_does(checkpoint):
    header = read_header(checkpoint)
    assert header.format_version == FORMAT_VERSION == 2
    assert "model.decoder.output.weight" in header.tensors
    assert not any(".body." in name or ".deconv." in name for name in header.tensors)


def test_a_version_1_checkpoint_loads_with_the_same_weights(tmp_path, checkpoint, model):
    from vae import numpy_sampling
    from vae.info import describe_checkpoint

    old = _as_version_1(checkpoint, tmp_path / "old.safetensors")
    assert "model.decoder.deconv.2.weight" in read_header(old).tensors
    loaded = load_model(old)
    for (name, expected), (loaded_name, got) in zip(
        model.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert name == loaded_name and torch.equal(expected, got)
    spec, weights = numpy_sampling.load_decoder(old)
    assert set(weights) == {n for n in model.state_dict() if n.startswith("decoder.")}
    assert describe_checkpoint(old)["format_version"] == 1


@pytest.mark.parametrize("path", SHIPPED, ids=lambda path: path.parent.name)
def test_the_shipped_checkpoints_keep_their_format_and_load_everywhere(path):
    """The older shipped files stay as they are on disk (format 1), the newer ones are in today's
    format, and all load by every path: the torch model, info's checks and the NumPy decoder,
    which give the same samples."""
    import numpy as np
    from typer.testing import CliRunner

    from vae.cli import app
    from vae.sampling import sample_from_model, sample_images

    if path.relative_to(PRETRAINED).as_posix() in SHIPPED_IN_FORMAT_1:
        assert read_header(path).format_version == 1
        assert any(".body." in name or ".head." in name for name in read_header(path).tensors)
    else:
        assert read_header(path).format_version == FORMAT_VERSION
    model = load_model(path)
    result = CliRunner().invoke(app, ["info", str(path)])
    assert result.exit_code == 0, result.output
    on_numpy = sample_images(path, 4, 0)
    np.testing.assert_allclose(on_numpy, sample_from_model(model, 4, 0).numpy(), atol=1e-5)
