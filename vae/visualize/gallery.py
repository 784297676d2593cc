"""The README's pictures from the shipped checkpoints in one call, and outlier histograms
redrawn from an evaluation's saved scores."""

from __future__ import annotations

from pathlib import Path

from vae.data import ImageSource
from vae.errors import DataError
from vae.images import save_grid, save_reconstruction_grid
from vae.plots import save_score_histograms
from vae.sampling import sample_from_model
from vae.visualize.curves import curves
from vae.visualize.inputs import load_inputs
from vae.visualize.interpolation import interpolate
from vae.visualize.planes import latent_map, manifold
from vae.visualize.traversal import traverse

GALLERY_CHAIN = list(range(10))


def gallery(
    checkpoint: Path,
    output_dir: Path,
    *,
    autoencoder: Path | None = None,
    metrics: Path | None = None,
    data_dir: str | None = None,
    download: bool = True,
    seed: int = 0,
    ood_reports: list[Path] | None = None,
) -> list[Path]:
    """Every README picture from the shipped checkpoints, into ``output_dir``: pictures that
    show originals (reconstructions, interpolations) show and encode the grey test images; the
    others encode them as the likelihood scores them."""
    source = ImageSource(data_dir=data_dir, download=download)
    grey = load_inputs(checkpoint, source, binarize=False)
    inputs = load_inputs(checkpoint, source)
    samples = sample_from_model(inputs.model, 64, seed)
    written = [save_grid(samples, output_dir / "samples.png", 8)]
    originals = grey.images[:32]
    written.append(
        save_reconstruction_grid(
            originals, grey.model.reconstruct(originals), output_dir / "reconstructions.png"
        )
    )
    chain = interpolate(
        grey,
        output_dir / "interpolation_chain.png",
        output_dir / "interpolation_chain.gif",
        chain=GALLERY_CHAIN,
        steps=12,
        seed=seed,
    )
    pairs = interpolate(
        grey,
        output_dir / "interpolation_pairs.png",
        output_dir / "interpolation_pairs.gif",
        seed=seed,
    )
    written += [chain.grid_path, chain.gif_path, pairs.grid_path, pairs.gif_path]
    # A model with no active dimension still gets a (labelled) traversal picture.
    everything = not bool(inputs.codes().active().any())
    written.append(traverse(inputs, output_dir / "traversal.png", include_inactive=everything).path)
    written.append(latent_map([inputs], output_dir / "latent_map.png"))
    written.append(manifold(inputs, output_dir / "manifold.png"))
    if metrics is not None:
        written.append(curves(metrics, output_dir / "training_curves.png"))
    if autoencoder is not None:
        ae_inputs = load_inputs(autoencoder, source)
        written.append(latent_map([inputs, ae_inputs], output_dir / "latent_map_vae_vs_ae.png"))
        written.append(manifold(ae_inputs, output_dir / "manifold_ae.png"))
    for report in ood_reports or []:
        written.append(redraw_outlier_histograms(report, output_dir))
    return written


def redraw_outlier_histograms(evaluation_json: Path, output_dir: Path) -> Path:
    """The histograms of an outlier evaluation (``evaluate --ood-dataset --output``), redrawn
    from its JSON and the per-image scores file beside it, into ``output_dir`` under the
    histogram's own file name: no image is scored again."""
    import json

    from vae.ood import read_scores_csv

    try:
        result = json.loads(evaluation_json.read_text(encoding="utf-8"))
        ood = result["ood"]
        scores_file = evaluation_json.parent / Path(ood["scores_file"]).name
        name = Path(ood.get("histogram") or f"ood_{ood['in_dataset']}_vs_{ood['out_dataset']}.png")
        metrics, in_name, out_name = ood["scores"], str(ood["in_dataset"]), str(ood["out_dataset"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DataError(
            f"{evaluation_json} is not an outlier evaluation with a scores file (write one with "
            f"evaluate --ood-dataset NAME --output FILE.json): {type(error).__name__} {error}"
        ) from None
    scores = read_scores_csv(scores_file)
    if set(scores) != set(metrics):
        raise DataError(f"{scores_file} does not hold the scores {evaluation_json} reports")
    report = {"scores": scores, "metrics": metrics}
    return save_score_histograms(report, in_name, out_name, output_dir / name.name)
