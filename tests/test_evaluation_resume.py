"""``evaluate --output`` keeps its progress beside the output: an evaluation stopped by Ctrl-C or
killed continues when the same command runs again, and reports the figures an uninterrupted run
reports; a progress file of another evaluation, or a file that is not one, is never used or
replaced."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import vae.evaluation.progress as progress_module
import vae.evaluation.scoring as scoring
from vae.cli import app
from vae.fileio import progress_path

runner = CliRunner()
# 25 images in batches of 10, 10 and 5, two repeats: six batches, each a call of score_batch.
SETTINGS = ["--k", "20", "--repeats", "2", "--limit", "25", "--batch-size", "10", "--quiet"]
# Image scores done before each batch (1-based) starts.
DONE_BEFORE = {1: 0, 2: 10, 3: 20, 4: 25, 5: 35, 6: 45}


def evaluate(checkpoint, data, output, *extra, **invoke):
    return runner.invoke(
        app,
        ["evaluate", "--checkpoint", str(checkpoint), "--data-dir", str(data), "--no-download",
         *SETTINGS, "--output", str(output), *extra],
        **invoke,
    )  # fmt: skip


def assert_resumes(checkpoint, data, output, done_before, expected):
    """The same command, run again, continues after ``done_before`` image scores of 50 and
    writes the ``expected`` (uninterrupted) figures."""
    resumed = evaluate(checkpoint, data, output)
    assert resumed.exit_code == 0, resumed.output
    assert f"{done_before} of 50 image scores already computed" in resumed.output
    assert figures(json.loads(output.read_text())) == figures(expected)


@pytest.fixture
def checkpoint(trained_run):
    return trained_run / "checkpoint_best.safetensors"


@pytest.fixture
def uninterrupted(tmp_path_factory, checkpoint, synthetic_data_dir):
    output = tmp_path_factory.mktemp("uninterrupted") / "whole.json"
    result = evaluate(checkpoint, synthetic_data_dir, output)
    assert result.exit_code == 0, result.output
    assert not progress_path(output).exists()  # removed once the output is written
    return json.loads(output.read_text())


def stop_at_batch(monkeypatch, batch, error):
    """Make the ``batch``-th call of score_batch (1-based) raise ``error``."""
    real = scoring.score_batch
    calls = []

    def counting(*args, **kwargs):
        calls.append(1)
        if len(calls) == batch:
            raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(scoring, "score_batch", counting)
    return calls


def figures(result):
    return {key: result[key] for key in ("metrics", "active_units", "num_images", "seeds", "k")}


@pytest.mark.parametrize("batch", [2, 3, 4, 6])  # in repeat 1; at its end; in repeat 2; the last
def test_an_evaluation_stopped_by_ctrl_c_resumes_to_the_uninterrupted_figures(
    tmp_path, monkeypatch, checkpoint, synthetic_data_dir, uninterrupted, batch
):
    output = tmp_path / "result.json"
    stop_at_batch(monkeypatch, batch, KeyboardInterrupt())
    stopped = evaluate(checkpoint, synthetic_data_dir, output)
    assert stopped.exit_code == 130, stopped.output
    assert "progress is kept in" in stopped.output and "run again, continues" in stopped.output
    assert not output.exists() and progress_path(output).exists()
    monkeypatch.undo()
    calls = stop_at_batch(monkeypatch, 0, AssertionError())  # counts, never stops
    resumed = evaluate(checkpoint, synthetic_data_dir, output)
    assert resumed.exit_code == 0, resumed.output
    assert f"{DONE_BEFORE[batch]} of 50 image scores already computed" in resumed.output
    assert len(calls) == 6 - (batch - 1)  # only the batches not scored before
    result = json.loads(output.read_text())
    assert figures(result) == figures(uninterrupted)  # bit for bit
    assert result["resumed_image_scores"] == DONE_BEFORE[batch]
    assert not progress_path(output).exists()


def test_an_evaluation_killed_resumes_from_its_last_periodic_save(
    tmp_path, monkeypatch, checkpoint, synthetic_data_dir, uninterrupted
):
    """A kill leaves no chance to write: what was saved at the last interval is what counts."""
    monkeypatch.setattr(progress_module, "DEFAULT_INTERVAL", 0.0)  # a save after every batch
    output = tmp_path / "result.json"
    stop_at_batch(monkeypatch, 5, RuntimeError("killed"))
    with pytest.raises(RuntimeError, match="killed"):
        evaluate(checkpoint, synthetic_data_dir, output, catch_exceptions=False)
    monkeypatch.undo()
    assert_resumes(checkpoint, synthetic_data_dir, output, 35, uninterrupted)


def test_progress_of_another_evaluation_is_refused_and_kept(
    tmp_path, monkeypatch, checkpoint, synthetic_data_dir
):
    output = tmp_path / "result.json"
    stop_at_batch(monkeypatch, 3, KeyboardInterrupt())
    assert evaluate(checkpoint, synthetic_data_dir, output).exit_code == 130
    monkeypatch.undo()
    saved = progress_path(output).read_bytes()
    for extra, difference in ((["--k", "30"], "k 20, not 30"), (["--seed", "4"], "seed 0, not 4")):
        result = evaluate(checkpoint, synthetic_data_dir, output, *extra)
        assert result.exit_code != 0
        assert "holds the progress of another evaluation" in result.output
        assert difference in result.output and "delete the file to start over" in result.output
        assert progress_path(output).read_bytes() == saved and not output.exists()


@pytest.mark.parametrize("content", [b"my notes", b"\x10\x00\x00\x00\x00\x00\x00\x00{}"])
def test_a_file_that_is_not_a_progress_file_is_never_read_or_replaced(
    tmp_path, checkpoint, synthetic_data_dir, content
):
    output = tmp_path / "result.json"
    foreign = progress_path(output)
    foreign.write_bytes(content)
    result = evaluate(checkpoint, synthetic_data_dir, output)
    assert result.exit_code != 0
    assert "refusing to replace" in result.output and foreign.name in result.output
    assert foreign.read_bytes() == content and not output.exists()


def test_without_output_nothing_is_kept(tmp_path, monkeypatch, checkpoint, synthetic_data_dir):
    monkeypatch.chdir(tmp_path)
    stop_at_batch(monkeypatch, 2, KeyboardInterrupt())
    result = runner.invoke(
        app,
        ["evaluate", "--checkpoint", str(checkpoint), "--data-dir", str(synthetic_data_dir),
         "--no-download", *SETTINGS],
    )  # fmt: skip
    assert result.exit_code == 130
    assert "progress" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_a_damaged_progress_file_is_one_line_and_kept(
    tmp_path, monkeypatch, checkpoint, synthetic_data_dir
):
    """A progress file whose settings match but whose scores do not fit them (cut short, edited)
    is refused in one line, never resumed from or replaced."""
    from safetensors.torch import load_file, save_file

    output = tmp_path / "result.json"
    stop_at_batch(monkeypatch, 5, KeyboardInterrupt())  # in repeat 2: both kinds of entry
    assert evaluate(checkpoint, synthetic_data_dir, output).exit_code == 130
    monkeypatch.undo()
    path = progress_path(output)
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    tensors = load_file(str(path))
    changes = {
        "current.nll": lambda t: t[:-1],  # one score short
        "current.generator": lambda t: t[:5],
        "current.kl": lambda t: t.float(),  # another dtype
        "current.recon": lambda t: t.reshape(2, -1),  # another shape
        "current.neg_elbo": lambda t: t * float("nan"),
        "current.posterior_means": lambda t: t[:, :1],  # another latent size
        "repeat0.nll": None,  # a score kind missing
    }
    for name, change in changes.items():
        damaged = dict(tensors)
        if change is None:
            del damaged[name]
        else:
            damaged[name] = change(tensors[name]).contiguous()
        save_file(damaged, str(path), metadata=metadata)
        before = path.read_bytes()
        result = evaluate(checkpoint, synthetic_data_dir, output)
        assert result.exit_code != 0 and "is damaged" in result.output, result.output
        assert "Traceback" not in result.output
        assert path.read_bytes() == before and not output.exists()


def test_ctrl_c_as_a_repeat_ends_keeps_consistent_progress(
    tmp_path, monkeypatch, checkpoint, synthetic_data_dir, uninterrupted
):
    """A stop between a repeat's end and its note: the progress written is of the batch before,
    never the ended repeat's scores under the next repeat's name."""
    monkeypatch.setattr(progress_module, "DEFAULT_INTERVAL", 0.0)
    monkeypatch.setattr(
        progress_module.EvaluationProgress,
        "repeat_done",
        lambda self, finished, last: (_ for _ in ()).throw(KeyboardInterrupt()),
    )
    output = tmp_path / "result.json"
    assert evaluate(checkpoint, synthetic_data_dir, output).exit_code == 130
    monkeypatch.undo()
    assert_resumes(checkpoint, synthetic_data_dir, output, 25, uninterrupted)


def test_a_model_without_a_likelihood_leaves_anothers_progress_alone(
    tmp_path, monkeypatch, checkpoint, synthetic_data_dir, gallery_runs
):
    output = tmp_path / "result.json"
    stop_at_batch(monkeypatch, 3, KeyboardInterrupt())
    assert evaluate(checkpoint, synthetic_data_dir, output).exit_code == 130
    monkeypatch.undo()
    saved = progress_path(output).read_bytes()
    autoencoder = gallery_runs["ae"] / "checkpoint_best.safetensors"
    result = evaluate(autoencoder, synthetic_data_dir, output)
    assert result.exit_code == 0, result.output
    assert "reconstruction" in json.loads(output.read_text())["protocol"]
    assert progress_path(output).read_bytes() == saved  # the VAE's evaluation can still finish


def test_a_gaussian_models_evaluation_resumes_too(tmp_path, monkeypatch, synthetic_data_dir):
    runs = tmp_path / "runs"
    trained = runner.invoke(
        app,
        ["train", "g", "--runs-dir", str(runs), "--data-dir", str(synthetic_data_dir), "--limit", "80",
         "--val-size", "40", "--epochs", "1", "--latent-dim", "3", "--hidden-sizes", "8",
         "--conv-widths", "4", "--likelihood", "mse", "--device", "cpu", "--no-download", "--quiet"],
    )  # fmt: skip
    assert trained.exit_code == 0, trained.output
    gaussian = runs / "g" / "checkpoint_best.safetensors"
    whole = tmp_path / "whole.json"
    assert evaluate(gaussian, synthetic_data_dir, whole).exit_code == 0
    output = tmp_path / "result.json"
    stop_at_batch(monkeypatch, 5, KeyboardInterrupt())
    assert evaluate(gaussian, synthetic_data_dir, output).exit_code == 130
    monkeypatch.undo()
    resumed = evaluate(gaussian, synthetic_data_dir, output)
    assert resumed.exit_code == 0, resumed.output
    assert "35 of 50" in resumed.output
    expected = figures(json.loads(whole.read_text()))
    assert "mse" in expected["metrics"] and "nll" not in expected["metrics"]
    assert figures(json.loads(output.read_text())) == expected
