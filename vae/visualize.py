"""Pictures of what a model learned: interpolations (grid + GIF), latent traversals, latent
maps, manifolds, training curves, and the README gallery that holds them all.

A conditional model (cvae) encodes and decodes each image as its own class, or, with ``label``,
every image as that one class (images without labels then too). What is decoded from no single
image takes a class too: a traversal its base image's, an interpolation between two images the
mix of their classes along the way (their one-hot vectors interpolated linearly), a manifold
``label`` (default: the first class).

Every function is deterministic for its ``seed``: the same checkpoint and options write the
same bytes.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from vae.checkpoint import read_metadata
from vae.classes import check_conditional, check_image_labels, class_index
from vae.data import ImageSource, to_float
from vae.errors import ConfigError, DataError, Setting
from vae.evaluation import prepare_evaluation_images
from vae.images import save_gif, save_grid, save_labelled_rows, save_reconstruction_grid, tile
from vae.latent import (
    Codes,
    chain_indices,
    chain_path,
    encode_images,
    interpolation_path,
    manifold_codes,
    plane_of,
    random_pairs,
    traversal_codes,
    traversal_order,
)
from vae.limits import check_picture
from vae.loss_name import training_loss_name
from vae.model import VAE
from vae.models import family_of
from vae.plots import save_latent_maps, save_score_histograms, save_training_curves
from vae.sampling import sample_from_model
from vae.trained_model import load_trained_model

if TYPE_CHECKING:
    from vae.model_spec import ModelSpec
    from vae.reporting import Reporter


@dataclass
class Inputs:
    """A model and the images it is shown, as it sees them (Bernoulli models get test images
    binarized once with the evaluation seed; files are used as they are)."""

    model: VAE
    images: torch.Tensor  # float [N, C, H, W] in [0, 1]
    labels: torch.Tensor | None
    source: str
    metadata: dict[str, Any] = field(default_factory=dict)
    # The class of each image a conditional model encodes and decodes it as (None for others).
    condition: torch.Tensor | None = None

    _codes: Codes | None = field(default=None, init=False, repr=False)

    def codes(self) -> Codes:
        if self._codes is None:
            self._codes = encode_images(self.model, self.images, labels=self.condition)
        return self._codes

    @property
    def name(self) -> str:
        return self.model.family.label

    def decode(self, codes: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        """Images of ``codes``; a conditional model's as ``condition`` (class indices, or
        mixes of classes [N, classes]: see :meth:`classes_between`)."""
        return self.model.decode_images(codes, condition).cpu()

    def class_of(self, index: int, count: int) -> torch.Tensor | None:
        """The class of image ``index``, ``count`` times (None for a model without classes)."""
        if self.condition is None:
            return None
        return self.condition[index].repeat(count)

    def classes_between(self, indices: list[int], steps: int) -> torch.Tensor | None:
        """The mixes of classes along a walk through images ``indices``, ``steps`` points a leg
        as :func:`vae.latent.chain_path` walks the codes: each image's one-hot vector, linearly
        interpolated (None for a model without classes)."""
        if self.condition is None:
            return None
        one_hot = self.model.condition(self.condition[indices])
        assert one_hot is not None
        return chain_path(one_hot.cpu(), steps, "lerp")


def load_inputs(
    checkpoint: str | Path,
    source: ImageSource | None = None,
    *,
    device: str = "cpu",
    binarize: bool = True,
    model: VAE | None = None,
    reporter: Reporter | None = None,
    label: str | int | None = None,
) -> Inputs:
    """Load a checkpoint and the test images of ``source`` (default: the model's own named
    dataset's; see :class:`vae.data.ImageSource`). A conditional model is shown each image as
    its own class, or every image as the class ``label`` (a name or an index), which any
    other model refuses.

    ``binarize``: a Bernoulli model's test images are binarized once with the evaluation seed,
    as the likelihood scores them; False keeps the grey images (for pictures that show the
    originals). Files are used as they are. ``model``: the checkpoint's model, when the caller
    has loaded it already. Images mostly on light backgrounds for a model that draws dark ones
    are named in one warning to ``reporter`` (see vae.backgrounds)."""
    source = source or ImageSource()
    trained = load_trained_model(checkpoint, device, model)
    if label is not None:  # refused before any image is read
        check_conditional(trained.model.spec)
        class_index(trained.model.spec, label)
    test = trained.test_images(source, reporter)
    images = test.images
    if (
        binarize
        and source.input_path is None
        and trained.data_info.get("binarize", "none") != "none"
    ):
        images = prepare_evaluation_images(images, "static", 0)
    name = source.name(trained.data_info) + ("" if source.input_path is not None else " test")
    if source.invert:  # a map's title says what was encoded
        name = f"inverted {name}"
    condition = _condition(trained.model, test.labels, len(images), label, name)
    return Inputs(trained.model, to_float(images), test.labels, name, trained.metadata, condition)


def _condition(
    model: VAE, labels: torch.Tensor | None, count: int, label: str | int | None, name: str
) -> torch.Tensor | None:
    """The classes a conditional model is shown ``count`` images as: ``label`` for all, else
    each image's own ``labels`` (None for a model without classes, which refuses ``label``)."""
    spec = model.spec
    if label is not None:
        return torch.full((count,), class_index(spec, label), dtype=torch.long)
    if not model.family.conditional:
        return None
    if labels is None:
        raise DataError(
            f"a {model.family.label} shows each image as its class, and {name} has no labels: "
            "choose one class for them all with ",
            Setting("label"),
            ", or a labelled dataset with ",
            Setting("dataset"),
        )
    check_image_labels(spec, labels, name)
    return labels.long()


# --- interpolation ---------------------------------------------------------------------------


@dataclass
class Interpolation:
    grid_path: Path
    gif_path: Path
    indices: list[int]  # images used, in order (pairs flattened, or the chain)
    frames: int


def interpolate(
    inputs: Inputs,
    grid_path: Path,
    gif_path: Path,
    *,
    pairs: int = 6,
    steps: int = 10,
    method: str = "slerp",
    chain: list[int] | None = None,
    seed: int = 0,
) -> Interpolation:
    """Decode paths between posterior means: a grid PNG with one row per pair (originals at
    both ends) and an animated GIF.

    Pairs are drawn with ``seed`` from the test images (consecutive files for ``--input``).
    With ``chain`` (class labels), the walk visits one test image of each class in turn; the
    GIF then shows the whole walk, (len(chain) - 1) * (steps - 1) + 1 frames.
    """
    if steps < 2:
        raise ConfigError(
            "invalid value for ", Setting("steps"), f": {steps} (expected at least 2)"
        )
    count = inputs.images.shape[0]
    if chain is not None:
        if len(chain) < 2:
            raise ConfigError(Setting("chain"), " needs at least two class labels, e.g. 0,1,2")
        if inputs.labels is None:
            raise DataError(
                Setting("chain"), f" needs labelled images; {inputs.source} has no labels"
            )
        indices = chain_indices(inputs.labels, chain, seed)
        legs = [(indices[i], indices[i + 1]) for i in range(len(indices) - 1)]
    elif inputs.labels is None:  # files: consecutive pairs, in sorted file order
        if count < 2:
            raise DataError(f"interpolation needs at least two images; {inputs.source} has {count}")
        legs = [(i, i + 1) for i in range(0, count - 1, 2)][:pairs]
        indices = [i for leg in legs for i in leg]
    else:
        legs = random_pairs(count, pairs, seed)
        indices = [i for leg in legs for i in leg]
    means = inputs.codes().means
    rows, leg_images = [], []
    for first, second in legs:
        path = interpolation_path(means[first], means[second], steps, method)
        decoded = inputs.decode(path, inputs.classes_between([first, second], steps))
        leg_images.append(decoded)
        rows += [inputs.images[first : first + 1], decoded, inputs.images[second : second + 1]]
    save_grid(torch.cat(rows), grid_path, columns=steps + 2)
    if chain is not None:
        walk = inputs.decode(
            chain_path(means[indices], steps, method), inputs.classes_between(indices, steps)
        )
        frames = list(walk)
    else:
        # Every pair moves at once: frame t shows step t of each pair side by side.
        frames = [
            tile(torch.stack([leg[t] for leg in leg_images]), len(leg_images)) for t in range(steps)
        ]
    save_gif(frames, gif_path)
    return Interpolation(Path(grid_path), Path(gif_path), indices, len(frames))


# --- traversal -------------------------------------------------------------------------------


@dataclass
class Traversal:
    path: Path
    dims: list[int]  # latent dimension of each row, top to bottom
    importance: list[float]  # average KL in nats (VAE) or code variance (autoencoder) per row
    skipped: list[int]  # inactive dimensions left out
    labels: list[str]  # each row's label, as drawn


def traverse(
    inputs: Inputs,
    path: Path,
    *,
    index: int = 0,
    steps: int = 11,
    span: float = 3.0,
    max_dims: int | None = None,
    include_inactive: bool = False,
) -> Traversal:
    """One row per latent dimension, ordered by average KL (most informative first; the
    variance of the posterior means for a model whose prior is learned); columns
    sweep the dimension from -span to +span standard deviations (of the aggregate posterior)
    around the posterior mean of image ``index``, all other dimensions held. Inactive
    dimensions are skipped (or, with ``include_inactive``, shown and labelled inactive)."""
    count = inputs.images.shape[0]
    if not 0 <= index < count:
        raise ConfigError(
            "invalid value for ", Setting("index"), f": {index} (expected 0 to {count - 1})"
        )
    if steps < 2:
        raise ConfigError(
            "invalid value for ", Setting("steps"), f": {steps} (expected at least 2)"
        )
    if not span > 0:
        raise ConfigError("invalid value for ", Setting("span"), f": {span} (expected positive)")
    codes = inputs.codes()
    dims = traversal_order(codes, include_inactive)
    active = codes.active()
    skipped = [d for d in range(codes.means.shape[1]) if not bool(active[d])]
    if include_inactive:
        skipped = []
    if not dims:
        raise DataError(
            "no active latent dimension to traverse (use ", Setting("include_inactive"), ")"
        )
    if max_dims is not None:
        dims = dims[:max_dims]
    spec = inputs.model.spec
    check_picture("steps x dimensions", steps * len(dims), spec.channels, spec.height, spec.width)
    offsets = torch.linspace(-span, span, steps)
    decoded = inputs.decode(
        traversal_codes(codes.means[index], dims, offsets, codes.aggregate_std()),
        inputs.class_of(index, steps * len(dims)),
    )
    importance = codes.importance()
    unit = "KL" if codes.logvars is not None and codes.per_dimension_kl else "var"
    labels = [
        f"z{d}{_group_tag(spec, d)} {unit} {importance[d]:.2f}"
        + ("" if bool(active[d]) else " inactive")
        for d in dims
    ]
    save_labelled_rows(decoded, labels, path, columns=steps)
    return Traversal(Path(path), dims, [float(importance[d]) for d in dims], skipped, labels)


def _group_tag(spec: ModelSpec, dimension: int) -> str:
    """What a row label adds after a hierarchy's dimension: " gN" for group N (1 the top), as
    the explorer's sliders say; nothing for other models."""
    groups = family_of(spec).code_groups(spec.latent_dim, spec.latent_groups)
    return "" if groups is None else f" g{groups[dimension]}"


# --- latent map and manifold ---------------------------------------------------------------


def latent_map(panels: list[Inputs], path: Path) -> Path:
    """The posterior means of each input set in 2-D (the latent itself when it is 2-D,
    otherwise a PCA projection, said in the title), coloured by label; one panel per model."""
    drawn = []
    for inputs in panels:
        means = inputs.codes().means
        plane = plane_of(means)
        title = f"{inputs.name}, {inputs.source} ({means.shape[0]:,} images)\n{plane.label}"
        if plane.explained is not None:
            title += f" ({100 * plane.explained:.0f}% of variance)"
        axes = ("z1", "z2") if plane.explained is None else ("PC1", "PC2")
        drawn.append(
            {
                "points": plane.project(means).numpy(),
                "labels": None if inputs.labels is None else inputs.labels.numpy(),
                "title": title,
                "axes": axes,
            }
        )
    return save_latent_maps(drawn, path)


def manifold(
    inputs: Inputs, path: Path, *, size: int = 20, span: float = 2.0, label: str | int | None = None
) -> Path:
    """Decode a ``size`` x ``size`` grid over the 2-D latent (or the plane of the two leading
    principal directions of the posterior means), ``span`` standard deviations each way; a
    conditional model's as the class ``label`` (default: its first class)."""
    if size < 2:
        raise ConfigError("invalid value for ", Setting("size"), f": {size} (expected at least 2)")
    if not span > 0:
        raise ConfigError("invalid value for ", Setting("span"), f": {span} (expected positive)")
    means = inputs.codes().means
    plane = plane_of(means)
    classes = None
    if inputs.model.family.conditional:
        chosen = 0 if label is None else class_index(inputs.model.spec, label)
        classes = torch.full((size * size,), chosen, dtype=torch.long)
    decoded = inputs.decode(manifold_codes(plane, plane.project(means), size, span), classes)
    return save_grid(decoded, path, columns=size)


# --- curves ----------------------------------------------------------------------------------


def curves(run: Path, path: Path | None = None) -> Path:
    """Redraw ``curves.png`` of a run folder (or of a metrics.jsonl file) from its metrics."""
    from vae.run_folder import CURVES_NAME, METRICS_NAME, read_metrics

    metrics = run if run.is_file() else run / METRICS_NAME
    if not metrics.exists():
        raise DataError(f"{metrics} not found: give a run folder written by train")
    records = read_metrics(metrics)
    if not records:
        raise DataError(f"{metrics} holds no finished epoch yet")
    target = path if path is not None else metrics.parent / CURVES_NAME
    loss = training_loss_name(_run_configuration(metrics.parent))
    return save_training_curves(records, target, title=str(metrics), loss=loss)


def _run_configuration(folder: Path) -> dict[str, Any] | None:
    """The configuration of the run whose metrics lie in ``folder``: its ``config.yaml``, else
    a checkpoint's beside them (the shipped logs sit beside their checkpoints); None when
    neither can be read (the curves then name the -ELBO)."""
    from vae.checkpoint import BEST_NAME
    from vae.config import load_config_file
    from vae.errors import VAEError
    from vae.run_folder import CONFIG_NAME

    with contextlib.suppress(VAEError, OSError):
        if (folder / CONFIG_NAME).is_file():
            return load_config_file(folder / CONFIG_NAME).to_dict()
    with contextlib.suppress(VAEError, OSError):
        if (folder / BEST_NAME).is_file():
            config = read_metadata(folder / BEST_NAME).get("config")
            return config if isinstance(config, dict) else None
    return None


# --- gallery ---------------------------------------------------------------------------------

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
