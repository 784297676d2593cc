"""A damaged cached shard is never used: its images are checked against the sha256 in its header
where they are read anyway (copied into memory, or the training fingerprint's pass when mapped),
and a shard whose images or header are damaged is decoded again, with one line."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import vae.data.cache
import vae.data.decoding
from vae.cli import app
from vae.config import DataConfig
from vae.data import load_splits
from vae.reporting import Reporter

runner = CliRunner()
SIDE = 8


class Notes(Reporter):
    """Keeps the warnings it hears."""

    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warning(self, text: str) -> None:
        self.warnings.append(text)


@pytest.fixture
def photos(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder of 20 distinct JPEGs, cached as shards of 4 images (8 x 8 RGB) each."""
    monkeypatch.setattr(vae.data.cache, "SHARD_BYTES", 4 * 3 * SIDE * SIDE)
    folder = tmp_path / "photos"
    folder.mkdir()
    y, x = np.mgrid[0:24, 0:32]
    for index in range(20):
        array = np.stack([x * 5 + index, y * 7, np.full_like(x, 9 * index)], axis=-1)
        Image.fromarray((array % 256).astype(np.uint8)).save(folder / f"p{index:02d}.jpg")
    return folder


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of images of each decode, as it happens."""
    real, counts = vae.data.decoding.decode_into, []

    def counting(out: Any, sources: list[Any], *rest: Any) -> None:
        counts.append(len(sources))
        real(out, sources, *rest)

    monkeypatch.setattr(vae.data.decoding, "decode_into", counting)
    return counts


def _config(photos: Path, storage: str) -> DataConfig:
    cache = photos.parent / "cache"
    return DataConfig(
        dataset=f"folder:{photos}",
        cache_dir=str(cache),
        image_size=SIDE,
        val_size=3,
        storage=storage,
    )


def _shards(photos: Path) -> list[Path]:
    return sorted((photos.parent / "cache").glob("folder-*/*.safetensors"))


def _blank_the_images(shard: Path) -> None:
    """Every image byte set to 0xFF, the size and header kept: no size or shape check sees it."""
    data = bytearray(shard.read_bytes())
    (length,) = struct.unpack("<Q", data[:8])
    data[8 + length :] = b"\xff" * (len(data) - 8 - length)
    shard.write_bytes(bytes(data))


def _load(photos: Path, storage: str, reporter: Reporter | None = None) -> dict[str, Any]:
    """The splits' description (fingerprint included) and images, copied into memory (a mapped
    shard overwritten in place would change under a mapping kept from before)."""
    splits = load_splits(_config(photos, storage), "mse", reporter)
    loaded: dict[str, Any] = {"info": splits.info}
    for name in ("train", "val", "test"):
        images = getattr(splits, name).images
        loaded[name] = images[0 : len(images)]
    return loaded


def _same_images(first: dict[str, Any], second: dict[str, Any]) -> None:
    assert first["info"] == second["info"]  # the fingerprint included
    for name in ("train", "val", "test"):
        assert torch.equal(first[name], second[name]), name


@pytest.mark.parametrize("storage", ["memory", "mapped"])
def test_a_shard_with_blanked_images_is_decoded_again_with_one_line(
    photos: Path, decoded: list[int], storage: str
) -> None:
    first = _load(photos, storage)
    shards = _shards(photos)
    assert len(shards) == 5 and decoded == [4] * 5
    _blank_the_images(shards[2])
    decoded.clear()
    notes = Notes()
    # Mapped, the shard is checked in the fingerprint's pass, before that reads its images.
    _same_images(first, _load(photos, storage, notes))
    assert decoded == [4]  # that shard only
    assert len(notes.warnings) == 1, notes.warnings
    assert str(shards[2]) in notes.warnings[0] and "damaged" in notes.warnings[0]
    # Written again whole: the next load uses the cache as it is, in silence.
    decoded.clear()
    notes = Notes()
    _same_images(first, _load(photos, storage, notes))
    assert decoded == [] and notes.warnings == []


def _nested(shard: Path) -> bytes:
    header = b"[" * 200_000
    return struct.pack("<Q", len(header)) + header + shard.read_bytes()[-4 * 3 * SIDE * SIDE :]


def _header(entries: dict[str, Any]) -> Any:
    """A shard rewritten with ``entries`` in place of its header (the images kept)."""

    def rewrite(shard: Path) -> bytes:
        images = shard.read_bytes()[-4 * 3 * SIDE * SIDE :]
        header = json.dumps(entries).encode()
        return struct.pack("<Q", len(header)) + header + images

    return rewrite


_IMAGES = {"dtype": "U8", "shape": [4, 3, SIDE, SIDE], "data_offsets": [0, 4 * 3 * SIDE * SIDE]}


@pytest.mark.parametrize(
    "damage",
    [
        _nested,
        lambda shard: b"\xff" * 8 + shard.read_bytes()[8:],  # a header length past the end
        lambda shard: struct.pack("<Q", 4) + b"\xff\xfe{}" + b"\0" * 768,  # not UTF-8 JSON
        _header({"images": _IMAGES}),  # no content hash
        _header({"images": _IMAGES, "__metadata__": {"sha256": "not a hash"}}),
        _header({"images": _IMAGES, "__metadata__": {"sha256": ["a", "list"]}}),
        _header({"images": {**_IMAGES, "data_offsets": [0.5, "x"]}}),
        _header({"images": {**_IMAGES, "shape": [-4, -3, SIDE, SIDE]}}),
        _header({"images": {**_IMAGES, "shape": [[4]]}}),
        _header({"images": [1, 2]}),
    ],
    ids=[
        "200000-nested-brackets",
        "header-length",
        "not-utf8",
        "no-hash",
        "hash-not-hex",
        "hash-not-text",
        "offsets",
        "negative-shape",
        "nested-shape",
        "entry-not-a-table",
    ],
)
def test_a_shard_whose_header_cannot_be_read_is_decoded_again(
    photos: Path, decoded: list[int], damage: Any
) -> None:
    first = _load(photos, "memory")
    shard = _shards(photos)[1]
    shard.write_bytes(damage(shard))
    decoded.clear()
    notes = Notes()
    _same_images(first, _load(photos, "memory", notes))
    assert decoded == [4]
    assert len(notes.warnings) == 1 and str(shard) in notes.warnings[0], notes.warnings
    assert "damaged" in notes.warnings[0]


def test_training_on_a_damaged_cache_trains_on_the_real_images(
    photos: Path, tmp_path: Path
) -> None:
    arguments = [
        "--dataset", f"folder:{photos}", "--cache-dir", str(tmp_path / "cache"),
        "--image-size", str(SIDE), "--storage", "mapped", "--val-size", "3", "--epochs", "1",
        "--batch-size", "8", "--architecture", "mlp", "--hidden-sizes", "8", "--latent-dim", "2",
        "--likelihood", "mse", "--beta-warmup", "1", "--runs-dir", str(tmp_path / "runs"),
        "--device", "cpu", "--no-download", "--quiet",
    ]  # fmt: skip

    def fingerprint(run: str) -> str:
        info = runner.invoke(
            app, ["info", str(tmp_path / "runs" / run / "checkpoint_last.safetensors"), "--json"]
        )
        return json.loads(info.output)["data"]["fingerprint"]

    assert runner.invoke(app, ["train", "clean", *arguments]).exit_code == 0
    _blank_the_images(_shards(photos)[3])
    result = runner.invoke(app, ["train", "damaged", *arguments])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "damaged" in warnings[0], result.output
    assert "Traceback" not in result.output
    assert fingerprint("damaged") == fingerprint("clean")  # the same images, not blank ones


def test_the_commands_that_show_a_model_its_images_say_so_too(
    photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """evaluate, inference and visualize read a model's test images through load_test_set: a
    damaged shard there is decoded again with the same line as in training."""
    from vae.data import ImageSource, load_test_set

    monkeypatch.setenv("VAE_CACHE_DIR", str(photos.parent / "cache"))
    data_info = {"dataset": f"folder:{photos}", "channels": 3, "height": SIDE, "width": SIDE}
    source = ImageSource(dataset=f"folder:{photos}")
    first = load_test_set(data_info, source).images
    for shard in _shards(photos):
        _blank_the_images(shard)
    notes = Notes()
    again = load_test_set(data_info, source, notes).images
    assert torch.equal(first, again)
    assert notes.warnings and all("damaged" in warning for warning in notes.warnings)
