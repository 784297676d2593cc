"""Memory-mapped data and the decoded-image shards: the same batches and weights either way, a
first decode on several processes equal to one, resumed where it stopped, rebuilt only where the
folder changed, and kept in memory (with a note) where the cache cannot be written."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import vae.data.cache
import vae.data.decoding
from vae.checkpoint import read_tensors
from vae.config import DataConfig
from vae.data import MappedImages, Storage, load_raw, load_splits, training_batches
from vae.errors import TrainingInterrupted
from vae.reporting import Reporter
from vae.training import prepare_resume, train


class Notes(Reporter):
    """Keeps the warnings and the decoding tasks it hears."""

    def __init__(self) -> None:
        self.warnings: list[str] = []
        self.tasks: list[tuple[str, int]] = []

    def warning(self, text: str) -> None:
        self.warnings.append(text)

    def task_started(self, description: str, total: int) -> None:
        self.tasks.append((description, total))


def _photos(folder: Path, count: int, size: tuple[int, int] = (48, 36)) -> list[Path]:
    """JPEGs of smooth, distinct colours (wide: the centre square is cropped)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    y, x = np.mgrid[0 : size[1], 0 : size[0]]
    for index in range(count):
        array = np.stack([x * 5 + index, y * 7, np.full_like(x, 9 * index)], axis=-1)
        path = folder / f"photo{index:03d}.jpg"
        Image.fromarray((array % 256).astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def _shards(cache: Path) -> list[Path]:
    return sorted(cache.glob("folder-*/*.safetensors"))


@pytest.fixture
def small_shards(monkeypatch: pytest.MonkeyPatch) -> None:
    """Shards of 4 images of 8 x 8 RGB, so that a tiny folder has several."""
    monkeypatch.setattr(vae.data.cache, "SHARD_BYTES", 4 * 3 * 8 * 8)


def test_mapped_images_index_like_the_tensor_they_stand_for() -> None:
    whole = torch.arange(7 * 2 * 3 * 3, dtype=torch.int64).remainder(251).to(torch.uint8)
    whole = whole.view(7, 2, 3, 3)
    parts = [whole[:3].numpy(), whole[3:4].numpy(), whole[4:].numpy()]
    mapped = MappedImages(parts)
    assert mapped.shape == whole.shape and len(mapped) == 7
    index = torch.tensor([6, 0, 3, 3, -1, 2])
    assert torch.equal(mapped[index], whole[index])
    assert torch.equal(mapped[2:6], whole[2:6])
    view = mapped.select(torch.tensor([5, 1, 4]))  # a carve of a carve, still mapped
    assert torch.equal(view.select(slice(1, 3))[0:2], whole[torch.tensor([1, 4])])
    assert torch.equal(view.in_memory(), whole[torch.tensor([5, 1, 4])])
    with pytest.raises(IndexError):
        mapped[torch.tensor([7])]


def test_auto_maps_what_the_processes_on_this_machine_could_not_all_hold() -> None:
    from vae.data import MAP_ABOVE_BYTES

    assert not Storage("auto").maps(MAP_ABOVE_BYTES)
    assert Storage("auto").maps(MAP_ABOVE_BYTES + 1)
    assert Storage("auto", local_processes=8).maps(MAP_ABOVE_BYTES // 4)
    assert Storage("mapped").maps(1) and not Storage("memory").maps(1 << 40)


def test_mnist_files_are_mapped_in_place_with_the_same_batches_and_fingerprint(
    synthetic_data_dir: Path,
) -> None:
    def splits(storage: str) -> Any:
        config = DataConfig(data_dir=str(synthetic_data_dir), download=False, storage=storage)
        return load_splits(config, "bce")

    memory, mapped = splits("memory"), splits("mapped")
    assert isinstance(mapped.train.images, MappedImages) and not memory.train.mapped
    assert mapped.info == memory.info  # the fingerprint included
    assert not (synthetic_data_dir / "vae-cache").exists()  # IDX files need no cache
    for a, b in zip(
        training_batches(memory.train, 50, 3, 1, True),
        training_batches(mapped.train, 50, 3, 1, True),
        strict=True,
    ):
        assert torch.equal(a, b)
    assert torch.equal(memory.preview, mapped.preview)


def test_same_seed_same_weights_in_memory_and_mapped_and_a_mapped_resume_is_exact(
    tiny_config: Any,
) -> None:
    tiny_config.train.epochs = 2
    tiny_config.train.sample_every = 10  # no grids: their time is not what this test checks
    runs = Path(tiny_config.train.runs_dir)
    tiny_config.data.storage = "memory"
    reference = train(tiny_config, runs / "memory")
    tiny_config.data.storage = "mapped"

    def ctrl_c(step: int) -> None:
        if step == 7:  # in the second epoch
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TrainingInterrupted):
        train(tiny_config, runs / "mapped", step_callback=ctrl_c)
    overrides = {"data_dir": tiny_config.data.data_dir, "storage": "mapped"}
    resumed = train(prepare_resume(runs / "mapped", overrides), runs / "mapped", resume=True)
    expected, got = read_tensors(reference.last_path, ""), read_tensors(resumed.last_path, "")
    for name in expected:
        if name.startswith("model."):
            assert torch.equal(expected[name], got[name]), name


def test_a_folder_decodes_into_shards_that_map_to_the_same_splits(
    tmp_path: Path, small_shards: None
) -> None:
    photos = tmp_path / "photos"
    _photos(photos, 22)
    base = dict(dataset=f"folder:{photos}", data_dir=str(tmp_path / "data"), image_size=8)
    memory = load_splits(DataConfig(**base, storage="memory", val_size=3), "mse")
    mapped = load_splits(DataConfig(**base, storage="mapped", val_size=3), "mse")
    assert len(_shards(tmp_path / "data" / "vae-cache")) == 6  # 22 images, 4 a shard
    assert isinstance(mapped.train.images, MappedImages) and len(mapped.train.images.parts) == 6
    assert mapped.info == memory.info
    for name in ("train", "val", "test"):
        ours, theirs = getattr(memory, name), getattr(mapped, name)
        assert torch.equal(ours.images, theirs.images[0 : len(theirs)])


def test_two_decoding_processes_give_what_one_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = _photos(tmp_path / "photos", 24, size=(160, 120))  # JPEG draft reduces these
    monkeypatch.setattr(vae.data.decoding, "POOL_MIN_IMAGES", 0)
    monkeypatch.setattr(vae.data.decoding, "CHUNK_IMAGES", 5)
    one = np.empty((24, 3, 16, 16), dtype=np.uint8)
    two = np.empty_like(one)
    advanced: list[int] = []
    vae.data.decoding.decode_into(one, files, None, 1, lambda n: None)
    vae.data.decoding.decode_into(two, files, None, 2, advanced.append)
    assert np.array_equal(one, two) and sum(advanced) == 24
    assert np.array_equal(one[3], vae.data.decoding.decode_image(files[3], 16, 3))
    # A damaged file stops the pool with its one line.
    files[7].write_bytes(b"not a jpeg")
    with pytest.raises(vae.data.decoding.DataError, match="photo007.jpg"):
        vae.data.decoding.decode_into(two, files, None, 2, lambda n: None)


def test_an_interrupted_decode_resumes_with_the_missing_shards_and_a_change_rebuilds_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small_shards: None
) -> None:
    photos = tmp_path / "photos"
    files = _photos(photos, 20)
    cache = tmp_path / "data" / "vae-cache"
    config = DataConfig(dataset=f"folder:{photos}", data_dir=str(tmp_path / "data"), image_size=8)
    real = vae.data.decoding.decode_into
    decoded: list[int] = []

    def killed_after_two(out: Any, sources: list[Any], *args: Any) -> None:
        if len(decoded) == 2:
            raise KeyboardInterrupt  # Ctrl-C during the third shard
        decoded.append(len(sources))
        real(out, sources, *args)

    monkeypatch.setattr(vae.data.decoding, "decode_into", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        load_raw(config)
    assert len(_shards(cache)) == 2 and not list(cache.glob("folder-*/.*.tmp"))

    def counting(out: Any, sources: list[Any], *args: Any) -> None:
        decoded.append(len(sources))
        real(out, sources, *args)

    decoded.clear()
    monkeypatch.setattr(vae.data.decoding, "decode_into", counting)
    notes = Notes()
    train, test = load_raw(config, notes)
    assert decoded == [4, 4, 4]  # the three shards the first decode did not finish
    assert notes.tasks == [("decoding folder all", 12)]
    first = sorted(_shards(cache))
    # One rewritten photo: only its shard is decoded again, and the old shard is removed.
    os.utime(files[9], ns=(1, 1))
    decoded.clear()
    again_train, again_test = load_raw(config)
    assert decoded == [4] and len(_shards(cache)) == 5
    assert len(set(_shards(cache)) - set(first)) == 1
    assert torch.equal(again_train.images, train.images)


def test_an_unwritable_cache_folder_keeps_the_images_in_memory_with_a_note(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    photos = tmp_path / "photos"
    _photos(photos, 6)
    blocker = tmp_path / "a-file"
    blocker.write_text("the cache folder cannot be made below a file\n")
    monkeypatch.setenv("VAE_CACHE_DIR", str(blocker / "cache"))
    notes = Notes()
    config = DataConfig(dataset=f"folder:{photos}", image_size=8, storage="mapped")
    train, test = load_raw(config, notes)
    assert not train.mapped and len(train) + len(test) == 6
    assert len(notes.warnings) == 1 and "kept in memory" in notes.warnings[0]
    assert "VAE_CACHE_DIR" in notes.warnings[0]
    # --cache-dir wins over the environment.
    config.cache_dir = str(tmp_path / "cache")
    mapped, _ = load_raw(config)
    assert mapped.mapped and torch.equal(mapped.images[0 : len(mapped)], train.images)
    assert list((tmp_path / "cache").glob("folder-*/*.safetensors"))


def test_zero_decode_workers_decode_in_this_process(tmp_path, monkeypatch):
    """--decode-workers 0 (PyTorch's num_workers=0) decodes without a pool, as 1 does."""
    import vae.data.decoding
    from vae.config import DataConfig
    from vae.data.storage import Storage

    storage = Storage.for_config(
        DataConfig(dataset="mnist", decode_workers=0, cache_dir=str(tmp_path))
    )
    assert storage.workers == 0
    default = Storage.for_config(DataConfig(dataset="mnist", cache_dir=str(tmp_path)))
    assert default.workers == vae.data.decoding.default_workers()
