"""The dataset registry is the one list of dataset names: config, errors, loaders and the README
all read it (its table lives in docs/datasets.md)."""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from vae import config
from vae.data import registry
from vae.errors import DataError

REPO = Path(__file__).resolve().parent.parent


def test_datasets_page_table_is_generated_from_the_registry() -> None:
    readme = (REPO / "docs" / "datasets.md").read_text(encoding="utf-8")
    assert "<!-- datasets -->\n" + registry.markdown_table() + "<!-- /datasets -->" in readme, (
        "docs/datasets.md's datasets table differs from vae/data/registry.py: run "
        "poetry run python tools/docs_tables.py"
    )
    for name in registry.DATASETS:
        assert f"| `{name}` |" in readme


def test_the_docs_tool_checks_and_rewrites(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("docs_tables", REPO / "tools/docs_tables.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    stale = "# x\n\n<!-- datasets -->\n| old |\n<!-- /datasets -->\n\nafter\n"
    fresh = tool.regenerated(stale)
    assert "| old |" not in fresh and fresh.endswith("<!-- /datasets -->\n\nafter\n")
    assert tool.regenerated(fresh) == fresh  # idempotent
    with pytest.raises(SystemExit, match="no generator"):
        tool.regenerated("<!-- nonsense -->\nx\n<!-- /nonsense -->")
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "docs_tables.py"), "--check"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_config_choices_are_the_registry_names() -> None:
    assert config.DATASETS == registry.DATASETS
    assert config.MEDMNIST_DATASETS == registry.names_read_by("medmnist")
    assert config.IMAGE_TREE_DATASETS == registry.names_read_by("trees")


@pytest.mark.parametrize("entry", registry.ENTRIES, ids=lambda entry: entry.name)
def test_every_entry_names_a_source_module_with_a_loader(entry: registry.DatasetEntry) -> None:
    module = importlib.import_module(f"vae.data.{entry.source}")
    assert callable(module.load)
    assert entry.channels in (1, 3) and entry.image_size >= 4
    assert entry.folder and not entry.folder.startswith("/")
    if entry.torchvision is not None:
        assert entry.downloadable


def test_an_unknown_name_lists_the_registry() -> None:
    with pytest.raises(DataError) as error:
        registry.lookup("nosuchset")
    message = str(error.value)
    assert "unknown dataset 'nosuchset'" in message and "folder:PATH" in message
    assert all(name in message for name in registry.DATASETS)


def test_the_registry_and_vae_data_do_not_import_torch() -> None:
    code = (
        "import sys\nimport vae.config, vae.data, vae.data.registry\n"
        "assert 'torch' not in sys.modules, 'torch imported'\nprint('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "ok", result.stderr


def test_a_new_tree_dataset_is_one_registry_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np
    from PIL import Image

    from vae.config import DataConfig
    from vae.data import load_raw

    entry = registry.DatasetEntry(
        name="mytrees",
        source="trees",
        folder="my-trees",
        downloadable=False,
        origin="your copy",
        notes="",
        image_size=8,
        channels=3,
    )
    monkeypatch.setitem(registry.REGISTRY, entry.name, entry)
    for split, count in (("train", 4), ("val", 2)):
        for label in ("a", "b"):
            folder = tmp_path / "my-trees" / split / label
            folder.mkdir(parents=True)
            for index in range(count):
                grey = 40 if label == "a" else 200
                Image.fromarray(np.full((12, 12, 3), grey, dtype=np.uint8)).save(
                    folder / f"{index}.png"
                )
    train, test = load_raw(DataConfig(dataset="mytrees", data_dir=str(tmp_path)))
    assert tuple(train.images.shape) == (8, 3, 8, 8) and len(test) == 4
    assert train.labels is not None and sorted(set(train.labels.tolist())) == [0, 1]
    with pytest.raises(DataError, match="cannot load dataset 'mytrees'.*my-trees"):
        load_raw(DataConfig(dataset="mytrees", data_dir=str(tmp_path / "empty")))
