"""``vae export``: a checkpoint as a folder to share (weights without training state or local
paths, a model card with the Hub's front matter, a samples grid), and its refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from safetensors import safe_open
from test_shipped_files import ABSOLUTE_PATH
from typer.testing import CliRunner

from conftest import REPO, one_line_error
from vae.checkpoint import load_model, read_header
from vae.cli import app

SHIPPED = REPO / "pretrained" / "checkpoint_best.safetensors"
runner = CliRunner()


def export(*argv: str):
    return runner.invoke(app, ["export", *map(str, argv)])


def front_matter(card: Path) -> dict:
    text = card.read_text(encoding="utf-8")
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def text_of(path: Path) -> bytes:
    """What may name a path: a safetensors file's header (its data is numbers), else the file."""
    data = path.read_bytes()
    if path.suffix == ".safetensors":
        return data[8 : 8 + int.from_bytes(data[:8], "little")]
    return data


def same_model_tensors(a: Path, b: Path) -> None:
    first, second = load_model(a).state_dict(), load_model(b).state_dict()
    assert first.keys() == second.keys()
    for name, value in first.items():
        assert torch.equal(value, second[name]), name


def generated(checkpoint: Path, output: Path) -> bytes:
    result = runner.invoke(
        app, ["generate", "--checkpoint", str(checkpoint), "--output", str(output)]
    )
    assert result.exit_code == 0, result.output
    return output.read_bytes()


def test_shipped_model_exports_with_its_evaluation(tmp_path: Path) -> None:
    out = tmp_path / "hub"
    result = export(SHIPPED, out, "--license", "mit")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "model.safetensors",
        "samples.png",
    ]
    model = out / "model.safetensors"
    same_model_tensors(SHIPPED, model)
    assert generated(model, tmp_path / "a.png") == generated(SHIPPED, tmp_path / "b.png")
    # samples.png is what generate draws by default (64 samples, seed 0)
    assert (out / "samples.png").read_bytes() == (tmp_path / "a.png").read_bytes()
    for path in (model, out / "README.md"):
        assert not ABSOLUTE_PATH.search(text_of(path)), path

    front = front_matter(out / "README.md")
    assert front["library_name"] == "vae" and front["license"] == "mit"
    assert {"vae", "variational-autoencoder", "mnist"} <= set(front["tags"])
    assert front["datasets"] == ["mnist"]
    # The most thorough evaluation beside the checkpoint made of it (10000 images, k = 5000).
    chosen = json.loads((REPO / "pretrained" / "evaluation_mnist_k5000_seed0.json").read_text())
    metrics = front["model-index"][0]["results"][0]["metrics"]
    figures = {metric["type"]: metric["value"] for metric in metrics}
    expected = {name: summary["mean"] for name, summary in chosen["metrics"].items()}
    assert figures == {**expected, "active_units": chosen["active_units"]}
    body = (out / "README.md").read_text()
    assert "generate --checkpoint model.safetensors" in body
    assert 'vae.load("model.safetensors")' in body
    assert "evaluation_mnist_k5000_seed0.json" in body and "(samples.png)" in body


def test_model_card_parses_as_the_hub_parses_it(tmp_path: Path) -> None:
    ModelCard = pytest.importorskip("huggingface_hub").ModelCard
    given = REPO / "pretrained" / "evaluation_mnist_k1000.json"
    assert export(SHIPPED, tmp_path / "hub", "--evaluation", given).exit_code == 0
    card = ModelCard.load(tmp_path / "hub" / "README.md")
    assert card.data.library_name == "vae" and card.data.license is None
    record = json.loads(given.read_text())
    expected = {name: summary["mean"] for name, summary in record["metrics"].items()}
    found = {result.metric_type: result.metric_value for result in card.data.eval_results}
    assert found == {**expected, "active_units": record["active_units"]}
    assert {result.dataset_type for result in card.data.eval_results} == {"mnist"}
    assert card.data.eval_results[0].task_type == "unconditional-image-generation"


def test_run_checkpoint_last_leaves_training_state_and_paths_out(
    trained_run: Path, tmp_path: Path
) -> None:
    last = trained_run / "checkpoint_last.safetensors"
    assert read_header(last).training_state is not None  # what there is to leave out
    out = tmp_path / "hub"
    result = export(last, out)
    assert result.exit_code == 0, result.output
    model = out / "model.safetensors"
    header = read_header(model)
    assert header.training_state is None
    with safe_open(str(model), "pt") as handle:
        names = list(handle.keys())
        assert "training_state" not in (handle.metadata() or {})
    assert names and all(name.startswith("model.") for name in names)
    config = header.metadata["config"]
    assert config["data"]["data_dir"] is None and config["data"]["cache_dir"] is None
    assert config["train"]["runs_dir"] == "runs"
    for path in (model, out / "README.md"):
        assert not ABSOLUTE_PATH.search(text_of(path)), path
        assert str(trained_run).encode() not in text_of(path), path
    same_model_tensors(last, model)
    assert generated(model, tmp_path / "a.png") == generated(last, tmp_path / "b.png")
    front = front_matter(out / "README.md")
    assert front["library_name"] == "vae" and "model-index" not in front
    assert "license" not in front


def test_run_folder_exports_its_best_checkpoint(trained_run: Path, tmp_path: Path) -> None:
    assert export(trained_run, tmp_path / "hub").exit_code == 0
    same_model_tensors(
        trained_run / "checkpoint_best.safetensors", tmp_path / "hub" / "model.safetensors"
    )


def test_folder_dataset_keeps_only_its_name() -> None:
    from vae.export import shareable_metadata

    metadata = {
        "config": {"data": {"dataset": "folder:/home/me/photos/", "data_dir": "/work/d"}},
        "data": {"dataset": "folder:/home/me/photos/"},
    }
    shared = shareable_metadata(metadata)
    assert shared["data"]["dataset"] == shared["config"]["data"]["dataset"] == "folder:photos"
    assert shared["config"]["data"]["data_dir"] is None
    assert metadata["data"]["dataset"] == "folder:/home/me/photos/"  # the original untouched


def test_non_empty_folder_is_refused_unless_force(tmp_path: Path) -> None:
    out = tmp_path / "hub"
    out.mkdir()
    (out / "README.md").write_text("mine\n")
    result = export(SHIPPED, out)
    one_line_error(result, 2, str(out), "is not empty", "--force")
    assert [p.name for p in out.iterdir()] == ["README.md"]
    assert (out / "README.md").read_text() == "mine\n"
    result = export(SHIPPED, out, "--force")
    assert result.exit_code == 0, result.output
    assert front_matter(out / "README.md")["library_name"] == "vae"
    same_model_tensors(SHIPPED, out / "model.safetensors")


@pytest.mark.parametrize("kind", ["missing", "foreign", "evaluation of another", "license"])
def test_bad_inputs_are_one_line(kind: str, tmp_path: Path) -> None:
    out = tmp_path / "hub"
    if kind == "missing":
        result = export(tmp_path / "nothing.safetensors", out)
        one_line_error(result, 1, "checkpoint not found")
    elif kind == "foreign":
        from safetensors.torch import save_file

        foreign = tmp_path / "foreign.safetensors"
        save_file({"weight": torch.zeros(2)}, str(foreign))
        one_line_error(export(foreign, out), 1, "not a vae checkpoint")
    elif kind == "evaluation of another":
        record = json.loads((REPO / "pretrained" / "evaluation_mnist_k1000.json").read_text())
        record["checkpoint_sha256"] = "0" * 64
        other = tmp_path / "evaluation.json"
        other.write_text(json.dumps(record))
        one_line_error(export(SHIPPED, out, "--evaluation", other), 2, "another checkpoint")
    else:
        one_line_error(export(SHIPPED, out, "--license", "MIT License"), 2, "--license")
    assert not out.exists()


def test_nothing_written_outside_the_folder(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    shutil.copy(SHIPPED, source / "checkpoint_best.safetensors")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert export(source, tmp_path / "hub").exit_code == 0
    after = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    assert [p for p in after if not p.startswith("hub")] == sorted(
        ["source", "source/checkpoint_best.safetensors"]
    )
    assert before == ["checkpoint_best.safetensors", "source"]
