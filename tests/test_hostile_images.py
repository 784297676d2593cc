"""Image files that cost more than their size: a progressive JPEG whose last scan repeats
thousands of times (each scan a pass over the whole image: minutes for a 100 KB file) is refused
before decoding by every reader of image files (``folder:`` datasets, ``--input``, explorer
uploads); a float image with NaN or infinite pixels is refused instead of becoming a wrong
image."""

from __future__ import annotations

import io
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient
from typer.testing import CliRunner

from conftest import one_line_error
from vae.cli import app
from vae.config import DataConfig
from vae.data import load_splits
from vae.data.decoding import MAX_JPEG_SCANS, decode_image, read_image_files
from vae.errors import DataError
from vae.explore.app import build_app
from vae.explore.decoder import Decoder
from vae.explore.encoder import Encoder
from vae.reporting import Reporter

SHIPPED = Path(__file__).resolve().parents[1] / "pretrained" / "checkpoint_best.safetensors"
SIDE = 4096  # pixels a side: each scan of a black image this size takes about 10 ms
SCANS = 1000  # scans: about 13 s of decoding unbounded, a 100 KB file
QUICK_SECONDS = 1.0  # a refusal reads the bytes once, decoding nothing
COMMAND_SECONDS = 5.0  # a whole command in this process, its checkpoint loaded, the refusal


def with_scans(count: int, side: int = SIDE) -> bytes:
    """A black progressive JPEG (Pillow's, six scans) whose last scan is repeated until the file
    holds ``count`` scans: a valid file every decoder reads, scan by scan."""
    buffer = io.BytesIO()
    Image.new("L", (side, side)).save(buffer, format="JPEG", progressive=True)
    data = buffer.getvalue()
    written = data.count(b"\xff\xda")
    assert data.endswith(b"\xff\xd9") and written < count  # EOI closes the last scan
    last = data[data.rindex(b"\xff\xda") : -2]
    return data[:-2] + last * (count - written) + b"\xff\xd9"


@pytest.fixture(scope="module")
def hostile() -> bytes:
    return with_scans(SCANS)


def test_a_progressive_jpeg_from_pillow_still_decodes():
    y, x = np.mgrid[0:300, 0:200]
    picture = np.stack([x % 256, y % 256, (x + y) % 256], axis=-1).astype(np.uint8)
    for options in ({}, {"progressive": True}, {"progressive": True, "optimize": True}):
        buffer = io.BytesIO()
        Image.fromarray(picture).save(buffer, format="JPEG", quality=95, **options)
        decoded = decode_image(buffer.getvalue(), 28, 3)
        expected = decode_image(_png(picture), 28, 3)
        assert np.abs(decoded.astype(int) - expected).mean() < 3, options
    # As many scans as the limit allows: decoded, however pointless its repeated scans; one more
    # is refused, whether its markers start at even or at odd offsets (a comment shifts them).
    for comment in (b"", b"x"):
        allowed, refused = (
            _with_comment(with_scans(count, side=64), comment)
            for count in (MAX_JPEG_SCANS, MAX_JPEG_SCANS + 1)
        )
        assert decode_image(allowed, 8, 1).shape == (1, 8, 8)
        with pytest.raises(DataError, match=f"{MAX_JPEG_SCANS + 1} scans"):
            decode_image(refused, 8, 1)


def _with_comment(jpeg: bytes, text: bytes) -> bytes:
    """``jpeg`` with a comment segment (FF FE, its length, the text) right after SOI."""
    return jpeg[:2] + b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text + jpeg[2:]


def test_a_jpeg_of_a_thousand_scans_is_refused_quickly_by_each_reader(hostile, tmp_path):
    started = time.monotonic()
    with pytest.raises(DataError) as refused:
        decode_image(hostile, 28, 1)
    assert time.monotonic() - started < QUICK_SECONDS
    message = str(refused.value)
    assert (
        "\n" not in message and "1,000 scans" in message and f"limit of {MAX_JPEG_SCANS}" in message
    )

    folder = tmp_path / "pictures"
    folder.mkdir()
    for index in range(3):
        Image.new("L", (40, 30), index * 60).save(folder / f"fine{index}.png")
    (folder / "hostile.jpg").write_bytes(hostile)

    started = time.monotonic()
    with pytest.raises(DataError, match=r"hostile\.jpg: a JPEG of 1,000 scans"):
        read_image_files([folder / "hostile.jpg"], 28, 1)
    assert time.monotonic() - started < QUICK_SECONDS

    started = time.monotonic()
    config = DataConfig(dataset=f"folder:{folder}", data_dir=str(tmp_path / "data"), image_size=8)
    with pytest.raises(DataError, match=r"hostile\.jpg: a JPEG of 1,000 scans"):
        load_splits(config, "mse")
    assert time.monotonic() - started < COMMAND_SECONDS

    started = time.monotonic()
    result = CliRunner().invoke(
        app,
        ["inference", "--checkpoint", str(SHIPPED), "--mode", "reconstruct",
         "--input", str(folder / "hostile.jpg"), "--output-dir", str(tmp_path / "out")],
    )  # fmt: skip
    assert time.monotonic() - started < COMMAND_SECONDS
    one_line_error(result, 1, "hostile.jpg", "1,000 scans")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_an_upload_of_a_thousand_scans_is_refused_quickly(hostile, tmp_path):
    decoder = Decoder(SHIPPED)
    encoder = Encoder(SHIPPED, data_dir=str(tmp_path), download=False)  # no test images needed
    encoder.load(Reporter())
    client = TestClient(build_app(decoder, encoder, Reporter()), base_url="http://127.0.0.1")
    started = time.monotonic()
    answer = client.post(
        "/api/encode/upload",
        content=hostile,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert time.monotonic() - started < QUICK_SECONDS
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == (
        f"cannot read the upload: a JPEG of 1,000 scans is over the limit of {MAX_JPEG_SCANS} "
        "(refused before decoding)"
    )


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _float_tiff(path: Path, values: np.ndarray) -> Path:
    Image.fromarray(values.astype(np.float32)).save(path, format="TIFF")
    with Image.open(path) as written:
        assert written.mode == "F"  # the case meant: a 32-bit float image
    return path


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_float_tiff_with_non_finite_pixels_is_refused_in_one_line(tmp_path, bad):
    values = np.full((16, 16), 0.9)
    values[3, 5] = bad
    path = _float_tiff(tmp_path / "odd.tif", values)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no RuntimeWarning on the terminal
        with pytest.raises(DataError) as refused:
            decode_image(path, 8, 1)
    assert str(refused.value) == f"cannot read image {path}: it has NaN or infinite pixel values"
    result = CliRunner().invoke(
        app,
        ["inference", "--checkpoint", str(SHIPPED), "--mode", "reconstruct",
         "--input", str(path), "--output-dir", str(tmp_path / "out")],
    )  # fmt: skip
    one_line_error(result, 1, "odd.tif", "NaN or infinite")


def test_a_finite_float_tiff_is_scaled_as_before(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        unit = decode_image(_float_tiff(tmp_path / "unit.tif", np.full((16, 16), 0.9)), 8, 1)
        wide = decode_image(_float_tiff(tmp_path / "wide.tif", np.full((16, 16), 200.0)), 8, 1)
    assert (unit == 229).all()  # [0, 1] is scaled to [0, 255]
    assert (wide == 200).all()  # [0, 255] is kept
