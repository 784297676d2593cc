"""The model card of an exported checkpoint: the Hub's YAML front matter, then what the model is,
how to load it, its evaluation and its samples, built from the shareable metadata alone."""

from __future__ import annotations

from typing import Any

from vae.export.evaluation_record import evaluation_figures
from vae.export.files import MODEL_NAME, SAMPLE_COUNT, SAMPLE_SEED, SAMPLES_NAME
from vae.export.metadata import named_dataset
from vae.models.priors import PRIORS


def model_card(
    metadata: dict[str, Any],
    record: dict[str, Any] | None,
    license: str | None,
    record_names: list[str],
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
    body = _body(name, metadata, family, record, figures, record_names, hub_source)
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
    record_names: list[str],
    hub_source: str | None,
) -> str:
    """The model card's text below its front matter: what the model is, how to use it, its
    evaluation and its samples."""
    lines = [
        *_what_it_is(name, metadata, family),
        *_use(hub_source),
        *_evaluation_section(record, figures, record_names),
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
    record_names: list[str],
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
        f"From {_listed(record_names)}: {record.get('num_images')} test images, "
        f"k = {record.get('k')} importance samples, {record.get('repeats')} repeat(s)"
        f"{_seeds(record)}; {record.get('protocol')}.",
        "",
        "| metric | value |",
        "|---|---|",
        *(f"| {_METRIC_NAMES.get(metric, metric)} | {value:.6g} |" for metric, value in figures),
    ]


def _listed(names: list[str]) -> str:
    """File names as a sentence lists them: `a`, `b` and `c`."""
    quoted = [f"`{name}`" for name in names]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} and {quoted[-1]}"


def _seeds(record: dict[str, Any]) -> str:
    """The seeds of several repeats, which the figures are the mean of ("" for one)."""
    seeds = record.get("seeds")
    whole = isinstance(seeds, list) and all(
        isinstance(seed, int) and not isinstance(seed, bool) for seed in seeds
    )
    # Named only where they say something true and short: one per repeat, a handful.
    if not whole or not 2 <= len(seeds) <= 20 or len(seeds) != record.get("repeats"):
        return ""
    return f" (seeds {', '.join(str(seed) for seed in seeds)}; each figure their mean)"


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
