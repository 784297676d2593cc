"""The rules that join settings are written once (vae.config.rules): a run configuration and a
checkpoint's model spec that break the same rule get the same message, spoken of settings; the
settings a resume may change are marked where each setting is defined, and the docs list them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import one_line_error
from vae.cli import app
from vae.cli.train import LEADING_ROWS
from vae.config import RESUMABLE_SETTINGS, RunConfig, flag_of, load_config_file
from vae.errors import ConfigError
from vae.spec import ModelSpec, check_spec
from vae.training import RESUMABLE_OVERRIDES

runner = CliRunner()


def _conv_config(**model) -> RunConfig:
    config = RunConfig()
    for name, value in model.items():
        section = config.objective if name in ("likelihood", "learn_sigma") else config.model
        setattr(section, name, value)
    return config


def _conv_spec(**changes) -> ModelSpec:
    base = dict(architecture="conv", latent_dim=4, channels=1, height=28, width=28,
                likelihood="bce", hidden_sizes=[16], conv_widths=[8, 16])  # fmt: skip
    return ModelSpec(**{**base, **changes})


# (a run configuration's settings, the same model as a checkpoint's spec, the message)
CASES = {
    "learned sigma without the Gaussian": (
        {"learn_sigma": True},
        {"learned_sigma": True},
        "invalid value for learn_sigma: True (expected only with likelihood mse (a Gaussian has "
        "a sigma to learn))",
    ),
    "unknown architecture": (
        {"architecture": "rnn"},
        {"architecture": "rnn"},
        "invalid value for architecture: 'rnn' (expected one of mlp, conv)",
    ),
    "unknown likelihood": (
        {"likelihood": "l1"},
        {"likelihood": "l1"},
        "invalid value for likelihood: 'l1' (expected one of bce, mse, ssim, ms-ssim)",
    ),
    "a conv model without conv layers": (
        {"conv_widths": []},
        {"conv_widths": []},
        "invalid value for conv_widths: [] (expected one or more positive integers)",
    ),
    "a decoder without conv layers": (
        {"decoder_conv_widths": []},
        {"decoder_conv_widths": []},
        "invalid value for decoder_conv_widths: [] (expected one or more positive integers)",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_a_rule_says_the_same_to_a_run_configuration_and_to_a_checkpoint(case):
    settings, spec_fields, message = CASES[case]
    with pytest.raises(ConfigError) as from_config:
        _conv_config(**settings).validate()
    with pytest.raises(ConfigError) as from_spec:
        check_spec(_conv_spec(**spec_fields))
    assert str(from_config.value) == str(from_spec.value) == message


def test_the_image_side_rules_speak_of_settings():
    with pytest.raises(ConfigError) as refused:
        check_spec(_conv_spec(likelihood="ms-ssim"))
    assert refused.value.render(flag_of) == (
        "--likelihood ms-ssim compares 5 scales and needs images of at least 48 pixels a side, "
        "got 28x28: use --likelihood ssim or a larger --image-size"
    )
    with pytest.raises(ConfigError) as refused:
        check_spec(_conv_spec(height=4, width=4, conv_widths=[2, 2, 2]))
    assert refused.value.render(flag_of) == (
        "3 conv layers need images of at least 8 pixels a side, got 4x4: use fewer "
        "--conv-widths or a larger --image-size"
    )


def test_a_run_configuration_key_that_is_no_setting_is_refused_in_one_line(tmp_path: Path):
    """``effective_prior`` is a property of the model section, not a setting: before, it got
    past the unknown-key check and failed with a KeyError."""
    path = tmp_path / "config.yaml"
    path.write_text("model:\n  effective_prior: mog\n  latent_dim: 8\n")
    with pytest.raises(ConfigError, match=r"unknown option 'model\.effective_prior'$"):
        load_config_file(path)
    result = runner.invoke(app, ["train", "x", "--config", str(path), "--runs-dir", str(tmp_path)])
    one_line_error(result, 2, "unknown option 'model.effective_prior'")
    assert not (tmp_path / "x").exists()


def test_the_resumable_settings_are_those_marked_and_the_docs_list_them_all():
    assert RESUMABLE_OVERRIDES == set(RESUMABLE_SETTINGS)
    assert {"epochs", "device", "storage", "cache_dir", "decode_workers"} <= RESUMABLE_OVERRIDES
    assert not {"lr", "latent_dim", "seed", "batch_size", "dataset"} & RESUMABLE_OVERRIDES
    meaning = next(row[2] for row in LEADING_ROWS if row[0].startswith("`--resume"))
    listed = re.search(r"only (.*?) may change", meaning)
    assert listed is not None, meaning
    flags = re.findall(r"`(--[a-z0-9-]+)`", listed.group(1))
    assert sorted(flags) == sorted(flag_of(name) for name in RESUMABLE_OVERRIDES)
