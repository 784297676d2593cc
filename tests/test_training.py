import json
import os
import signal
from pathlib import Path

import pytest
import torch

from conftest import make_tiny_config
from vae.checkpoint import load_model, read_header, read_metadata, read_tensors
from vae.config import flag_of, load_config_file
from vae.errors import ConfigError, TrainingDiverged, TrainingInterrupted, VAEError
from vae.training import prepare_resume, train


def weights(path: Path) -> dict[str, torch.Tensor]:
    return read_tensors(path, "")


def run_dir(config, name: str) -> Path:
    return Path(config.train.runs_dir) / name


def test_training_writes_the_run_folder_and_lowers_validation_loss(tiny_config):
    tiny_config.train.epochs = 3
    result = train(tiny_config, run_dir(tiny_config, "basic"))
    folder = result.run_dir
    names = {p.name for p in folder.iterdir()}
    assert {
        "config.yaml",
        "checkpoint_best.safetensors",
        "checkpoint_last.safetensors",
        "metrics.jsonl",
        "images",
    } <= names
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert records[-1]["val_neg_elbo"] < records[0]["val_neg_elbo"]
    assert (folder / "images" / "samples_epoch_003.png").exists()
    assert (folder / "images" / "reconstructions_epoch_003.png").exists()
    best = read_metadata(result.best_path)
    assert best["kind"] == "best" and "config" in best
    assert read_header(result.best_path).training_state is None  # weights only
    assert read_header(result.last_path).training_state is not None


def test_saved_config_reproduces_the_run(tiny_config):
    first = train(tiny_config, run_dir(tiny_config, "first"))
    config = load_config_file(first.run_dir / "config.yaml")
    assert config.to_dict() == tiny_config.to_dict()
    second = train(config, run_dir(tiny_config, "second"))
    a, b = weights(first.last_path), weights(second.last_path)
    assert all(torch.equal(a[k], b[k]) for k in a if k.startswith("model."))


def resumable_config(config):
    config.train.epochs = 3
    config.train.lr_schedule = "cosine"
    config.objective.beta_warmup = "6steps"
    return config


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, synthetic_data_dir):
    """The uninterrupted run the interrupted ones are compared with (trained once: it is the
    same for every interruption point)."""
    runs = tmp_path_factory.mktemp("runs")
    config = resumable_config(make_tiny_config(synthetic_data_dir, runs))
    return train(config, runs / "reference")


@pytest.mark.parametrize("interrupt_at_step", [3, 4, 6])  # mid-epoch, epoch boundary, 2nd epoch
def test_interrupted_and_resumed_run_equals_uninterrupted(
    tiny_config, interrupt_at_step, uninterrupted
):
    resumable_config(tiny_config)
    reference = uninterrupted

    def ctrl_c(step: int) -> None:
        if step == interrupt_at_step:
            os.kill(os.getpid(), signal.SIGINT)

    folder = run_dir(tiny_config, "interrupted")
    with pytest.raises(TrainingInterrupted, match="--resume") as caught:
        train(tiny_config, folder, step_callback=ctrl_c)
    assert caught.value.exit_code == 130
    state = read_header(folder / "checkpoint_last.safetensors").training_state
    assert state["progress"]["step"] == interrupt_at_step
    data_dir = tiny_config.data.data_dir
    resumed = train(prepare_resume(folder, {"data_dir": data_dir}), folder, resume=True)
    expected, got = weights(reference.last_path), weights(resumed.last_path)
    assert expected.keys() == got.keys()
    for name in expected:
        if not name.startswith("rng."):
            assert torch.equal(expected[name], got[name]), name
    strip = lambda r: {k: v for k, v in r.items() if "second" not in k}  # noqa: E731
    assert [strip(r) for r in resumed.history] == [strip(r) for r in reference.history]
    assert (
        read_metadata(resumed.best_path)["validation"]
        == read_metadata(reference.best_path)["validation"]
    )


def test_ctrl_c_saves_a_loadable_last_checkpoint(tiny_config):
    folder = run_dir(tiny_config, "ctrl-c")
    # What was there before (a process started in the background of a shell ignores SIGINT).
    handler = signal.getsignal(signal.SIGINT)

    def ctrl_c(step: int) -> None:
        if step == 2:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TrainingInterrupted, match="saved .*checkpoint_last.safetensors"):
        train(tiny_config, folder, step_callback=ctrl_c)
    last = folder / "checkpoint_last.safetensors"
    load_model(last)
    assert read_header(last).training_state["progress"]["batch_in_epoch"] == 2
    assert signal.getsignal(signal.SIGINT) is handler  # handler restored


def test_nan_loss_stops_and_keeps_good_checkpoints(tiny_config, monkeypatch):
    import vae.trainer.loop as training_module

    folder = run_dir(tiny_config, "nan")
    saved = {}
    real_elbo_terms = training_module.elbo_terms

    def poisoned(*args, **kwargs):
        terms = real_elbo_terms(*args, **kwargs)
        if (
            torch.is_grad_enabled()
            and len(saved) == 0
            and (folder / "checkpoint_last.safetensors").exists()
        ):
            # First training step of epoch 2: epoch 1's checkpoints exist; snapshot, then diverge.
            for name in ("checkpoint_best.safetensors", "checkpoint_last.safetensors"):
                saved[name] = (folder / name).read_bytes()
            terms.loss = terms.loss * float("nan")
        return terms

    monkeypatch.setattr(training_module, "elbo_terms", poisoned)
    with pytest.raises(TrainingDiverged, match="loss became nan at epoch 2, step 5.* intact"):
        train(tiny_config, folder)
    for name, content in saved.items():
        assert (folder / name).read_bytes() == content
    assert torch.isfinite(
        next(load_model(folder / "checkpoint_last.safetensors").parameters())
    ).all()


def test_nan_validation_stops_without_saving(tiny_config, monkeypatch):
    import vae.trainer.validation as training_module

    monkeypatch.setattr(
        training_module,
        "evaluate_elbo",
        lambda *a, **k: {"neg_elbo": float("nan"), "recon": 1.0, "kl": 1.0},
    )
    folder = run_dir(tiny_config, "nan-val")
    with pytest.raises(TrainingDiverged, match="validation -ELBO became nan"):
        train(tiny_config, folder)
    assert not (folder / "checkpoint_best.safetensors").exists()
    assert not (folder / "checkpoint_last.safetensors").exists()


def test_best_is_only_chosen_after_warmup(tiny_config):
    tiny_config.train.epochs = 3
    tiny_config.objective.beta_warmup = "2"
    result = train(tiny_config, run_dir(tiny_config, "warmup"))
    flags = [(r["warmup_done"], r["best"]) for r in result.history]
    assert flags[0] == (False, False)
    assert flags[1][0] and flags[1][1]  # first eligible epoch is best so far
    assert read_metadata(result.best_path)["epoch"] >= 2


def test_warmup_longer_than_the_run_still_leaves_a_best_checkpoint(tiny_config):
    tiny_config.objective.beta_warmup = "10"
    result = train(tiny_config, run_dir(tiny_config, "long-warmup"))
    assert read_metadata(result.best_path)["epoch"] == tiny_config.train.epochs
    assert result.progress.best_epoch == tiny_config.train.epochs
    assert result.progress.best_val == result.history[-1]["val_neg_elbo"]


def test_existing_run_folder_is_never_overwritten(tiny_config):
    folder = run_dir(tiny_config, "exists")
    folder.mkdir(parents=True)
    (folder / "precious.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="already exists"):
        train(tiny_config, folder)
    assert (folder / "precious.txt").read_text() == "keep me"


def test_resume_rejects_changed_options(tiny_config):
    result = train(tiny_config, run_dir(tiny_config, "fixed"))
    with pytest.raises(ConfigError, match="^lr cannot change on resume") as refused:
        prepare_resume(result.run_dir, {"lr": 0.5})  # the library speaks of settings ...
    assert refused.value.render(flag_of).startswith("--lr cannot change on --resume (only --bf16")
    (result.run_dir / "config.yaml").unlink()  # the checkpoint carries its own configuration
    extended = prepare_resume(result.run_dir, {"epochs": 3, "data_dir": tiny_config.data.data_dir})
    assert extended.train.epochs == 3
    more = train(extended, result.run_dir, resume=True)
    assert [r["epoch"] for r in more.history] == [1, 2, 3]
    assert load_config_file(result.run_dir / "config.yaml").train.epochs == 3


def test_gaussian_likelihood_reports_mse(tiny_config):
    tiny_config.objective.likelihood = "mse"
    tiny_config.train.epochs = 1
    result = train(tiny_config, run_dir(tiny_config, "mse"))
    record = result.history[-1]
    assert 0 <= record["val_mse"] <= 1
    assert read_metadata(result.best_path)["data"]["binarize"] == "none"


def test_resuming_a_finished_run_changes_nothing(tiny_config):
    tiny_config.objective.beta_warmup = (
        "10"  # best comes from the fallback, best_val unset in state
    )
    result = train(tiny_config, run_dir(tiny_config, "finished"))
    before = result.best_path.read_bytes()
    again = train(
        prepare_resume(result.run_dir, {"data_dir": tiny_config.data.data_dir}),
        result.run_dir,
        resume=True,
    )
    assert again.best_path.read_bytes() == before
    assert [r["epoch"] for r in again.history] == [1, 2]


def test_compiled_training_matches_eager_and_saves_plain_checkpoints(tiny_config):
    tiny_config.train.bf16 = False  # compare like with like: float32 both ways
    tiny_config.train.epochs = 1
    tiny_config.train.sample_every = 0
    eager = train(tiny_config, run_dir(tiny_config, "eager"))
    tiny_config.train.compile = True
    compiled = train(tiny_config, run_dir(tiny_config, "compiled"))
    assert read_metadata(compiled.best_path)["config"]["train"]["compile"] is True
    # Plain tensor names (no torch.compile "_orig_mod." prefix): any command loads it.
    plain, fused = load_model(eager.last_path), load_model(compiled.last_path)
    for (name, expected), (other, got) in zip(
        plain.state_dict().items(), fused.state_dict().items(), strict=True
    ):
        assert name == other
        torch.testing.assert_close(got, expected, rtol=1e-3, atol=1e-4)
    assert compiled.history[-1]["val_neg_elbo"] == pytest.approx(
        eager.history[-1]["val_neg_elbo"], rel=1e-4
    )


def test_a_failed_compilation_is_one_error_that_says_what_to_do(tiny_config, monkeypatch):
    from torch._dynamo.exc import BackendCompilerFailed

    class FailsToCompile(torch.nn.Module):
        def forward(self, *args, **kwargs):
            raise BackendCompilerFailed(lambda: None, RuntimeError("no C++ compiler found"), None)

    monkeypatch.setattr(torch, "compile", lambda module: FailsToCompile())
    tiny_config.train.compile = True
    with pytest.raises(
        VAEError, match=r"^compile failed \(.*no C\+\+ compiler found.*\); train without compile$"
    ) as failed:
        train(tiny_config, run_dir(tiny_config, "broken"))
    assert failed.value.render(flag_of).endswith("); train without --compile")
