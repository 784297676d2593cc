"""The public Python API (docs/python.md): ``vae.load`` and a model's methods compute what the
commands compute (samples bit-equal to ``generate``, scores equal to ``evaluate``'s), and
``vae.train`` trains on images in memory as ``train`` does on a ``folder:`` dataset."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import vae
from tests.conftest import REPO, one_line_error
from vae.checkpoint import build_metadata, read_checkpoint, save_checkpoint
from vae.config import DataConfig
from vae.data import images_in_memory, load_splits
from vae.errors import CheckpointError, ConfigError, DataError, VAEError
from vae.evaluation import evaluate_images
from vae.model import build_model
from vae.objectives import gaussian_kl
from vae.sampling import sample_images
from vae.spec import ModelSpec

SHIPPED = REPO / "pretrained" / "checkpoint_best.safetensors"  # a VAE with a mixture prior
SHIPPED_AE = REPO / "pretrained" / "ae" / "checkpoint_best.safetensors"
SHIPPED_STANDARD = REPO / "pretrained" / "standard-prior" / "checkpoint_best.safetensors"

# Sizes that train in about a second (tests/conftest.py's TRAINED_RUN_FLAGS).
TINY = dict(
    epochs=1, latent_dim=4, hidden_sizes=[16], conv_widths=[4, 8], batch_size=40,
    prior_components=3, beta_warmup="1", device="cpu",
)  # fmt: skip


def one_line(error: pytest.ExceptionInfo, *fragments: str) -> str:
    """The raised VAEError's message: one line holding every fragment."""
    message = str(error.value)
    assert isinstance(error.value, VAEError) and "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


def blobs(count: int = 300, seed: int = 0) -> torch.Tensor:
    """uint8 images [count, 1, 28, 28]: a disc of a random place and size each."""
    generator = torch.Generator().manual_seed(seed)
    rows = torch.arange(28).view(1, 28, 1).float()
    columns = torch.arange(28).view(1, 1, 28).float()
    centres = torch.randint(8, 20, (count, 2, 1, 1), generator=generator).float()
    radius = torch.randint(3, 8, (count, 1, 1), generator=generator).float()
    inside = (rows - centres[:, 0]) ** 2 + (columns - centres[:, 1]) ** 2 <= radius**2
    return (inside.to(torch.uint8) * 255).unsqueeze(1)


@pytest.fixture(scope="module")
def shipped() -> vae.Model:
    return vae.load(SHIPPED)


@pytest.fixture(scope="module")
def drawn(shipped: vae.Model) -> torch.Tensor:
    """16 grey uint8 images the shipped model draws (a test image set without a dataset)."""
    return (shipped.sample(16, seed=5) * 255).round().to(torch.uint8)


@pytest.fixture(scope="module")
def memory_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-epoch run on 300 images in a tensor (read-only: copy it to change it)."""
    run = vae.train(blobs(), run_dir=tmp_path_factory.mktemp("api") / "run", quiet=True, **TINY)
    return run.run_dir


# --- import and load ---------------------------------------------------------------------------


def test_importing_vae_imports_no_torch_until_the_api_is_used() -> None:
    code = (
        "import sys, vae\n"
        "assert 'torch' not in sys.modules\n"
        "assert issubclass(vae.VAEError, Exception) and 'torch' not in sys.modules\n"
        "assert {'load', 'train', 'Model', 'VAEError'} <= set(dir(vae))\n"
        "vae.load\n"
        "assert 'torch' in sys.modules\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
    with pytest.raises(AttributeError, match="no attribute 'lod'"):
        vae.lod  # noqa: B018


@pytest.mark.parametrize(
    ("path", "family", "prior"),
    [(SHIPPED, "vae", "mog"), (SHIPPED_STANDARD, "vae", "standard"), (SHIPPED_AE, "ae", None)],
)
def test_load_reads_every_family(path: Path, family: str, prior: str | None) -> None:
    model = vae.load(path, device="cpu")
    assert (model.family, model.prior, model.likelihood) == (family, prior, "bce")
    assert model.image_shape == (1, 28, 28) and model.device == torch.device("cpu")
    assert model.sha256 == read_checkpoint(path).sha256
    assert model.metadata["data"]["dataset"] == "mnist"
    assert isinstance(model.module, torch.nn.Module)


def test_load_takes_a_run_folder(memory_run: Path) -> None:
    model = vae.load(memory_run)
    assert model.path == memory_run / "checkpoint_best.safetensors"


def test_a_missing_or_foreign_checkpoint_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError) as error:
        vae.load(tmp_path / "none.safetensors")
    one_line(error, "not found")
    (tmp_path / "foreign.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError) as error:
        vae.load(tmp_path / "foreign.safetensors")
    one_line(error, "foreign.safetensors")
    with pytest.raises(ConfigError) as error:
        vae.load(None)  # type: ignore[arg-type]
    one_line(error, "invalid value for checkpoint", "expected a path")


# --- sample, encode, decode --------------------------------------------------------------------


@pytest.mark.parametrize("path", [SHIPPED, SHIPPED_AE])
@pytest.mark.parametrize(("seed", "temperature"), [(0, 1.0), (7, 0.6)])
def test_sample_is_bit_equal_to_what_generate_draws(path: Path, seed: int, temperature: float):
    model = vae.load(path)
    images = model.sample(16, seed=seed, temperature=temperature)
    generated = torch.from_numpy(sample_images(path, 16, seed, temperature, device="cpu"))
    assert images.shape == (16, 1, 28, 28) and images.dtype == torch.float32
    assert torch.equal(images, generated)
    assert not torch.equal(images, model.sample(16, seed=seed + 1, temperature=temperature))


def test_sample_arguments_are_checked(shipped: vae.Model) -> None:
    for call, name in (
        (lambda: shipped.sample(0), "n"),
        (lambda: shipped.sample(2, seed=-1), "seed"),
        (lambda: shipped.sample(2, temperature=float("inf")), "temperature"),
        (lambda: shipped.sample(2.5), "n"),  # type: ignore[arg-type]
    ):
        with pytest.raises(ConfigError) as error:
            call()
        one_line(error, f"invalid value for {name}:")


def test_encode_and_decode_shapes(shipped: vae.Model, drawn: torch.Tensor) -> None:
    posterior = shipped.encode(drawn)
    assert posterior.mean.shape == posterior.variance.shape == (16, 32)
    assert bool((posterior.variance > 0).all())
    with torch.no_grad():
        mean, logvar = shipped.module.encode(drawn.float() / 255)
    torch.testing.assert_close(posterior.mean, mean)
    torch.testing.assert_close(posterior.variance, logvar.exp())
    decoded = shipped.decode(posterior.mean)
    assert decoded.shape == (16, 1, 28, 28) and 0 <= decoded.min() and decoded.max() <= 1
    torch.testing.assert_close(shipped.reconstruct(drawn), decoded)
    assert shipped.decode(posterior.mean[0]).shape == (1, 1, 28, 28)  # one code
    # uint8 images are divided by 255; float ones taken as given; [N, H, W] for grey models.
    same = shipped.encode(drawn.float().div(255)[:, 0])
    torch.testing.assert_close(same.mean, posterior.mean)


def test_an_autoencoders_code_has_no_variance() -> None:
    model = vae.load(SHIPPED_AE)
    posterior = model.encode(model.sample(4, seed=1))
    assert posterior.mean.shape == (4, model.latent_dim) and posterior.variance is None
    assert model.decode(posterior.mean).shape == (4, 1, 28, 28)


@pytest.mark.parametrize(
    ("images", "fragment"),
    [
        (torch.zeros(2, 3, 28, 28), "the model takes [N, 1, 28, 28]"),
        (torch.full((2, 1, 28, 28), 2.0), "finite values in [0, 1]"),
        (torch.zeros(2, 1, 28, 28, dtype=torch.int32), "uint8 or float"),
        ([[0.0]], "tensor or NumPy array"),
    ],
)
def drawn_that_do_not_fit_are_one_line(shipped: vae.Model, images, fragment: str) -> None:
    with pytest.raises(DataError) as error:
        shipped.encode(images)
    one_line(error, fragment)
    with pytest.raises(DataError) as error:
        shipped.decode(torch.zeros(2, 5))
    one_line(error, "[N, 32]")


# --- scores equal to evaluate's ------------------------------------------------------------------


@pytest.mark.parametrize("binarize", [True, False])
def test_elbo_is_evaluates_figure_with_the_models_own_prior(
    shipped: vae.Model, drawn: torch.Tensor, binarize: bool
) -> None:
    summary, _, _ = evaluate_images(
        shipped.module, drawn, k=20, seed=3, binarize="static" if binarize else "none"
    )
    terms = shipped.elbo(drawn, k=20, seed=3, binarize=binarize)
    assert terms.neg_elbo.shape == terms.kl.shape == terms.reconstruction.shape == (16,)
    figures = summary["metrics"]
    assert float(terms.neg_elbo.mean()) == figures["neg_elbo"]["mean"]
    assert float(terms.reconstruction.mean()) == figures["recon"]["mean"]
    assert float(terms.kl.mean()) == figures["kl"]["mean"]
    torch.testing.assert_close(terms.neg_elbo, terms.reconstruction + terms.kl)
    # The trap of scoring by hand: the KL to N(0, I) is not this model's KL (a mixture prior).
    with torch.no_grad():
        mean, logvar = shipped.module.encode(drawn.float() / 255)
    standard_kl = gaussian_kl(mean, logvar).sum(1).double()
    assert abs(float(standard_kl.mean() - terms.kl.mean())) > 1.0


def test_float_images_score_as_the_uint8_images_they_equal(
    shipped: vae.Model, drawn: torch.Tensor
) -> None:
    as_float = drawn.float() / 255
    for binarize in (False, True):
        got = shipped.elbo(as_float, k=5, binarize=binarize).neg_elbo
        assert torch.equal(got, shipped.elbo(drawn, k=5, binarize=binarize).neg_elbo)
    assert not torch.equal(
        shipped.elbo(drawn, k=5).neg_elbo, shipped.elbo(drawn, k=5, binarize=True).neg_elbo
    )


def test_log_likelihood_is_minus_evaluates_nll(shipped: vae.Model, drawn: torch.Tensor) -> None:
    summary, _, _ = evaluate_images(shipped.module, drawn, k=30, seed=1)  # static
    log_likelihood = shipped.log_likelihood(drawn, k=30, seed=1, binarize=True)
    assert log_likelihood.shape == (16,) and log_likelihood.dtype == torch.float64
    assert -float(log_likelihood.mean()) == summary["metrics"]["nll"]["mean"]
    elbo = shipped.elbo(drawn, k=30, seed=1, binarize=True)
    assert bool((log_likelihood >= -elbo.neg_elbo - 1e-6).all())  # the bound holds per image


def test_score_arguments_are_checked(shipped: vae.Model, drawn: torch.Tensor) -> None:
    with pytest.raises(ConfigError) as error:
        shipped.elbo(drawn, k=0)
    one_line(error, "invalid value for k: 0")
    with pytest.raises(ConfigError) as error:
        shipped.log_likelihood(drawn, batch_size=0)
    one_line(error, "invalid value for batch_size")


def test_an_autoencoder_has_no_elbo_but_a_reconstruction_error() -> None:
    model = vae.load(SHIPPED_AE)
    images = model.sample(4, seed=2)
    for method in (model.elbo, model.log_likelihood):
        with pytest.raises(VAEError) as error:
            method(images)
        one_line(error, "an autoencoder has no likelihood", "reconstruction_error")
    errors = model.reconstruction_error(images)
    assert errors.shape == (4,) and bool((errors > 0).all())


def gaussian_model(path: Path) -> vae.Model:
    """A freshly initialised mse VAE saved at ``path``, loaded through the API."""
    spec = ModelSpec(architecture="mlp", latent_dim=3, channels=1, height=8, width=8,
                     likelihood="mse", hidden_sizes=[8])  # fmt: skip
    torch.manual_seed(0)
    model = build_model(spec)
    metadata = build_metadata(model=model, data_info={"dataset": "mnist"},
                              config={"objective": {"gaussian_sigma": 0.2}}, epoch=1, step=1,
                              validation=None, kind="best", run_name="mse")  # fmt: skip
    save_checkpoint(path, model, metadata)
    return vae.load(path)


def test_a_gaussian_model_has_an_elbo_but_no_log_likelihood(tmp_path: Path) -> None:
    model = gaussian_model(tmp_path / "mse.safetensors")
    images = torch.rand(3, 1, 8, 8)
    summary, _, _ = evaluate_images(model.module, images.mul(255).round().to(torch.uint8),
                                    k=4, gaussian_sigma=0.2)  # fmt: skip
    terms = model.elbo(images.mul(255).round().div(255), k=4)
    assert float(terms.neg_elbo.mean()) == summary["metrics"]["neg_elbo"]["mean"]
    with pytest.raises(VAEError) as error:
        model.log_likelihood(images)
    one_line(error, "no likelihood of the images", "use elbo")
    with pytest.raises(ConfigError) as error:
        model.elbo(images, binarize=True)
    one_line(error, "binarize", "mse")


# --- save ---------------------------------------------------------------------------------------


def test_save_and_load_round_trip(shipped: vae.Model, tmp_path: Path) -> None:
    target = shipped.save(tmp_path / "copy.safetensors")
    again = vae.load(target)
    original, copied = shipped.module.state_dict(), again.module.state_dict()
    assert original.keys() == copied.keys()
    assert all(torch.equal(original[name], copied[name]) for name in original)
    assert torch.equal(again.sample(8, seed=4), shipped.sample(8, seed=4))
    assert again.metadata["model"] == shipped.metadata["model"]
    assert again.metadata["data"] == shipped.metadata["data"]
    # The shipped file is format 1; its copy is written under today's names and format.
    assert (
        again.metadata["format_version"] == 2 and read_checkpoint(target).header.format_version == 2
    )
    from vae.cli import app

    result = CliRunner().invoke(app, ["info", str(target)])
    assert result.exit_code == 0 and "mog" in result.output
    assert shipped.save(target) == target  # an earlier checkpoint is replaced


def test_save_replaces_no_file_but_a_checkpoint(shipped: vae.Model, tmp_path: Path) -> None:
    notes = tmp_path / "notes.safetensors"
    notes.write_text("my notes")
    with pytest.raises(VAEError) as error:
        shipped.save(notes)
    one_line(error, "refusing to replace", "not a vae checkpoint")
    assert notes.read_text() == "my notes"
    with pytest.raises(VAEError) as error:
        shipped.save(tmp_path)
    one_line(error, "is a folder")


# --- train --------------------------------------------------------------------------------------


def test_train_on_a_tensor_splits_it_as_a_folder_is(memory_run: Path, tmp_path: Path) -> None:
    data = vae.load(memory_run).metadata["data"]
    assert data["dataset"] == "memory:tensor"
    assert (data["num_train"], data["num_val"], data["num_test"]) == (243, 27, 30)
    assert (memory_run / "config.yaml").read_text().count("dataset: memory:tensor") == 1
    # The same images as files under folder: give the same splits, so the same fingerprint.
    folder = tmp_path / "pictures"
    folder.mkdir()
    for index, image in enumerate(blobs()):
        Image.fromarray(image[0].numpy()).save(folder / f"{index:03d}.png")
    config = DataConfig(dataset=f"folder:{folder}", image_size=28, channels=1,
                        cache_dir=str(tmp_path / "cache"))  # fmt: skip
    from_files = load_splits(config, "bce").info
    assert from_files["fingerprint"] == data["fingerprint"]
    assert (from_files["num_train"], from_files["num_val"]) == (243, 27)


def test_a_float_tensor_is_stored_quantized_to_8_bits() -> None:
    values = torch.rand(4, 1, 6, 6, dtype=torch.float64)
    stored = images_in_memory(values).images
    assert stored.dtype == torch.uint8
    assert torch.equal(stored, (values * 255).round().to(torch.uint8))
    assert torch.equal(images_in_memory(values.numpy()).images, stored)
    with pytest.raises(DataError) as error:
        images_in_memory(values * 2)
    one_line(error, "[0, 1]", "8-bit")


class Labelled(torch.utils.data.Dataset):
    """Items as torchvision's MNIST gives them without a transform: (PIL image, int label)."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return Image.fromarray(self.images[index, 0].numpy()), index % 10


def test_train_on_a_dataset_of_images_with_labels(tmp_path: Path) -> None:
    images = blobs(200, seed=1)
    dataset = Labelled(images)
    held = images_in_memory(dataset)
    assert torch.equal(held.images, images)
    assert held.labels.tolist() == [index % 10 for index in range(200)]
    run = vae.train(dataset, run_dir=tmp_path / "run", quiet=True, **TINY)
    model = run.load()
    assert model.metadata["data"]["dataset"] == "memory:Labelled"
    assert model.metadata["data"]["num_test"] == 20
    assert run.epochs_done == 1 and len(run.history) == 1
    # Float tensors [C, H, W] with tensor labels, named: the same images, other labels.
    floats = torch.utils.data.TensorDataset(
        images.float() / 255, torch.zeros(200, dtype=torch.long)
    )
    other = vae.train(floats, run_dir=tmp_path / "floats", data_name="blobs", quiet=True, **TINY)
    data = other.load().metadata["data"]
    assert data["dataset"] == "memory:blobs"
    assert data["fingerprint"] != model.metadata["data"]["fingerprint"]  # labels are hashed


def test_a_dataset_whose_items_do_not_fit_is_one_line() -> None:
    images = blobs(3)
    mixed = [(images[0], 1), (images[1, :, :20], 2)]
    with pytest.raises(DataError) as error:
        images_in_memory(mixed)
    one_line(error, "data item 1", "one size")
    with pytest.raises(DataError) as error:
        images_in_memory([(images[0], 1), images[1]])
    one_line(error, "data item 1 has no label")
    with pytest.raises(DataError) as error:
        images_in_memory([(images[0], "cat")])
    one_line(error, "whole numbers")
    with pytest.raises(DataError) as error:
        vae.train("images", run_dir="unused")
    one_line(error, "Dataset of images")


def test_train_takes_a_named_dataset_as_the_command_does(
    synthetic_data_dir: Path, tmp_path: Path
) -> None:
    run = vae.train(run_dir=tmp_path / "run", dataset="mnist", data_dir=str(synthetic_data_dir),
                    download=False, limit=120, val_size=40, quiet=True, **TINY)  # fmt: skip
    assert run.load().metadata["data"]["dataset"] == "mnist"


def test_settings_are_checked_by_their_python_names(tmp_path: Path) -> None:
    images = blobs(20)
    for settings, fragments in (
        ({"latnt_dim": 3}, ("unknown setting 'latnt_dim'", "did you mean latent_dim")),
        ({"latent_dim": 0}, ("invalid value for latent_dim: 0",)),
        ({"latent_dim": "four"}, ("invalid value for latent_dim",)),
        ({"dataset": "mnist", "data_dir": "x"}, ("leave out data_dir, dataset",)),
        ({"free_bits": 1.0}, ("free_bits", "prior standard")),
    ):
        with pytest.raises(ConfigError) as error:
            vae.train(images, run_dir=tmp_path / "run", **settings)
        one_line(error, *fragments)
    with pytest.raises(ConfigError) as error:
        vae.train(run_dir=tmp_path / "run", data_name="blobs")
    one_line(error, "give data too")
    assert not (tmp_path / "run").exists()


def copied(run: Path, tmp_path: Path) -> Path:
    target = tmp_path / run.name
    shutil.copytree(run, target)
    return target


def test_resume_with_the_same_images_continues_the_run(memory_run: Path, tmp_path: Path):
    run_dir = copied(memory_run, tmp_path)
    run = vae.train(blobs(), run_dir=run_dir, resume=True, epochs=2, quiet=True)
    assert run.epochs_done == 2 and [record["epoch"] for record in run.history] == [1, 2]
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 2


def test_resume_with_other_images_is_refused_and_changes_nothing(
    memory_run: Path, tmp_path: Path
) -> None:
    run_dir = copied(memory_run, tmp_path)
    before = {path.name: path.read_bytes() for path in run_dir.glob("*.*")}
    other = blobs()
    other[0] = 255 - other[0]  # one image differs: same sizes, another fingerprint
    for data, fragments in (
        (other, ("not the ones it was trained on", "content hash")),
        (blobs()[:250], ("num_train 198 where the run had 243",)),
        (None, ("trained on images given in Python (memory:tensor)", "same images")),
    ):
        with pytest.raises(ConfigError) as error:
            vae.train(data, run_dir=run_dir, resume=True, epochs=2, quiet=True)
        one_line(error, *fragments)
    with pytest.raises(ConfigError) as error:
        vae.train(blobs(), run_dir=run_dir, resume=True, data_name="other", epochs=2)
    one_line(error, "data_name cannot change on resume")
    with pytest.raises(ConfigError) as error:
        vae.train(blobs(), run_dir=run_dir, resume=True, latent_dim=8)
    one_line(error, "latent_dim cannot change on resume")
    assert {path.name: path.read_bytes() for path in run_dir.glob("*.*")} == before


def test_a_run_on_a_named_dataset_resumes_without_data(trained_run: Path, tmp_path: Path):
    with pytest.raises(ConfigError) as error:
        vae.train(blobs(), run_dir=copied(trained_run, tmp_path), resume=True, epochs=3)
    one_line(error, "trained on mnist, which vae reads itself", "without data")


def test_commands_take_a_memory_runs_images_with_input(memory_run: Path, tmp_path: Path):
    from vae.cli import app

    checkpoint = str(memory_run / "checkpoint_best.safetensors")
    result = CliRunner().invoke(app, ["evaluate", "--checkpoint", checkpoint, "--k", "2"])
    one_line_error(result, 1, "trained on images given in Python (memory:tensor)", "--input")
    result = CliRunner().invoke(app, ["train", "--resume", str(copied(memory_run, tmp_path))])
    one_line_error(result, 2, "images given in Python", "vae.train(data=")
    folder = tmp_path / "pngs"
    folder.mkdir()
    for index, image in enumerate(blobs(5, seed=3)):
        Image.fromarray(image[0].numpy()).save(folder / f"{index}.png")
    figures = tmp_path / "figures.json"
    result = CliRunner().invoke(app, ["evaluate", "--checkpoint", checkpoint, "--k", "2",
                                      "--input", str(folder), "--output", str(figures), "--quiet",
                                      "--device", "cpu"])  # fmt: skip
    assert result.exit_code == 0, result.output
    # The same figures from Python, on the same images (evaluate binarizes them: its protocol
    # for a model trained on binarized images).
    model = vae.load(checkpoint)
    metrics = json.loads(figures.read_text())["metrics"]
    terms = model.elbo(blobs(5, seed=3), k=2, binarize=True)
    assert float(terms.neg_elbo.mean()) == metrics["neg_elbo"]["mean"]
    log_likelihood = model.log_likelihood(blobs(5, seed=3), k=2, binarize=True)
    assert -float(log_likelihood.mean()) == metrics["nll"]["mean"]
