"""A checkpoint exported as a folder to share as it is (the Hugging Face Hub's model layout):
``model.safetensors`` (the weights and vae metadata, without training state or local paths), a
model card ``README.md`` (the Hub's YAML front matter, then what the model is, how to load it,
its evaluation) and ``samples.png`` (drawn as ``generate`` draws). Nothing outside the folder is
written; the card is built from the exported metadata alone, so it names no local path either.
"""

from __future__ import annotations

import copy
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vae.checkpoint import FORMAT_VERSION, load_checkpoint, save_checkpoint
from vae.checkpoint.hub import DEFAULT_HUB_FILE
from vae.checkpoint.locate import locate_checkpoint
from vae.data.registry import FOLDER_PREFIX, HF_PREFIX, MEMORY_PREFIX
from vae.errors import ConfigError, Setting
from vae.fileio import atomic_write_text
from vae.models.priors import PRIORS

MODEL_NAME = DEFAULT_HUB_FILE  # the file a bare hf://OWNER/NAME names
CARD_NAME = "README.md"
SAMPLES_NAME = "samples.png"
EXPORTED_FILES = (MODEL_NAME, CARD_NAME, SAMPLES_NAME)
# The grid ``generate`` draws by default: 64 samples, 8 a row, seed 0.
SAMPLE_COUNT, SAMPLE_COLUMNS, SAMPLE_SEED = 64, 8, 0
# An evaluation JSON is a few kilobytes; a larger file beside a checkpoint is not one.
_MAX_EVALUATION_BYTES = 16 * 1024 * 1024
_LICENSE = re.compile(r"[a-z0-9][a-z0-9.+-]{0,63}")


@dataclass
class Export:
    """What ``export_checkpoint`` wrote: the folder, the checkpoint it came from, and the
    evaluation JSON whose figures the card reports (None when there was none)."""

    folder: Path
    checkpoint: Path
    evaluation: Path | None


def export_checkpoint(
    source: str | Path,
    out_dir: str | Path,
    *,
    license: str | None = None,
    evaluation: str | Path | None = None,
    force: bool = False,
    hub_source: str | None = None,
) -> Export:
    """Export the checkpoint ``source`` (a ``.safetensors`` file, a run folder: its
    ``checkpoint_best.safetensors``, or a ``hf://`` reference) into ``out_dir`` (see the
    module's docstring); ``hub_source`` (``hf://OWNER/NAME[@BRANCH]``), when the folder is bound
    for the Hub, makes the card's examples load it from there. A non-empty
    ``out_dir`` is refused unless ``force`` (which replaces the three files and leaves any other
    alone); ``evaluation`` (else an ``evaluation*.json`` beside the checkpoint made of it) gives
    the card's figures; ``license`` is the card's Hub license identifier (left out when None)."""
    folder = Path(out_dir)
    _check_license(license)
    _check_out_dir(folder, force)
    checkpoint = locate_checkpoint(source)  # after the checks: a hf:// source downloads
    model, content = load_checkpoint(checkpoint)  # every check a reader makes
    record, record_path = _evaluation(checkpoint, content.sha256, evaluation)
    metadata = shareable_metadata(content.header.metadata)
    folder.mkdir(parents=True, exist_ok=True)
    model_path = folder / MODEL_NAME
    # The model's own tensors and metadata only: no optimizer or rng tensors, no training state.
    save_checkpoint(model_path, model, metadata)
    from vae.images import save_grid
    from vae.sampling import sample_images

    # From the exported file, as ``generate --checkpoint model.safetensors`` draws them.
    samples = sample_images(model_path, SAMPLE_COUNT, SAMPLE_SEED)
    save_grid(samples, folder / SAMPLES_NAME, SAMPLE_COLUMNS)
    record_name = record_path.name if record_path else None
    card = model_card(metadata, record, license, record_name, hub_source=hub_source)
    atomic_write_text(folder / CARD_NAME, card)
    return Export(folder, checkpoint, record_path)


def _check_license(license: str | None) -> None:
    if license is not None and not _LICENSE.fullmatch(license):
        raise ConfigError(
            "invalid value for ",
            Setting("license"),
            f": {license!r} (a Hub license identifier such as mit, apache-2.0, cc-by-4.0)",
        )


def _check_out_dir(folder: Path, force: bool) -> None:
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{folder} is a file, not a folder: give the folder to export into")
    if folder.is_dir() and not force and any(folder.iterdir()):
        raise ConfigError(
            f"{folder} is not empty: export into a new or empty folder, or pass ",
            Setting("force"),
            f" to replace its {', '.join(EXPORTED_FILES)}",
        )


def shareable_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint's vae metadata without what only its own machine knows: the data, cache
    and runs folders become their defaults and a ``folder:`` (or local ``hf:``) dataset keeps
    only its folder's name; the format is today's (the weights are saved under today's names)."""
    shared = copy.deepcopy(metadata)
    shared["format_version"] = FORMAT_VERSION
    config = shared.get("config")
    if isinstance(config, dict):
        data = config.get("data")
        if isinstance(data, dict):
            for key in ("data_dir", "cache_dir"):
                if key in data:
                    data[key] = None
            if "dataset" in data:
                data["dataset"] = _shareable_dataset(data["dataset"])
        train = config.get("train")
        if isinstance(train, dict) and "runs_dir" in train:
            train["runs_dir"] = "runs"
    data_info = shared.get("data")
    if isinstance(data_info, dict) and "dataset" in data_info:
        data_info["dataset"] = _shareable_dataset(data_info["dataset"])
    return shared


def _shareable_dataset(dataset: Any) -> Any:
    """``folder:/home/me/photos`` -> ``folder:photos``; a local ``hf:`` path likewise; a Hub
    dataset's or a registry dataset's name as it is."""
    if not isinstance(dataset, str):
        return dataset
    for prefix in (FOLDER_PREFIX, HF_PREFIX):
        if dataset.startswith(prefix):
            rest = dataset[len(prefix) :]
            local = prefix == FOLDER_PREFIX or rest.startswith(("/", "~", ".")) or "\\" in rest
            if local:
                return prefix + Path(rest.replace("\\", "/").rstrip("/")).name
    return dataset


def named_dataset(metadata: dict[str, Any]) -> str | None:
    """The dataset the model was trained on when it has a name others can find (a registry
    dataset or a Hub dataset), else None."""
    dataset = (metadata.get("data") or {}).get("dataset")
    if not isinstance(dataset, str) or dataset.startswith((FOLDER_PREFIX, MEMORY_PREFIX)):
        return None
    if dataset.startswith(HF_PREFIX):
        name = dataset[len(HF_PREFIX) :]
        return name if re.fullmatch(r"[\w.-]+(/[\w.-]+)?", name) else None
    return dataset


# --- the evaluation figures ---------------------------------------------------------------------


def _evaluation(
    checkpoint: Path, sha256: str, given: str | Path | None
) -> tuple[dict[str, Any] | None, Path | None]:
    """The evaluation record the card reports and its file: ``given`` (which must be of this
    checkpoint), else the best of those beside the checkpoint made of it (see ``best_record``)."""
    if given is not None:
        path = Path(given)
        record = _read_evaluation(path)
        if record is None:
            raise ConfigError(
                f"{path} is not a vae evaluation JSON (write one with evaluate --output FILE.json)"
            )
        if record["checkpoint_sha256"] != sha256:
            raise ConfigError(
                f"{path} evaluates another checkpoint (its checkpoint_sha256 is not that of "
                f"{checkpoint})"
            )
        return record, path
    found = []
    for path in sorted(checkpoint.parent.glob("evaluation*.json")):
        record = _read_evaluation(path)
        if record is not None and record["checkpoint_sha256"] == sha256:
            found.append((path, record))
    if not found:
        return None, None
    path, record = best_record(found)
    return record, path


def best_record(found: list[tuple[Path, dict[str, Any]]]) -> tuple[Path, dict[str, Any]]:
    """Of several evaluations of one checkpoint, the most thorough: the most test images, then
    the most importance samples (k), then the most repeats; a tie goes to the first by name."""

    def thoroughness(item: tuple[Path, dict[str, Any]]) -> tuple[float, ...]:
        record = item[1]
        return tuple(
            -float(value) if isinstance(value := record.get(key), int | float) else 0.0
            for key in ("num_images", "k", "repeats")
        )

    return min(found, key=lambda item: (thoroughness(item), item[0].name))


def _read_evaluation(path: Path) -> dict[str, Any] | None:
    """The evaluation record in ``path``, or None when it is not one (unreadable, too large, not
    JSON, or without figures)."""
    try:
        if not path.is_file() or path.stat().st_size > _MAX_EVALUATION_BYTES:
            return None
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    if not (
        isinstance(record, dict)
        and isinstance(record.get("checkpoint_sha256"), str)
        and isinstance(record.get("metrics"), dict)
    ):
        return None
    return record


def evaluation_figures(record: dict[str, Any]) -> list[tuple[str, float | int]]:
    """(metric, value) of an evaluation record: each metric's mean (over repeats), then the
    active units; only finite numbers."""
    figures: list[tuple[str, float | int]] = []
    for name, summary in sorted(record["metrics"].items()):
        mean = summary.get("mean") if isinstance(summary, dict) else None
        if isinstance(mean, int | float) and not isinstance(mean, bool) and math.isfinite(mean):
            figures.append((str(name), float(mean)))
    units = record.get("active_units")
    if isinstance(units, int) and not isinstance(units, bool):
        figures.append(("active_units", units))
    return figures


# --- the model card -----------------------------------------------------------------------------


def model_card(
    metadata: dict[str, Any],
    record: dict[str, Any] | None,
    license: str | None,
    record_name: str | None,
    hub_source: str | None = None,
) -> str:
    """The model card: the Hub's YAML front matter, then the body (see the module's docstring)."""
    import yaml

    from vae.models import family_named

    model = metadata.get("model") or {}
    family = family_named(model.get("model_type"))
    dataset = named_dataset(metadata)
    name = str(metadata.get("run_name") or "vae-model")
    tags = ["vae", "variational-autoencoder" if family.stochastic else "autoencoder"]
    tags += ["image-generation", *([dataset.split("/")[-1]] if dataset else [])]
    front: dict[str, Any] = {"library_name": "vae"}
    if license is not None:
        front["license"] = license
    front["tags"] = list(dict.fromkeys(tags))
    if not family.conditional:  # the Hub has no tag for images drawn given a class
        front["pipeline_tag"] = "unconditional-image-generation"
    if dataset:
        front["datasets"] = [dataset]
    figures = evaluation_figures(record) if record is not None else []
    if figures:
        shown = dataset or str((metadata.get("data") or {}).get("dataset"))
        front["model-index"] = [
            {
                "name": name,
                "results": [
                    {
                        "task": {"type": "unconditional-image-generation"},
                        "dataset": {"name": shown, "type": shown, "split": "test"},
                        "metrics": [
                            {"type": metric, "value": value, "name": _METRIC_NAMES.get(metric)}
                            for metric, value in figures
                        ],
                    }
                ],
            }
        ]
    head = yaml.safe_dump(front, sort_keys=False, allow_unicode=True)
    body = _body(name, metadata, family, record, figures, record_name, hub_source)
    return f"---\n{head}---\n\n{body}"


_METRIC_NAMES = {
    "nll": "test NLL (nats)",
    "nll_bits_per_dim": "test NLL (bits/dim)",
    "neg_elbo": "test negative ELBO (nats)",
    "neg_elbo_bits_per_dim": "test negative ELBO (bits/dim)",
    # A conditional model's, of each image given its label (never beside another's NLL).
    "nll_given_label": "test NLL given the label (nats)",
    "nll_given_label_bits_per_dim": "test NLL given the label (bits/dim)",
    "neg_elbo_given_label": "test negative ELBO given the label (nats)",
    "neg_elbo_given_label_bits_per_dim": "test negative ELBO given the label (bits/dim)",
    "kl": "test KL (nats)",
    "recon": "test reconstruction loss (nats)",
    "active_units": "active latent units",
}


def _body(
    name: str,
    metadata: dict[str, Any],
    family: Any,
    record: dict[str, Any] | None,
    figures: list[tuple[str, float | int]],
    record_name: str | None,
    hub_source: str | None,
) -> str:
    """The model card's text below its front matter: what the model is, how to use it, its
    evaluation and its samples."""
    lines = [
        *_what_it_is(name, metadata, family),
        *_use(hub_source),
        *_evaluation_section(record, figures, record_name),
        *_samples(family),
    ]
    return "\n".join(lines)


def _classes_row(model: dict[str, Any]) -> list[str]:
    """A conditional model's classes, as a row of the table (none for other models)."""
    classes = model.get("classes")
    if not isinstance(classes, list) or not classes:
        return []
    shown = ", ".join(str(name).replace("|", "\\|") for name in classes[:20])
    more = f" and {len(classes) - 20} more" if len(classes) > 20 else ""
    return [f"| classes (the label it is conditioned on) | {len(classes)}: {shown}{more} |"]


def _what_it_is(name: str, metadata: dict[str, Any], family: Any) -> list[str]:
    """The title, a sentence and a table of the model, its data and its recipe."""
    model = metadata.get("model") or {}
    data = metadata.get("data") or {}
    train = (metadata.get("config") or {}).get("train") or {}
    beta = metadata.get("beta_schedule") or {}
    prior = model.get("prior")
    part = PRIORS.get(prior) if isinstance(prior, str) else None
    if part is not None:
        prior = part.title(model)
    parameters = metadata.get("parameter_count")
    return [
        f"# {name}",
        "",
        f"A {family.label or model.get('model_type')} for "
        f"{data.get('channels')}x{data.get('height')}x{data.get('width')} images, trained with "
        f"vae {metadata.get('package_version')} and exported with "
        "`vae export`.",
        "",
        "| | |",
        "|---|---|",
        f"| family | {model.get('model_type')} ({model.get('architecture')} network) |",
        f"| latent dimensions | {model.get('latent_dim')} |",
        f"| prior | {prior} |",
        *_classes_row(model),
        f"| likelihood | {model.get('likelihood')} |",
        f"| parameters | {parameters:,} |" if isinstance(parameters, int) else "| parameters | |",
        f"| data | {data.get('dataset')} ({data.get('num_train')} training images, binarized: "
        f"{data.get('binarize')}) |",
        f"| training | {metadata.get('epoch')} epochs ({metadata.get('step')} steps), batch "
        f"{train.get('batch_size')}, {train.get('optimizer')} at lr {train.get('lr')} "
        f"({train.get('lr_schedule')} schedule), seed {train.get('seed')} |",
        f"| beta | {beta.get('beta')} ({beta.get('beta_schedule')} schedule, warm-up "
        f"{beta.get('beta_warmup')}) |",
        *_recipe_rows(metadata),
        "",
    ]


def _recipe_rows(metadata: dict[str, Any]) -> list[str]:
    """Rows only some models have: the latent groups of a hierarchy, and an objective other
    than the ELBO (an IWAE-trained model's figures are of another bound)."""
    model = metadata.get("model") or {}
    objective = (metadata.get("config") or {}).get("objective") or {}
    rows = []
    groups = model.get("latent_groups")
    if isinstance(groups, int) and not isinstance(groups, bool) and groups > 1:
        rows.append(f"| latent groups | {groups}, drawn top-down |")
    if objective.get("objective") == "iwae":
        rows.append(
            f"| objective | the importance-weighted bound with k = {objective.get('iw_samples')} "
            "(Burda et al. 2016), not the ELBO |"
        )
    return rows


def _use(hub_source: str | None) -> list[str]:
    """How to load the exported model from the command line and from Python: from the Hub when
    ``hub_source`` is known, else from the folder."""
    source = hub_source or MODEL_NAME
    where = "from the Hub" if hub_source else "in this folder (or `hf://OWNER/NAME` once uploaded)"
    return [
        "## Use",
        "",
        f"With the `vae` command line, {where}:",
        "",
        "```bash",
        f"vae generate --checkpoint {source} --output samples.png",
        f"vae info {source}",
        "```",
        "",
        "From Python:",
        "",
        "```python",
        "import vae",
        "",
        f'model = vae.load("{source}")',
        "```",
        "",
    ]


def _evaluation_section(
    record: dict[str, Any] | None,
    figures: list[tuple[str, float | int]],
    record_name: str | None,
) -> list[str]:
    """The evaluation's figures and protocol, or how to make one."""
    lines = ["## Evaluation", ""]
    if not figures or record is None:
        return [
            *lines,
            "No evaluation was exported with this model (`evaluate --checkpoint "
            f"{MODEL_NAME} --output evaluation.json` writes one).",
        ]
    return [
        *lines,
        f"From `{record_name}`: {record.get('num_images')} test images, "
        f"k = {record.get('k')} importance samples, {record.get('repeats')} repeat(s); "
        f"{record.get('protocol')}.",
        "",
        "| metric | value |",
        "|---|---|",
        *(f"| {_METRIC_NAMES.get(metric, metric)} | {value:.6g} |" for metric, value in figures),
    ]


def _samples(family: Any) -> list[str]:
    """The samples grid, with the family's note on where samples come from."""
    note = [f"Note: {family.sampling_note}", ""] if family.sampling_note else []
    return [
        "",
        "## Samples",
        "",
        *note,
        f"![{SAMPLE_COUNT} samples]({SAMPLES_NAME})",
        "",
        f"{SAMPLE_COUNT} samples, as `generate --checkpoint {MODEL_NAME} --seed {SAMPLE_SEED}` "
        "draws them.",
        "",
    ]


__all__ = [
    "CARD_NAME",
    "EXPORTED_FILES",
    "MODEL_NAME",
    "SAMPLES_NAME",
    "Export",
    "best_record",
    "evaluation_figures",
    "export_checkpoint",
    "model_card",
    "named_dataset",
    "shareable_metadata",
]
