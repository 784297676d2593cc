"""``vae explore``: the JSON API through Starlette's test client (every endpoint, bad inputs,
size limits), the torch-free start, the command's errors, and the installed command as a real
server (address, 50 concurrent decodes, Ctrl-C)."""

from __future__ import annotations

import base64
import io
import json
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient
from test_hostile_images import with_scans
from test_numpy_sampling import SPECS, write_checkpoint
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

import explore_screenshot  # noqa: E402

from conftest import one_line_error
from vae import numpy_sampling
from vae.cli import app as cli_app
from vae.data.decoding import MAX_JPEG_SCANS
from vae.explore.app import build_app
from vae.explore.decoder import Decoder, prior_moments
from vae.explore.encoder import MAP_NEEDS_TEST_IMAGES, Encoder
from vae.explore.requests import MAX_JSON_BYTES, MAX_UPLOAD_BYTES
from vae.explore.server import is_loopback
from vae.reporting import Reporter
from vae.sampling import draw_latents

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "pretrained" / "checkpoint_best.safetensors"
LATENT = 32  # the shipped model's


def client_for(checkpoint: Path, data_dir: Path | None, load: bool = True) -> TestClient:
    decoder = Decoder(checkpoint)
    encoder = Encoder(checkpoint, data_dir=str(data_dir) if data_dir else None, download=False)
    if load:
        encoder.load(Reporter())
    # The app answers only loopback Host headers (DNS rebinding): the client speaks as one.
    return TestClient(build_app(decoder, encoder, Reporter()), base_url="http://127.0.0.1")


@pytest.fixture(scope="module")
def client(synthetic_data_dir) -> TestClient:
    """The shipped model over the synthetic MNIST test set (60 images), fully loaded."""
    return client_for(SHIPPED, synthetic_data_dir)


JSON = {"Content-Type": "application/json"}  # what the page sends with every JSON body


def upload(client: TestClient, data: bytes, content_type: str = "application/octet-stream"):
    """An upload as the page sends it: the file itself as the body, of ``content_type``."""
    return client.post("/api/encode/upload", content=data, headers={"Content-Type": content_type})


def pixels(data_url: str) -> np.ndarray:
    prefix = "data:image/png;base64,"
    assert data_url.startswith(prefix)
    with Image.open(io.BytesIO(base64.b64decode(data_url[len(prefix) :]))) as picture:
        return np.asarray(picture)


def ico_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 40, 40)).save(buffer, format="ICO")
    return buffer.getvalue()


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


# --- the page ----------------------------------------------------------------------------------


def test_the_page_and_its_assets_are_served_and_nothing_else(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "/explore.js" in page.text and "http" not in page.text.split("<body>")[0].lower()
    for name, kind in (("explore.js", "text/javascript"), ("explore.css", "text/css")):
        answer = client.get(f"/{name}")
        assert answer.status_code == 200 and answer.headers["content-type"].startswith(kind)
    for path in ("/static/explore.js", "/../pyproject.toml", "/%2e%2e/vae/cli/explore.py",
                 "/pretrained/checkpoint_best.safetensors", "/api/nothing"):  # fmt: skip
        answer = client.get(path)
        assert answer.status_code == 404 and "error" in answer.json(), path
    assert client.get("/api/decode").status_code == 405


def test_only_loopback_host_names_are_answered(client):
    assert client.get("/api/model", headers={"host": "localhost:8000"}).status_code == 200
    assert client.get("/api/model", headers={"host": "evil.example:8000"}).status_code == 400
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")


def test_bodies_must_be_of_their_routes_type(client):
    digit = png_bytes(np.zeros((28, 28), np.uint8))
    # A form of another site can post text/plain, urlencoded or multipart bodies without asking.
    for kind in (None, "", "image/png", "text/plain", "multipart/form-data; boundary=x",
                 "application/x-www-form-urlencoded", "application/json"):  # fmt: skip
        headers = {} if kind is None else {"Content-Type": kind}
        answer = client.post("/api/encode/upload", content=digit, headers=headers)
        assert answer.status_code == 415, kind
        assert "Content-Type: application/octet-stream" in answer.json()["error"]
    zeros = json.dumps({"z": [0.0] * LATENT, "index": 0, "temperature": 1})
    for kind in (
        None,
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/octet-stream",
    ):
        headers = {} if kind is None else {"Content-Type": kind}
        for path in ("/api/decode", "/api/sample", "/api/encode/test", "/api/map/point",
                     "/api/interpolate"):  # fmt: skip
            answer = client.post(path, content=zeros, headers=headers)
            assert answer.status_code == 415, (kind, path)
            error = answer.json()["error"]
            assert "Content-Type: application/json" in error and "\n" not in error
    typed = {"Content-Type": "Application/JSON; charset=utf-8"}
    assert client.post("/api/decode", content=zeros, headers=typed).status_code == 200
    assert upload(client, digit, "application/octet-stream; name=x").status_code == 200


def test_requests_from_another_sites_pages_are_refused(client):
    digit = png_bytes(np.zeros((28, 28), np.uint8))
    octets = {"Content-Type": "application/octet-stream"}
    requests = (
        ("post", "/api/decode", {"json": {"z": [0.0] * LATENT}}, {}),
        ("post", "/api/encode/upload", {"content": digit}, octets),
        ("get", "/api/model", {}, {}),
        ("get", "/", {}, {}),
    )
    # The page's own origin (a browser sends it with every POST) and no Origin at all (curl).
    for origin in ("http://127.0.0.1", "http://127.0.0.1:80", None):
        for method, path, body, headers in requests:
            sent = headers if origin is None else {**headers, "Origin": origin}
            answer = getattr(client, method)(path, **body, headers=sent)
            assert answer.status_code == 200, (origin, path, answer.text)
    for origin in ("http://evil.example", "null", "https://127.0.0.1", "http://127.0.0.1:8001",
                   "http://localhost", "127.0.0.1"):  # fmt: skip
        for method, path, body, headers in requests:
            answer = getattr(client, method)(path, **body, headers={**headers, "Origin": origin})
            assert answer.status_code == 403, (origin, path)
            assert answer.json()["error"].startswith("requests from another site"), origin


# --- decoding: sliders, sample, reset ---------------------------------------------------------


def test_model_describes_the_checkpoint_and_the_sliders(client):
    model = client.get("/api/model").json()
    assert model["latent_dim"] == LATENT and model["prior"] == "mog"
    # No hierarchy: the page labels sliders z0, z1, ... with no group.
    assert model["latent_groups"] == 0 and model["code_groups"] == []
    assert (model["channels"], model["height"], model["width"]) == (1, 28, 28)
    assert len(model["mean"]) == len(model["std"]) == LATENT and min(model["std"]) > 0


def test_decode_draws_what_the_numpy_decoder_draws(client):
    spec, weights = numpy_sampling.load_decoder(SHIPPED)
    z = draw_latents(spec, weights, 1, 3)[0]
    first = client.post("/api/decode", json={"z": z.tolist()})
    assert first.status_code == 200
    expected = np.round(numpy_sampling.decode(spec, weights, z[None])[0, 0] * 255).astype(int)
    assert np.abs(pixels(first.json()["image"]).astype(int) - expected).max() <= 1
    z[3] += 2.0
    moved = client.post("/api/decode", json={"z": z.tolist()}).json()["image"]
    assert moved != first.json()["image"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"z": [0.0] * 31}, "list of 32 numbers"),
        ({"z": "zeros"}, "list of 32 numbers"),
        ({"z": [True] * 32}, "list of 32 numbers"),
        ({"z": ["0"] * 32}, "list of 32 numbers"),
        ({"z": [1e6] * 32}, "within +-1000"),
        ({}, "list of 32 numbers"),
        ([0.0] * 32, "JSON object"),
    ],
)
def test_bad_latents_are_400_with_one_line(client, body, fragment):
    answer = client.post("/api/decode", json=body)
    assert answer.status_code == 400 and fragment in answer.json()["error"]
    assert "\n" not in answer.json()["error"]


def test_nan_and_bad_json_and_huge_bodies_are_refused(client):
    nan = "[" + ",".join(["NaN"] * LATENT) + "]"
    answer = client.post("/api/decode", content=f'{{"z": {nan}}}', headers=JSON)
    assert answer.status_code == 400 and "finite" in answer.json()["error"]
    assert client.post("/api/decode", content=b"{not json", headers=JSON).status_code == 400
    deep = "[" * 100_000 + "]" * 100_000
    assert client.post("/api/decode", content=deep, headers=JSON).status_code in (400, 413)
    huge = client.post("/api/decode", content=b" " * (MAX_JSON_BYTES + 1), headers=JSON)
    assert huge.status_code == 413 and "too large" in huge.json()["error"]


def test_integers_too_large_for_a_float_are_400_and_not_echoed_whole(client):
    # JSON integers have no size limit: 10**400 parses, then overflowed float() (a 500).
    huge = "9" * 400
    zeros = ",".join(["0"] * (LATENT - 1))
    for path, body in (
        ("/api/decode", f'{{"z": [{huge}, {zeros}]}}'),
        ("/api/sample", f'{{"temperature": {huge}}}'),
        ("/api/sample", f'{{"temperature": 1, "seed": {huge}}}'),
        ("/api/encode/test", f'{{"index": {huge}}}'),
        ("/api/interpolate", f'{{"a": [{zeros}, 0], "b": [{zeros}, 1], "t": [{huge}]}}'),
    ):
        answer = client.post(path, content=body, headers=JSON)
        assert answer.status_code == 400, (path, answer.text)
        assert len(answer.json()["error"]) < 120, answer.json()["error"]
    lost = client.get("/" + "a" * 5000)
    assert lost.status_code == 404 and len(lost.json()["error"]) < 120


def test_sample_is_the_seeded_prior_draw_and_temperature_is_bounded(client):
    spec, weights = numpy_sampling.load_decoder(SHIPPED)
    one = client.post("/api/sample", json={"seed": 5, "temperature": 0.7}).json()
    again = client.post("/api/sample", json={"seed": 5, "temperature": 0.7}).json()
    assert one == again
    np.testing.assert_allclose(one["z"], draw_latents(spec, weights, 1, 5, 0.7)[0], atol=1e-4)
    for bad in ({"seed": 5, "temperature": 0}, {"seed": 5, "temperature": 1000},
                {"seed": -1, "temperature": 1}, {"seed": 1.5, "temperature": 1},
                {"seed": 2**64, "temperature": 1}, {"temperature": "hot"}):  # fmt: skip
        answer = client.post("/api/sample", json=bad)
        assert answer.status_code == 400, bad
    # Left out, seed and temperature are generate's defaults: 0 and 1.
    default = client.post("/api/sample", json={}).json()
    assert default == client.post("/api/sample", json={"seed": 0, "temperature": 1.0}).json()


# --- what needs the encoder --------------------------------------------------------------------


def test_encoder_features_say_loading_until_loaded(synthetic_data_dir):
    early = client_for(SHIPPED, synthetic_data_dir, load=False)
    status = early.get("/api/status").json()
    assert status["features"]["encoder"]["state"] == "loading" and status["order"] is None
    for method, path, body in (
        ("get", "/api/test-images", None), ("get", "/api/map", None),
        ("post", "/api/encode/test", {"index": 0}), ("post", "/api/map/point", {"index": 0}),
        ("post", "/api/interpolate", {"a": [0] * LATENT, "b": [1] * LATENT, "t": [0.5]}),
    ):  # fmt: skip
        answer = getattr(early, method)(path, **({"json": body} if body else {}))
        assert answer.status_code == 503 and "still loading" in answer.json()["error"], path
    assert "the test images are still loading" in early.get("/api/test-images").json()["error"]
    uploaded = upload(early, png_bytes(np.zeros((28, 28), np.uint8)))
    assert uploaded.status_code == 503
    # Sliders and samples do not wait for it.
    assert early.post("/api/sample", json={"temperature": 1}).status_code == 200


def test_status_orders_the_dimensions_as_traverse_does(client, synthetic_data_dir):
    from vae.data import ImageSource
    from vae.latent import traversal_order
    from vae.visualize import load_inputs

    status = client.get("/api/status").json()
    assert {f["state"] for f in status["features"].values()} == {"ready"}
    inputs = load_inputs(SHIPPED, ImageSource(data_dir=str(synthetic_data_dir), download=False))
    assert status["order"] == traversal_order(inputs.codes())
    assert sorted(status["order"] + status["inactive"]) == list(range(LATENT))


def test_test_images_encode_to_their_posterior_means(client, synthetic_data_dir):
    strip = client.get("/api/test-images").json()["images"]
    assert len(strip) == 20 and all(item["label"] in range(10) for item in strip)
    encoded = client.post("/api/encode/test", json={"index": 4}).json()
    assert len(encoded["z"]) == LATENT and encoded["original"] == strip[4]["image"]
    direct = client.post("/api/decode", json={"z": encoded["z"]}).json()["image"]
    assert np.abs(pixels(direct).astype(int) - pixels(encoded["reconstruction"])).max() <= 1
    for index in (-1, 20, "3", None):
        assert client.post("/api/encode/test", json={"index": index}).status_code == 400


def test_interpolation_runs_from_a_to_b_on_the_sphere(client):
    a = client.post("/api/encode/test", json={"index": 0}).json()["z"]
    b = client.post("/api/encode/test", json={"index": 1}).json()["z"]
    answer = client.post("/api/interpolate", json={"a": a, "b": b, "t": [0, 0.5, 1]}).json()
    assert len(answer["images"]) == 3
    np.testing.assert_allclose(answer["z"][0], a, atol=1e-4)
    np.testing.assert_allclose(answer["z"][2], b, atol=1e-4)
    middle = np.linalg.norm(answer["z"][1])
    assert middle > np.linalg.norm(np.add(a, b) / 2)  # slerp keeps the norm; lerp would not
    for bad_t in ([], [1.5], ["0"], [0.5] * 65, 0.5):
        reply = client.post("/api/interpolate", json={"a": a, "b": b, "t": bad_t})
        assert reply.status_code == 400, bad_t


def test_latent_map_points_decode_when_clicked(client):
    found = client.get("/api/map").json()
    assert len(found["points"]) == 60 and len(found["labels"]) == 60
    assert found["axes"] == ["PC1", "PC2"] and "PCA" in found["title"]
    point = client.post("/api/map/point", json={"index": 59}).json()
    assert len(point["z"]) == LATENT and point["label"] == found["labels"][59]
    assert client.post("/api/map/point", json={"index": 60}).status_code == 400


# --- uploads -------------------------------------------------------------------------------------


def test_an_uploaded_image_is_read_as_inference_input_reads_it(client, tmp_path):
    from vae.data import read_image_files

    digit = np.zeros((280, 200, 3), np.uint8)
    digit[60:220, 90:110] = 255  # a "1", in colour and another size
    (tmp_path / "digit.png").write_bytes(png_bytes(digit))
    answer = upload(client, png_bytes(digit))
    assert answer.status_code == 200, answer.text
    expected = read_image_files([tmp_path / "digit.png"], 28, 1)[0, 0].numpy()
    np.testing.assert_array_equal(pixels(answer.json()["original"]), expected)
    assert len(answer.json()["z"]) == LATENT


def test_bad_uploads_are_refused_in_one_line(client, tmp_path):
    empty = upload(client, b"")
    assert empty.status_code == 400 and "empty" in empty.json()["error"]
    junk = upload(client, b"not an image at all")
    assert junk.status_code == 400 and "not an image" in junk.json()["error"]
    assert "BytesIO" not in junk.json()["error"] and "PNG" in junk.json()["error"]
    # Formats folder: datasets do not read are refused from the header: EPS would go to
    # Ghostscript, an ICO is no training image.
    for other in (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", ico_bytes()):
        refused = upload(client, other)
        assert refused.status_code == 400 and "not an image" in refused.json()["error"]
    truncated = png_bytes(np.full((64, 64), 200, np.uint8))[:-40]
    broken = upload(client, truncated)
    assert broken.status_code == 400 and "the upload" in broken.json()["error"]
    assert "vae-explore-" not in broken.json()["error"]  # no server paths in answers
    too_large = upload(client, b"\0" * (MAX_UPLOAD_BYTES + 1))
    assert too_large.status_code == 413
    # A 5000 x 5000 image is a few kilobytes of PNG: refused from its header, not decoded.
    bomb = io.BytesIO()
    Image.new("1", (5000, 5000)).save(bomb, format="PNG")
    refused = upload(client, bomb.getvalue())
    assert refused.status_code == 413 and "pixels" in refused.json()["error"]


def test_a_huge_image_header_is_413_without_pillows_warning_on_the_terminal(client, recwarn):
    from PIL import Image as PillowImage

    # A 10000 x 9500 PNG header (no pixels): over Pillow's warning size, under its error size.
    header = struct.pack(">IIBBBBB", 10_000, 9_500, 8, 0, 0, 0, 0)
    chunks = b"".join(
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        for kind, data in ((b"IHDR", header), (b"IEND", b""))
    )
    answer = upload(client, b"\x89PNG\r\n\x1a\n" + chunks)
    assert answer.status_code == 413 and "95,000,000 pixels" in answer.json()["error"]
    assert not [w for w in recwarn if w.category is PillowImage.DecompressionBombWarning]


# --- other checkpoints --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["autoencoder", "colour, three deconvs, no dense hidden"])
def test_autoencoders_and_colour_models_explore_without_their_data(tmp_path, name):
    checkpoint = tmp_path / "model.safetensors"
    spec = SPECS[name]
    model = write_checkpoint(checkpoint, spec)
    empty = tmp_path / "no-data"
    empty.mkdir()
    client = client_for(checkpoint, empty)
    described = client.get("/api/model").json()
    assert described["model_type"] == spec.model_type and described["channels"] == spec.channels
    if spec.model_type == "ae":  # the sliders centre on the fitted Gaussian of the codes
        expected = prior_moments(spec, {k: v.numpy() for k, v in model.state_dict().items()})
        np.testing.assert_allclose(described["mean"], expected.mean, atol=1e-4)
        np.testing.assert_allclose(
            described["mean"], model.fitted_mean.numpy(), rtol=1e-4, atol=1e-4
        )
    decoded = client.post("/api/sample", json={"seed": 1, "temperature": 1.0}).json()
    assert pixels(decoded["image"]).shape[:2] == (spec.height, spec.width)
    status = client.get("/api/status").json()["features"]
    assert status["encoder"]["state"] == "ready" and status["test_images"]["state"] == "failed"
    # The map points to the images' reason rather than repeating it on the page.
    assert status["latent_map"] == {"state": "failed", "reason": MAP_NEEDS_TEST_IMAGES}
    assert "MNIST" in status["test_images"]["reason"] or "mnist" in status["test_images"]["reason"]
    assert "not available" in client.get("/api/map").json()["error"]
    uploaded = upload(client, png_bytes(np.full((40, 40, 3), 120, np.uint8)))
    assert uploaded.status_code == 200 and len(uploaded.json()["z"]) == spec.latent_dim


def test_a_1d_latent_says_it_has_no_map_before_the_page_asks(tmp_path, synthetic_data_dir):
    from vae.spec import ModelSpec

    checkpoint = tmp_path / "line.safetensors"
    write_checkpoint(checkpoint, ModelSpec("conv", 1, 1, 28, 28, "bce", [16], [8, 8]))
    client = client_for(checkpoint, synthetic_data_dir)
    features = client.get("/api/status").json()["features"]
    assert features["test_images"]["state"] == "ready"
    assert features["latent_map"] == {
        "state": "failed",
        "reason": "a 1-D latent has no plane to map",
    }
    assert client.get("/api/map").status_code == 409


def test_the_mixture_prior_moments_match_its_samples():
    spec, weights = numpy_sampling.load_decoder(SHIPPED)
    moments = prior_moments(spec, weights)
    drawn = draw_latents(spec, weights, 50_000, 0).astype(np.float64)
    np.testing.assert_allclose(drawn.mean(0), moments.mean, atol=0.05)
    np.testing.assert_allclose(drawn.std(0), moments.std, rtol=0.05)


def test_sliders_and_samples_never_import_torch():
    code = (
        "import sys\n"
        "from starlette.testclient import TestClient\n"
        "from vae.explore.app import build_app\n"
        "from vae.explore.decoder import Decoder\n"
        "from vae.explore.encoder import Encoder\n"
        "from vae.reporting import Reporter\n"
        f"path = {str(SHIPPED)!r}\n"
        "client = TestClient(build_app(Decoder(path), Encoder(path), Reporter()),\n"
        "                    base_url='http://127.0.0.1')\n"
        "assert client.get('/').status_code == 200\n"
        "z = client.post('/api/sample', json={'temperature': 1}).json()['z']\n"
        "assert client.post('/api/decode', json={'z': z}).status_code == 200\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


# --- the command ---------------------------------------------------------------------------------


def test_bad_options_are_one_line():
    runner = CliRunner()
    one_line_error(runner.invoke(cli_app, ["explore", "--port", "70000"]), 2, "--port")
    one_line_error(runner.invoke(cli_app, ["explore", "--limit", "0"]), 2, "--limit")
    missing = runner.invoke(cli_app, ["explore", "--checkpoint", "none.safetensors"])
    one_line_error(missing, 1, "checkpoint not found")


def test_a_taken_port_is_one_line_and_another_host_warns():
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        arguments = ["--host", "0.0.0.0", "--port", str(port), "--checkpoint", str(SHIPPED)]
        result = CliRunner().invoke(cli_app, ["explore", *arguments], env={"COLUMNS": "200"})
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1, result.output
    assert lines[0].startswith("warning: --host 0.0.0.0") and len(lines) == 2
    assert lines[1].startswith(f"error: cannot listen on 0.0.0.0:{port}")


def _post(url: str, body: dict | bytes, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    """A POST to the running explorer: a JSON body, or bytes as an upload."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    kind = "application/octet-stream" if isinstance(body, bytes) else "application/json"
    request = urllib.request.Request(
        url, data=data, headers={"Content-Type": kind, **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def start_explorer(*arguments: str) -> tuple[subprocess.Popen, str]:
    """The installed ``explore`` on a free port, as the browser test starts it."""
    return explore_screenshot.start_explorer(*arguments)


def test_the_installed_command_serves_takes_50_concurrent_decodes_and_stops_on_ctrl_c(
    synthetic_data_dir,
):
    started = time.monotonic()
    process, url = start_explorer("--checkpoint", str(SHIPPED), "--data-dir",
                                  str(synthetic_data_dir))  # fmt: skip
    try:
        zeros = {"z": [0.0] * LATENT}
        status, answer = _post(url + "api/decode", zeros)
        usable = time.monotonic() - started
        assert status == 200 and answer["image"].startswith("data:image/png")
        assert usable < 15, usable  # 1 s on the 2-core benchmark machine (benchmarks/README.md)

        latents = [{"z": [0.01 * i] * LATENT} for i in range(50)]
        with ThreadPoolExecutor(50) as pool:
            replies = list(pool.map(lambda body: _post(url + "api/decode", body), latents))
        assert [code for code, _ in replies] == [200] * 50
        assert len({reply["image"] for _, reply in replies}) > 1
        with urllib.request.urlopen(url, timeout=30) as page:
            assert page.status == 200
        # Malformed requests and WebSocket attempts are refused without a word on the terminal.
        port = int(url.rstrip("/").rsplit(":", 1)[1])
        for request in (
            b"GARBAGE\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        ):
            with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
                connection.sendall(request)
                assert connection.recv(100).startswith(b"HTTP/1.1 ")
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert stderr.strip().splitlines() == ["stopped the explorer"], stderr


def test_sigterm_stops_the_explorer_mid_decode_within_seconds(synthetic_data_dir):
    """Uploads that take a second each to decode (as many scans as allowed, 4096 x 4096), queued
    behind each other, and a request whose body is still arriving: SIGTERM answers what is in
    progress and ends the server in about SHUTDOWN_SECONDS, in one line, instead of waiting
    for every decode (and printing a traceback for each request cut off)."""
    slow = with_scans(MAX_JPEG_SCANS)
    process, url = start_explorer("--checkpoint", str(SHIPPED), "--data-dir",
                                  str(synthetic_data_dir))  # fmt: skip
    port = int(url.rstrip("/").rsplit(":", 1)[1])
    answers: list[tuple[int, dict]] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # uploads wait for the encoder (503 until then)
            with urllib.request.urlopen(url + "api/status", timeout=30) as response:
                if json.loads(response.read())["features"]["encoder"]["state"] == "ready":
                    break
            time.sleep(0.2)
        # The page's own origin is answered from the real server, another one refused.
        own = {"Origin": url.rstrip("/")}
        assert _post(url + "api/decode", {"z": [0.0] * LATENT}, own)[0] == 200
        refused = _post(
            url + "api/decode", {"z": [0.0] * LATENT}, {"Origin": "http://evil.example"}
        )
        assert refused[0] == 403
        senders = [
            threading.Thread(target=lambda: answers.append(_post(url + "api/encode/upload", slow)))
            for _ in range(12)
        ]
        for sender in senders:
            sender.start()
        with socket.create_connection(("127.0.0.1", port), timeout=30) as unfinished:
            unfinished.sendall(
                b"POST /api/encode/upload HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n"
                + slow[:1000]
            )
            time.sleep(1.5)  # the uploads have arrived, the first is being decoded
            stopped = time.monotonic()
            process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=120)
            took = time.monotonic() - stopped
        for sender in senders:
            sender.join(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 143, stderr
    assert stderr.strip().splitlines() == ["stopped the explorer"], stderr
    assert took < 5, took  # about 2 s: SHUTDOWN_SECONDS for the request still arriving
    # Every upload was answered: decoded before the signal, or told the explorer is stopping.
    assert len(answers) == 12 and {status for status, _ in answers} <= {200, 503}, answers
    assert any(reply == {"error": "the explorer is stopping"} for _, reply in answers)
