"""The shipped hierarchical model (``pretrained/hvae/``) works with every command and the Python
API, as the default model does: the same samples by every path, its own images reconstructed,
pictures, the explorer and a card. Its scores are checked with the other shipped models'
(tests/test_families.py) and its files with theirs (tests/test_shipped_files.py)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import vae
from vae.cli import app
from vae.numpy_sampling import load_decoder
from vae.sampling import draw_latents, sample_images

REPO = Path(__file__).resolve().parents[1]
SHIPPED_HVAE = REPO / "pretrained" / "hvae" / "checkpoint_best.safetensors"
runner = CliRunner()


@pytest.fixture(scope="module")
def model() -> vae.Model:
    return vae.load(SHIPPED_HVAE)


def test_the_python_api_reads_it_as_a_hierarchy(model: vae.Model) -> None:
    assert (model.family, model.prior, model.likelihood) == ("hvae", "mog", "bce")
    assert model.latent_dim == 64 and model.image_shape == (1, 28, 28)
    groups = model.metadata["model"]["latent_groups"]
    assert groups == 4


def test_sample_draws_what_generate_writes(model: vae.Model, tmp_path: Path) -> None:
    images = model.sample(64, seed=3, temperature=0.8)
    assert torch.equal(images, torch.from_numpy(sample_images(SHIPPED_HVAE, 64, 3, 0.8, "cpu")))
    target = tmp_path / "samples.png"
    result = runner.invoke(app, ["generate", "--checkpoint", str(SHIPPED_HVAE), "--seed", "3",
                                 "--temperature", "0.8", "--output", str(target)])  # fmt: skip
    assert result.exit_code == 0, result.output
    grid = np.asarray(Image.open(target).convert("L"), dtype=np.float64) / 255
    first = images[0, 0].numpy()
    # The grid's first cell is the first sample, 8-bit rounded (after the grid's border, if any).
    found = min(
        np.abs(grid[r : r + 28, c : c + 28] - first).max() for r in range(3) for c in range(3)
    )
    assert found <= 1 / 255 + 1e-6


def test_it_reconstructs_its_own_samples_better_than_other_images(model: vae.Model) -> None:
    images = (model.sample(32, seed=1) > 0.5).float()
    reconstructions = model.reconstruct(images).clamp(1e-6, 1 - 1e-6)

    def bce(target: torch.Tensor) -> torch.Tensor:
        terms = target * reconstructions.log() + (1 - target) * (1 - reconstructions).log()
        return -terms.flatten(1).sum(1)

    own, shifted = bce(images), bce(images.roll(1, dims=0))
    assert float(own.mean()) < 0.5 * float(shifted.mean())
    # On the same k samples the importance-weighted estimate is never below the bound (Jensen).
    bound = model.elbo(images, k=20, seed=0).neg_elbo
    nll = -model.log_likelihood(images, k=20, seed=0)
    assert bool((nll <= bound + 1e-9).all()) and float(nll.mean()) < 120


def test_pictures_and_the_explorer_work_on_it(tmp_path: Path, synthetic_data_dir: Path) -> None:
    from test_explore import client_for

    for command, extra in (("traverse", []), ("interpolate", []), ("manifold", [])):
        result = runner.invoke(app, ["visualize", command, "--checkpoint", str(SHIPPED_HVAE),
                                     "--data-dir", str(synthetic_data_dir), "--no-download",
                                     "--output", str(tmp_path / f"{command}.png"), *extra])  # fmt: skip
        assert result.exit_code == 0, (command, result.output)
        picture = np.asarray(Image.open(tmp_path / f"{command}.png").convert("L"))
        assert picture.shape[1] >= 2 * 28 and picture.std() > 20, command  # cells, not a blank
    result = runner.invoke(app, ["inference", "--checkpoint", str(SHIPPED_HVAE),
                                 "--data-dir", str(synthetic_data_dir), "--no-download",
                                 "--mode", "reconstruct", "--output-dir", str(tmp_path / "out")])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert list((tmp_path / "out").glob("*.png"))
    client = client_for(SHIPPED_HVAE, synthetic_data_dir)
    described = client.get("/api/model").json()
    # The page names the family and labels each slider with its group (g1 the top) from these.
    assert (described["model_type"], described["latent_dim"], described["latent_groups"]) == (
        "hvae",
        64,
        4,
    )
    assert described["code_groups"] == [d // 16 + 1 for d in range(64)]
    sampled = client.post("/api/sample", json={"seed": 5, "temperature": 1.0}).json()
    spec, weights = load_decoder(SHIPPED_HVAE)
    np.testing.assert_allclose(sampled["z"], draw_latents(spec, weights, 1, 5, 1.0)[0], atol=1e-4)


def test_traversal_rows_and_info_name_each_dimensions_group(tmp_path, synthetic_data_dir) -> None:
    from vae.data import ImageSource
    from vae.visualize import load_inputs, traverse

    inputs = load_inputs(
        SHIPPED_HVAE, ImageSource(data_dir=str(synthetic_data_dir), download=False)
    )
    rows = traverse(inputs, tmp_path / "t.png", include_inactive=True)
    assert sorted(rows.dims) == list(range(64))  # every dimension, ranked together
    for dim, label in zip(rows.dims, rows.labels, strict=True):
        assert label.split()[:2] == [f"z{dim}", f"g{dim // 16 + 1}"], label
    shown = runner.invoke(app, ["info", str(SHIPPED_HVAE), "--json"])
    groups = json.loads(shown.output)["groups"]
    assert groups["group 4 (bottom)"]["code_dimensions"] == "z48 to z63"


def test_its_exported_card_names_the_groups_and_its_shipped_figure(tmp_path: Path) -> None:
    exported = runner.invoke(app, ["export", str(SHIPPED_HVAE), str(tmp_path / "card")])
    assert exported.exit_code == 0, exported.output
    card = (tmp_path / "card" / "README.md").read_text(encoding="utf-8")
    assert "| latent groups | 4, drawn top-down |" in card
    # The most thorough evaluation beside it: the protocol's three seeds at k = 5000, pooled.
    seeds = [
        json.loads((SHIPPED_HVAE.parent / f"evaluation_mnist_k5000_seed{seed}.json").read_text())
        for seed in range(3)
    ]
    mean = statistics.fmean(seed["metrics"]["nll"]["mean"] for seed in seeds)
    assert f"| test NLL (nats) | {mean:.6g} |" in card
    assert "3 repeat(s) (seeds 0, 1, 2; each figure their mean)" in card


def test_the_docs_quote_its_shipped_figures() -> None:
    """The card, Results, the hierarchical page and the README quote the figures of the shipped
    evaluations (k = 1000, and the protocol's three seeds at k = 5000) and training log, rounded
    as printed."""
    evaluation = json.loads((SHIPPED_HVAE.parent / "evaluation_mnist_k1000.json").read_text())
    figures = {key: value["mean"] for key, value in evaluation["metrics"].items()}
    lines = (SHIPPED_HVAE.parent / "metrics.jsonl").read_text().splitlines()
    best = [json.loads(line) for line in lines if json.loads(line)["best"]][-1]
    group_kls = [best[f"val_kl_group{index}"] for index in range(1, 5)]
    card = (REPO / "pretrained" / "README.md").read_text(encoding="utf-8")
    card = card[card.index("## `hvae/checkpoint_best.safetensors`") :]
    card = card[: card.index("\n## ", 1)]
    quoted = [f"{figures['nll']:.2f} nats", f"({figures['nll']:.4f};", f"{figures['neg_elbo']:.2f}",
              f"{figures['recon']:.2f} / {figures['kl']:.2f}", f"{evaluation['active_units']} of 64",
              f"best epoch by validation -ELBO (beta = 1) after warm-up: {best['epoch']}",
              f"validation -ELBO {best['val_neg_elbo']:.2f}",
              " / ".join(f"{kl:.2f}" for kl in group_kls)]  # fmt: skip
    protocol = [
        json.loads((SHIPPED_HVAE.parent / f"evaluation_mnist_k5000_seed{seed}.json").read_text())
        for seed in range(3)
    ]
    assert [(record["k"], record["num_images"], record["seeds"]) for record in protocol] == [
        (5000, 10000, [seed]) for seed in range(3)
    ]
    seeds = [record["metrics"]["nll"]["mean"] for record in protocol]
    mean = statistics.mean(seeds)
    elbo = statistics.mean(record["metrics"]["neg_elbo"]["mean"] for record in protocol)
    quoted += [f"({seed:.4f};" for seed in seeds] + [
        f"**{mean:.2f} nats** ({mean:.4f}, std {statistics.stdev(seeds):.4f};",
        f"{elbo:.2f} at k = 5000",
    ]
    assert [text for text in quoted if text not in card] == []
    row = f"**{mean:.2f}** (-ELBO {elbo:.2f})"
    per_group = ", ".join(f"{kl:.1f}" for kl in group_kls[:3])
    at_k1000 = f"{figures['nll']:.2f} at k = 1000"
    pages = {"README.md": [row, at_k1000], "docs/results.md": [row, at_k1000, per_group],
             "docs/hierarchical.md": [f"**{mean:.2f}**", at_k1000, per_group],
             "docs/commands/generate.md": [f"{mean:.2f} nats at k = 5000"]}  # fmt: skip
    for page, texts in pages.items():
        text = (REPO / page).read_text(encoding="utf-8").replace(" and ", ", ")
        assert [quoted for quoted in texts if quoted not in text] == [], page
