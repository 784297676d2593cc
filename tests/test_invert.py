"""Dark digits on white paper, shown to a model trained on white digits on black: one warning
naming ``--invert``, and ``--invert`` (the explorer's Invert box) turning them into what the model
knows (issue 29)."""

from __future__ import annotations

import base64
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from starlette.testclient import TestClient
from typer.testing import CliRunner

from vae.backgrounds import background_warning, border_brightness, draws_dark_backgrounds
from vae.checkpoint import load_model
from vae.cli import app
from vae.data import read_image_files
from vae.explore.app import build_app
from vae.explore.decoder import Decoder
from vae.explore.encoder import Encoder
from vae.reporting import Reporter

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "pretrained" / "checkpoint_best.safetensors"
IMAGES = 12


def _test_digits(data_dir: Path) -> np.ndarray:
    """The synthetic MNIST test images (white shapes on black), uint8 [N, 28, 28]."""
    raw = (data_dir / "MNIST" / "raw" / "t10k-images-idx3-ubyte").read_bytes()
    return np.frombuffer(raw[16:], np.uint8).reshape(-1, 28, 28)[:IMAGES]


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _folder(folder: Path, images: np.ndarray) -> Path:
    folder.mkdir()
    for index, image in enumerate(images):
        (folder / f"{index:02d}.png").write_bytes(_png(image))
    return folder


@pytest.fixture
def digits(tmp_path, synthetic_data_dir) -> dict[str, Path]:
    """Two folders of the same digits: ``dark`` (as trained, white on black) and ``light``
    (inverted: black on white, as drawn on paper)."""
    images = _test_digits(synthetic_data_dir)
    return {
        "dark": _folder(tmp_path / "dark", images),
        "light": _folder(tmp_path / "light", 255 - images),
    }


def _warnings(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("warning:")]


def test_backgrounds_are_read_from_what_the_model_draws_not_from_its_dataset(digits):
    model = load_model(SHIPPED, "cpu")
    dark = read_image_files(sorted(digits["dark"].iterdir()), 28, 1)
    light = read_image_files(sorted(digits["light"].iterdir()), 28, 1)
    assert (border_brightness(dark) == 0).all() and (border_brightness(light) == 1).all()
    # A float image's scale is 0-1, a uint8 image's 0-255: the same brightness either way.
    torch.testing.assert_close(border_brightness(light.float() / 255), border_brightness(light))
    assert draws_dark_backgrounds(model)
    assert "pass --invert" in background_warning(model, light, inverted=False)
    # The same MNIST checkpoint with its last layer negated draws every image inverted
    # (sigmoid(-x) = 1 - sigmoid(x)): black on white, like the light digits, which it is not
    # warned about.
    with torch.no_grad():
        model.decoder.output.weight.neg_()
        model.decoder.output.bias.neg_()
    assert not draws_dark_backgrounds(model)
    assert background_warning(model, light, inverted=False) is None


def test_inference_of_light_inputs_warns_once_and_invert_silences_it(digits, tmp_path):
    command = ["inference", "--checkpoint", str(SHIPPED), "--mode", "reconstruct",
               "--num-images", str(IMAGES), "--grid-size", "4"]  # fmt: skip
    light = CliRunner().invoke(
        app, [*command, "--input", str(digits["light"]), "--output-dir", str(tmp_path / "a")]
    )
    assert light.exit_code == 0, light.output
    assert _warnings(light.output) == [
        f"warning: {IMAGES} of {IMAGES} input images have light backgrounds, but the model was "
        "trained on dark ones: pass --invert to invert them (x -> 1 - x)"
    ], light.output
    inverted = CliRunner().invoke(
        app,
        [
            *command,
            "--input",
            str(digits["light"]),
            "--invert",
            "--output-dir",
            str(tmp_path / "b"),
        ],
    )
    assert inverted.exit_code == 0 and not _warnings(inverted.output), inverted.output
    # The originals row of the picture shows what the model was given: the dark digits.
    with (
        Image.open(tmp_path / "a" / "reconstructions.png") as a,
        Image.open(tmp_path / "b" / "reconstructions.png") as b,
    ):
        first_a = np.asarray(a.convert("L"))[2:30, 2:30]
        first_b = np.asarray(b.convert("L"))[2:30, 2:30]
    np.testing.assert_array_equal(first_b, 255 - first_a)
    dark = CliRunner().invoke(
        app, [*command, "--input", str(digits["dark"]), "--output-dir", str(tmp_path / "c")]
    )
    assert dark.exit_code == 0 and not _warnings(dark.output), dark.output


def test_invert_of_dark_inputs_says_to_leave_it_out(digits, tmp_path):
    result = CliRunner().invoke(
        app,
        ["inference", "--checkpoint", str(SHIPPED), "--mode", "reconstruct",
         "--input", str(digits["dark"]), "--invert", "--num-images", "4", "--grid-size", "4",
         "--output-dir", str(tmp_path)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert _warnings(result.output) == [
        "warning: 4 of 4 input images have light backgrounds after --invert, but the model was "
        "trained on dark ones: leave out --invert"
    ]


def test_a_few_light_images_among_dark_ones_are_not_warned_about(digits, tmp_path):
    # Two light images of IMAGES + 2: the user's choice, not a folder of the wrong colours.
    for name in ("00.png", "01.png"):
        (digits["dark"] / f"light-{name}").write_bytes((digits["light"] / name).read_bytes())
    result = CliRunner().invoke(
        app,
        ["inference", "--checkpoint", str(SHIPPED), "--mode", "reconstruct",
         "--input", str(digits["dark"]), "--num-images", "4", "--grid-size", "4",
         "--output-dir", str(tmp_path)],
    )  # fmt: skip
    assert result.exit_code == 0 and not _warnings(result.output), result.output


def _evaluate(checkpoint: str, folder: Path, output: Path, *extra: str):
    result = CliRunner().invoke(
        app,
        ["evaluate", "--checkpoint", checkpoint, "--input", str(folder), "--k", "4",
         "--device", "cpu", "--quiet", "--output", str(output), *extra],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return result, json.loads(output.read_text())


def test_evaluate_warns_of_light_inputs_and_inverted_ones_score_far_better(digits, tmp_path):
    checkpoint = str(SHIPPED)
    plain, as_given = _evaluate(checkpoint, digits["light"], tmp_path / "plain.json")
    assert len(_warnings(plain.output)) == 1, plain.output
    assert f"{IMAGES} of {IMAGES} input images have light backgrounds" in plain.output
    fixed, inverted = _evaluate(checkpoint, digits["light"], tmp_path / "inv.json", "--invert")
    assert not _warnings(fixed.output), fixed.output
    assert (as_given["inverted"], inverted["inverted"]) == (False, True)
    # Inverted, they are the images the model knows: a fraction of the error (measured: -ELBO
    # 13,920 nats as given, 316 inverted).
    for metric in ("neg_elbo", "recon", "nll"):
        assert inverted["metrics"][metric]["mean"] < 0.1 * as_given["metrics"][metric]["mean"]
    # --invert gives the figures of the dark digits themselves.
    _, dark = _evaluate(checkpoint, digits["dark"], tmp_path / "dark.json")
    assert dark["metrics"]["neg_elbo"] == inverted["metrics"]["neg_elbo"]


def test_visualize_reads_invert_with_the_other_image_options(digits, tmp_path):
    command = ["visualize", "latent-map", "--checkpoint", str(SHIPPED),
               "--input", str(digits["light"])]  # fmt: skip
    light = CliRunner().invoke(app, [*command, "--output", str(tmp_path / "a.png")])
    assert light.exit_code == 0, light.output
    assert len(_warnings(light.output)) == 1 and "pass --invert" in light.output
    inverted = CliRunner().invoke(app, [*command, "--invert", "--output", str(tmp_path / "b.png")])
    assert inverted.exit_code == 0 and not _warnings(inverted.output), inverted.output


# --- the explorer's uploads --------------------------------------------------------------------


@pytest.fixture(scope="module")
def explorer(synthetic_data_dir) -> TestClient:
    """The shipped MNIST model's explorer, loaded."""
    encoder = Encoder(SHIPPED, data_dir=str(synthetic_data_dir), download=False)
    encoder.load(Reporter())
    return TestClient(build_app(Decoder(SHIPPED), encoder, Reporter()), base_url="http://127.0.0.1")


def _upload(client: TestClient, image: np.ndarray, query: str = ""):
    return client.post(
        f"/api/encode/upload{query}",
        content=_png(image),
        headers={"Content-Type": "application/octet-stream"},
    )


def _pixels(data_url: str) -> np.ndarray:
    encoded = data_url.removeprefix("data:image/png;base64,")
    with Image.open(io.BytesIO(base64.b64decode(encoded))) as picture:
        return np.asarray(picture)


def test_a_light_upload_is_named_on_the_page_and_the_invert_box_inverts_it(
    explorer, synthetic_data_dir
):
    digit = _test_digits(synthetic_data_dir)[0]
    light = _upload(explorer, 255 - digit)
    assert light.status_code == 200, light.text
    assert light.json()["warning"] == (
        "this image has a light background, but the model was trained on dark ones: tick "
        "Invert to invert it (x -> 1 - x)"
    )
    inverted = _upload(explorer, 255 - digit, "?invert=1")
    assert inverted.status_code == 200 and inverted.json()["warning"] is None
    np.testing.assert_array_equal(_pixels(inverted.json()["original"]), digit)
    # The inverted upload encodes as the dark digit does.
    assert inverted.json()["z"] == _upload(explorer, digit).json()["z"]
    assert _upload(explorer, digit).json()["warning"] is None
    assert "untick Invert" in _upload(explorer, digit, "?invert=1").json()["warning"]


@pytest.mark.parametrize("value", ["yes", "2", ""])
def test_the_invert_parameter_is_0_or_1(explorer, synthetic_data_dir, value):
    answer = _upload(explorer, _test_digits(synthetic_data_dir)[0], f"?invert={value}")
    assert answer.status_code == 400 and answer.json()["error"].startswith("invert must be 0 or 1")


def test_the_page_has_the_invert_box_and_sends_it(explorer):
    page = explorer.get("/").text
    script = explorer.get("/explore.js").text
    assert 'id="invert"' in page and 'id="upload-warning"' in page
    assert "/api/encode/upload?invert=" in script and "answer.warning" in script


def test_in_the_browser_a_light_upload_shows_the_line_and_the_box_inverts_it(
    synthetic_data_dir,
):
    sys.path.insert(0, str(REPO / "tools"))
    import explore_screenshot as tool

    if not tool.CHROMIUM.exists():
        pytest.skip(f"no Chromium at {tool.CHROMIUM}: apt-get install chromium (.ci/run does)")
    sync_api = pytest.importorskip("playwright.sync_api")
    light = _png(255 - _test_digits(synthetic_data_dir)[0])
    process, url = tool.start_explorer(
        "--checkpoint", str(SHIPPED), "--data-dir", str(synthetic_data_dir)
    )
    try:
        with sync_api.sync_playwright() as playwright:
            browser = tool.launch(playwright)
            try:
                page = browser.new_page()
                page.goto(url)
                page.wait_for_selector("#upload:not([disabled])", timeout=tool.TIMEOUT_MS)
                page.set_input_files(
                    "#upload",
                    files=[{"name": "digit.png", "mimeType": "image/png", "buffer": light}],
                )
                page.wait_for_selector("#upload-warning:not([hidden])", timeout=tool.TIMEOUT_MS)
                warned = page.text_content("#upload-warning")
                as_sent = page.get_attribute("#original", "src")
                page.check("#invert")  # encodes the chosen file again, inverted
                page.wait_for_function(
                    "(before) => document.querySelector('#original').src !== before",
                    arg=as_sent,
                    timeout=tool.TIMEOUT_MS,
                )
                inverted = page.get_attribute("#original", "src")
                page.wait_for_selector("#upload-warning[hidden]", state="attached")
            finally:
                browser.close()
    finally:
        process.terminate()
        process.communicate(timeout=30)
    assert "tick Invert" in warned
    assert (_pixels(inverted) == 255 - _pixels(as_sent)).all()
