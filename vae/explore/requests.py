"""Reading and checking the explorer's requests: bodies of their route's type and up to a size
limit, JSON objects, bounded numbers and indices, finite latents of the model's size, yes/no
flags, and uploaded image files (with the decoding guards of ``vae.data.decoding``). A request
refused here is a :class:`BadRequest`: a 4xx answer with a one-line ``{"error": ...}``.
"""

from __future__ import annotations

import io
import json
import math
import warnings
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import JSONResponse

from vae.errors import VAEError, first_line

MAX_JSON_BYTES = 1 << 20  # a 4096-dimensional latent as JSON is about 100 KB
MAX_UPLOAD_BYTES = 8 << 20
MAX_UPLOAD_PIXELS = 4096 * 4096  # checked from the header, before decoding
MAX_LATENT_VALUE = 1000.0  # far outside any prior; larger values only overflow the decoder
MAX_SHOWN_CHARS = 40  # of a refused value or path, echoed in an error message
# The types of request bodies, as the page sends them: JSON, and an upload's file itself.
JSON_TYPE = "application/json"
UPLOAD_TYPE = "application/octet-stream"


class BadRequest(Exception):
    """A request the API refuses; ``status`` is its HTTP code (4xx)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def error_response(message: str, status: int) -> JSONResponse:
    """The answer to a refused request: ``{"error": message}`` with its status."""
    return JSONResponse({"error": message}, status_code=status)


async def read_body(request: Request, limit: int) -> bytes:
    """The request's body, refused (413) once it passes ``limit`` bytes, whatever
    Content-Length claims."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BadRequest(f"request body too large (over {limit:,} bytes)", 413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadRequest(f"request body too large (over {limit:,} bytes)", 413)
        chunks.append(chunk)
    return b"".join(chunks)


def require_type(request: Request, expected: str, what: str) -> None:
    """415 unless the body is declared as ``expected`` (parameters such as charset aside)."""
    declared = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if declared != expected:
        given = shown(declared) if declared else "none"
        raise BadRequest(f"send {what} with Content-Type: {expected} (not {given})", 415)


async def json_object(request: Request) -> dict[str, Any]:
    require_type(request, JSON_TYPE, "a JSON object")
    try:
        value = json.loads(await read_body(request, MAX_JSON_BYTES))
    except (ValueError, RecursionError):
        raise BadRequest("the body is not valid JSON") from None
    if not isinstance(value, dict):
        raise BadRequest("the body must be a JSON object")
    return value


def shown(value: Any) -> str:
    """``value`` for an error message, cut short: JSON integers have no size limit, and an
    answer should not echo a 4,000-digit number back."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= MAX_SHOWN_CHARS else text[: MAX_SHOWN_CHARS - 3] + "..."


def is_number(value: Any) -> bool:
    """A JSON number that is a finite float: not a bool (an int in Python), not NaN or
    infinite, not an integer too large for a float (JSON integers have no size limit)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def positive(body: dict[str, Any], name: str, high: float) -> float:
    value = body.get(name)
    if not is_number(value):
        raise BadRequest(f"{name} must be a finite number")
    if not 0 < value <= high:
        raise BadRequest(f"{name} must be above 0 and at most {high:g}, not {value:g}")
    return float(value)


def index_in(body: dict[str, Any], name: str, count: int) -> int:
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"{name} must be a whole number")
    if not 0 <= value < count:
        raise BadRequest(f"{name} must be between 0 and {count - 1}, not {shown(value)}")
    return value


def latent_of(body: dict[str, Any], name: str, dimensions: int) -> np.ndarray:
    value = body.get(name)
    if not isinstance(value, list) or len(value) != dimensions:
        raise BadRequest(f"{name} must be a list of {dimensions} numbers")
    if any(isinstance(x, bool) or not isinstance(x, int | float) for x in value):
        raise BadRequest(f"{name} must be a list of {dimensions} numbers")
    if not all(is_number(x) for x in value):
        raise BadRequest(f"{name} values must be finite and within +-{MAX_LATENT_VALUE:g}")
    latent = np.asarray(value, dtype=np.float64)
    if np.abs(latent).max(initial=0.0) > MAX_LATENT_VALUE:
        raise BadRequest(f"{name} values must be finite and within +-{MAX_LATENT_VALUE:g}")
    return latent.astype(np.float32)


def class_of(value: Any, classes: int, name: str = "label") -> int | None:
    """A conditional model's class index (``classes`` of them), as a JSON value or a query
    parameter's text; None for a model without classes, which refuses one."""
    if classes == 0:
        if value is not None:
            raise BadRequest(f"{name}: this model takes no class label")
        return None
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < classes:
        raise BadRequest(
            f"{name} must be a class index from 0 to {classes - 1}, not {shown(value)}"
        )
    return value


def rounded(values: np.ndarray) -> list[float]:
    """Floats for JSON, at a precision the page can show and send back unchanged."""
    return [round(float(x), 5) for x in values]


def flag(request: Request, name: str) -> bool:
    """A yes/no query parameter (``?invert=1``): absent or 0 is no, 1 is yes."""
    value = request.query_params.get(name, "0")
    if value not in ("0", "1"):
        raise BadRequest(f"{name} must be 0 or 1 (not {shown(value)})")
    return value == "1"


def read_upload(data: bytes, height: int, width: int, channels: int, invert: bool = False) -> Any:
    """An uploaded image file as the model takes it: uint8 [1, C, H, W], centre-cropped, resized
    and converted as ``inference --input`` reads files (``vae.data.decoding``, with its guards),
    after checks of its own on the header: one of ``image_formats()``, at most
    ``MAX_UPLOAD_PIXELS``; with ``invert``, every pixel ``x`` is ``255 - x``, as
    ``--invert`` does."""
    from PIL import Image, UnidentifiedImageError

    from vae.data.decoding import DECODER_ERRORS, image_formats, read_image_files

    if height != width:
        raise BadRequest("uploads need a model trained on square images")
    formats = image_formats()
    try:
        with warnings.catch_warnings():
            # Pillow warns (on the server's terminal) of sizes far above the limit below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=formats) as image:  # the header only
                pixels = image.size[0] * image.size[1]
    except UnidentifiedImageError:
        # Pillow's own message names a BytesIO object and its address: no use to the sender.
        raise BadRequest(
            f"the upload is not an image in a format the explorer reads ({', '.join(formats)}); "
            "send the file itself as the request body"
        ) from None
    except (*DECODER_ERRORS, Image.DecompressionBombError) as error:
        raise BadRequest(f"cannot read the upload as an image: {first_line(error)}") from None
    if pixels > MAX_UPLOAD_PIXELS:
        raise BadRequest(
            f"the upload has {pixels:,} pixels, more than the limit of {MAX_UPLOAD_PIXELS:,}", 413
        )
    try:
        # Decoded from the bytes, as a Hugging Face dataset's image column is.
        images = read_image_files([data], height, channels)
    except VAEError as error:
        # Its message names the image by its size in bytes; the sender knows it as the upload.
        raise BadRequest(str(error).replace(f"image of {len(data)} bytes", "the upload")) from None
    if invert:
        from vae.backgrounds import invert as inverted

        return inverted(images)
    return images
