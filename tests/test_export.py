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
    # The most thorough evaluation beside the checkpoint made of it: 10000 images, k = 5000,
    # the protocol's three seeds (one file each) pooled, each figure their mean as the protocol
    # reports it (82.6113 for the NLL, as the model card says).
    seeds = [
        json.loads((REPO / "pretrained" / f"evaluation_mnist_k5000_seed{seed}.json").read_text())
        for seed in range(3)
    ]
    metrics = front["model-index"][0]["results"][0]["metrics"]
    figures = {metric["type"]: metric["value"] for metric in metrics}
    assert figures.keys() == {*seeds[0]["metrics"], "active_units"}
    for name in seeds[0]["metrics"]:
        mean = sum(seed["metrics"][name]["mean"] for seed in seeds) / 3
        assert figures[name] == pytest.approx(mean, rel=1e-12), name
    assert figures["active_units"] == seeds[0]["active_units"]
    assert f"{figures['nll']:.4f}" == "82.6113"
    body = (out / "README.md").read_text()
    assert "generate --checkpoint model.safetensors" in body
    assert 'vae.load("model.safetensors")' in body
    assert "(samples.png)" in body
    assert (
        "From `evaluation_mnist_k5000_seed0.json`, `evaluation_mnist_k5000_seed1.json` and "
        "`evaluation_mnist_k5000_seed2.json`: 10000 test images, k = 5000 importance samples, "
        "3 repeat(s) (seeds 0, 1, 2; each figure their mean)"
    ) in body
    assert "with the figures of" in result.output and "seed2.json" in result.output


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


def _evaluation(seeds: list[int], nll: list[float], **changes) -> dict:
    """An evaluation record as evaluate writes it, of one checkpoint, with these seeds."""
    return {
        "checkpoint": "runs/x/checkpoint_best.safetensors", "checkpoint_sha256": "ab" * 32,
        "command": f"evaluate --seed {seeds[0]}", "seconds": 12.5, "k": 5000,
        "num_images": 10000, "repeats": len(seeds), "seeds": seeds, "active_units": 20,
        "protocol": "Bernoulli likelihood", "metrics": {"nll": {"mean": nll[0],
        "std": None, "values": nll}}, **changes,
    }  # fmt: skip


def test_a_protocols_seeds_in_separate_files_are_pooled_and_nothing_else() -> None:
    from vae.export.evaluation_record import best_record, evaluation_figures, pool_seeds

    first, second = Path("evaluation_seed0.json"), Path("evaluation_seed1.json")
    pooled = pool_seeds([(first, _evaluation([0], [80.0])), (second, _evaluation([1], [81.0]))])
    assert len(pooled) == 1 and pooled[0][0] == [first, second]
    record = pooled[0][1]
    assert (record["seeds"], record["repeats"]) == ([0, 1], 2)
    assert record["metrics"]["nll"]["values"] == [80.0, 81.0]
    assert record["metrics"]["nll"]["mean"] == 80.5
    assert record["metrics"]["nll"]["std"] == pytest.approx(0.5**0.5)
    assert "command" not in record and "seconds" not in record  # one run's, not the pool's
    # Not the same evaluation under another seed: kept apart.
    for other in (
        _evaluation([0], [81.0]),  # the same seed again
        _evaluation([1], [81.0], k=1000),
        _evaluation([1], [81.0], num_images=1000),
        _evaluation([1], [81.0], active_units=19),
        _evaluation([1], [81.0], ood={"auroc": 0.9}),
        {**_evaluation([1], [81.0]), "seeds": [True]},
        _evaluation([1], [81.0], metrics={"nll": {"mean": 81.0}}),  # no values to pool
        _evaluation([1], [float("nan")]),
        _evaluation([1], [10**400]),  # JSON can hold an integer no float can
        _evaluation([1, 2], [81.0]),  # fewer values than seeds
    ):
        pooled = pool_seeds([(first, _evaluation([0], [80.0])), (second, other)])
        assert sorted(paths for paths, _ in pooled) == [[first], [second]], other
    # Figures whose sum no float holds are not pooled (nor do they crash the export).
    huge = [(Path(f"h{seed}.json"), _evaluation([seed], [1e308])) for seed in range(2)]
    assert [paths for paths, _ in pool_seeds(huge)] == [[huge[0][0]], [huge[1][0]]]
    assert evaluation_figures(_evaluation([0], [10**400])) == [("active_units", 20)]
    # A file of two seeds goes first, single seeds fill in around it; seeds come out in order.
    named = [(Path("a.json"), _evaluation([2], [82.0])), (Path("b.json"), _evaluation([0], [80.0])),
             (Path("c.json"), _evaluation([1, 2], [81.0, 82.5]))]  # fmt: skip
    pooled = pool_seeds(named)
    assert [paths for paths, _ in pooled] == [[Path("b.json"), Path("c.json")], [Path("a.json")]]
    assert pooled[0][1]["seeds"] == [0, 1, 2]
    assert pooled[0][1]["metrics"]["nll"]["values"] == [80.0, 81.0, 82.5]
    # Three seeds pooled beat one file of the same k and images; more images beat them all.
    three = pool_seeds([(Path(f"e{seed}.json"), _evaluation([seed], [80.0])) for seed in range(3)])
    single = ([Path("a.json")], _evaluation([0], [80.0]))
    assert best_record([single, *three])[0] == [Path(f"e{seed}.json") for seed in range(3)]
    more = ([Path("z.json")], _evaluation([0], [80.0], num_images=20000))
    assert best_record([single, *three, more])[0] == [Path("z.json")]
