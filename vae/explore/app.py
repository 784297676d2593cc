"""The explorer's web application: the page's own assets and a small JSON API over one
checkpoint (Starlette).

Every request is checked before any work: a request from another site's page (its ``Origin``
is not this server's) is refused, bodies must be of their route's type (JSON, or the uploaded
file as ``application/octet-stream``) and are read up to a size limit, latents must be finite and
of the model's size, counts and numbers are bounded. A bad request is a 4xx answer
with a one-line ``{"error": ...}``; an unexpected failure is a 500 with the same shape and one
warning line on the server's terminal, never a traceback page.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import threading
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from vae.config import SEED_MAX
from vae.errors import VAEError, first_line
from vae.explore.decoder import Decoder, png_data_url
from vae.explore.encoder import NO_PLANE, Encoder, NotReady, TestImages
from vae.explore.footprint import THREADS
from vae.explore.origin import SameOrigin
from vae.explore.requests import (
    MAX_UPLOAD_BYTES,
    UPLOAD_TYPE,
    BadRequest,
    class_of,
    error_response,
    flag,
    index_in,
    is_number,
    json_object,
    latent_of,
    positive,
    read_body,
    read_upload,
    require_type,
    rounded,
    shown,
)
from vae.limits import MAX_TEMPERATURE
from vae.models import family_of
from vae.reporting import Reporter

# The page's files, served from the package (no CDN, no build step), and their types.
ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "explore.js": "text/javascript; charset=utf-8",
    "explore.css": "text/css; charset=utf-8",
}
MAX_FRAMES = 64  # images in one interpolation answer
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
STOPPING = "the explorer is stopping"


Handler = Callable[[Request], Awaitable[dict[str, Any]]]


def build_app(
    decoder: Decoder, encoder: Encoder, reporter: Reporter, allowed_hosts: list[str] | None = None
) -> Starlette:
    """The application for one checkpoint. ``allowed_hosts``: the Host headers it answers
    (default: the loopback names), so that a page of another site cannot reach it through a
    DNS name rebound to 127.0.0.1; ``["*"]`` answers any. ``app.state.stop()`` answers the work
    in progress 503 at once, and any work asked for later (the server calls it as it stops)."""
    api = _Api(decoder, encoder)

    def endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        @functools.wraps(handler)
        async def answer(request: Request) -> Response:
            try:
                return JSONResponse(await handler(request))
            except BadRequest as error:
                return error_response(str(error), error.status)
            except NotReady as error:
                return error_response(str(error), 503)
            except VAEError as error:
                return error_response(str(error), 422)
            except ClientDisconnect:
                # The sender left before its body arrived (a closed tab, a connection timed out):
                # an answer nobody reads, and nothing on the terminal for each.
                return Response(status_code=400)
            except Exception as error:  # noqa: BLE001 - one line, never a traceback page
                reporter.warning(f"explorer: {request.url.path}: {first_line(error)}")
                return error_response(f"internal error: {first_line(error)}", 500)

        return answer

    routes = [
        Route("/", _asset_route("index.html"), methods=["GET"]),
        *(Route(f"/{name}", _asset_route(name), methods=["GET"]) for name in ASSETS),
        Route("/api/model", endpoint(api.model), methods=["GET"]),
        Route("/api/status", endpoint(api.status), methods=["GET"]),
        Route("/api/decode", endpoint(api.decode), methods=["POST"]),
        Route("/api/sample", endpoint(api.sample), methods=["POST"]),
        Route("/api/test-images", endpoint(api.test_images), methods=["GET"]),
        Route("/api/encode/test", endpoint(api.encode_test), methods=["POST"]),
        Route("/api/encode/upload", endpoint(api.encode_upload), methods=["POST"]),
        Route("/api/interpolate", endpoint(api.interpolate), methods=["POST"]),
        Route("/api/map", endpoint(api.latent_map), methods=["GET"]),
        Route("/api/map/point", endpoint(api.map_point), methods=["POST"]),
    ]
    hosts = allowed_hosts if allowed_hosts is not None else list(LOCAL_HOSTS)
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=hosts), Middleware(SameOrigin)]
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={404: _not_found, 405: _not_allowed},
    )
    app.state.stop = api.stop
    return app


async def _not_found(request: Request, exc: Exception) -> Response:
    return error_response(f"not found: {shown(request.url.path)}", 404)


async def _not_allowed(request: Request, exc: Exception) -> Response:
    return error_response(f"{request.method} is not allowed on {request.url.path}", 405)


def _asset_route(name: str) -> Callable[[Request], Awaitable[Response]]:
    async def asset(request: Request) -> Response:
        body = resources.files("vae.explore").joinpath("static", name).read_bytes()
        # The page is the package's: nothing to cache across versions, nothing to frame.
        headers = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
        headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"
        )
        return Response(body, media_type=ASSETS[name], headers=headers)

    return asset


class _Api:
    """The JSON endpoints; each returns the answer's object or raises BadRequest / VAEError."""

    def __init__(self, decoder: Decoder, encoder: Encoder) -> None:
        self.decoder, self.encoder = decoder, encoder
        self.dimensions = decoder.spec.latent_dim
        # A conditional model's classes: requests that decode or encode name one by its index.
        self.classes = len(decoder.spec.classes)
        # One upload is decoded at a time: an 8 MiB file can expand to hundreds of MiB of
        # pixels, and the warning filters read_upload sets are global to the process.
        self._uploads = threading.Lock()
        # The work's own threads, not the event loop's default executor: asyncio waits for
        # every job of that one before the process may end, so a stop would wait on decodes.
        # NumPy and torch release the GIL while they compute: decodes run side by side, and
        # the event loop keeps answering. THREADS of them: each thread reserves memory.
        self._pool = concurrent.futures.ThreadPoolExecutor(
            THREADS, thread_name_prefix="vae-explore"
        )
        self._stopping = False
        self._waiting: set[asyncio.Future[None]] = set()

    def stop(self) -> None:
        """Answer the work in progress, and any asked for from now on, 503 (the server is
        stopping): the stop need not wait for a decode, and no request is left to cancel."""
        self._stopping = True
        for waiter in list(self._waiting):
            waiter.get_loop().call_soon_threadsafe(_finish, waiter)

    async def _run(self, function: Callable[..., Any], *args: Any) -> Any:
        if self._stopping:
            raise BadRequest(STOPPING, 503)
        loop = asyncio.get_running_loop()
        work = loop.run_in_executor(self._pool, function, *args)
        stopped = loop.create_future()
        self._waiting.add(stopped)
        try:
            await asyncio.wait({work, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._waiting.discard(stopped)
            if not work.done():
                work.cancel()  # a job still queued never starts; a running one ends with us
        if work.cancelled():
            raise BadRequest(STOPPING, 503)
        return work.result()

    async def model(self, request: Request) -> dict[str, Any]:
        spec, moments = self.decoder.spec, self.decoder.moments
        return {
            "checkpoint": self.decoder.checkpoint.name,
            "model_type": spec.model_type,
            "prior": spec.prior,
            "latent_dim": spec.latent_dim,
            # A hierarchy's groups (0 for other models) and each code dimension's group, z0
            # first (empty for other models): the sliders' labels.
            "latent_groups": spec.latent_groups,
            "code_groups": family_of(spec).code_groups(spec.latent_dim, spec.latent_groups) or [],
            "channels": spec.channels,
            "height": spec.height,
            "width": spec.width,
            "mean": rounded(moments.mean),
            "std": rounded(moments.std),
            "max_temperature": MAX_TEMPERATURE,
            "max_upload_bytes": MAX_UPLOAD_BYTES,
            # The class picker's choices (empty for a model that takes no label).
            "classes": list(spec.classes),
        }

    async def status(self, request: Request) -> dict[str, Any]:
        encoder = self.encoder
        return {
            "features": {name: feature.as_json() for name, feature in encoder.status.items()},
            "order": encoder.order,
            "inactive": encoder.inactive,
            "importance": None
            if encoder.importance is None
            else rounded(np.array(encoder.importance)),
        }

    async def decode(self, request: Request) -> dict[str, Any]:
        body = await json_object(request)
        latent = latent_of(body, "z", self.dimensions)
        label = class_of(body.get("label"), self.classes)
        (picture,) = await self._run(self.decoder.pictures, latent[None], label)
        return {"image": picture}

    async def sample(self, request: Request) -> dict[str, Any]:
        body = await json_object(request)
        seed = index_in(body, "seed", SEED_MAX + 1) if "seed" in body else 0
        # Left out: generate's defaults (seed 0, temperature 1).
        temperature = (
            positive(body, "temperature", MAX_TEMPERATURE) if "temperature" in body else 1.0
        )
        label = class_of(body.get("label"), self.classes)

        def work() -> dict[str, Any]:
            latent = self.decoder.sample(seed, temperature)
            (picture,) = self.decoder.pictures(latent[None], label)
            return {"z": rounded(latent), "image": picture}

        return await self._run(work)

    async def test_images(self, request: Request) -> dict[str, Any]:
        strip = self.encoder.test_set("strip")
        labels = strip.labels
        return {
            "images": [
                {
                    "index": index,
                    "label": None if labels is None else int(labels[index]),
                    "image": png_data_url(image.numpy()),
                }
                for index, image in enumerate(strip.images)
            ]
        }

    async def encode_test(self, request: Request) -> dict[str, Any]:
        strip = self.encoder.test_set("strip")
        index = index_in(await json_object(request), "index", len(strip.images))
        return await self._run(self._encoded, strip, index)

    async def map_point(self, request: Request) -> dict[str, Any]:
        mapped = self.encoder.test_set("mapped")
        index = index_in(await json_object(request), "index", len(mapped.images))
        return await self._run(self._encoded, mapped, index)

    def _encoded(self, images: TestImages, index: int) -> dict[str, Any]:
        """A test image, its posterior mean and the mean's decoding (a conditional model's as
        the image's own class, given as ``class``: the page's picker follows it)."""
        latent = images.means[index]
        condition = None if images.condition is None else int(images.condition[index])
        (reconstruction,) = self.decoder.pictures(latent[None], condition)
        return {
            "z": rounded(latent),
            "original": png_data_url(images.images[index].numpy()),
            "reconstruction": reconstruction,
            "label": None if images.labels is None else int(images.labels[index]),
            "class": condition,
        }

    async def encode_upload(self, request: Request) -> dict[str, Any]:
        require_type(request, UPLOAD_TYPE, "the image file itself as the body")
        if self.encoder.model is None:
            raise NotReady("the encoder", self.encoder.status["encoder"].reason)
        invert = flag(request, "invert")
        # A conditional model encodes the upload as the class the page's picker shows.
        label = class_of(request.query_params.get("label"), self.classes)
        data = await read_body(request, MAX_UPLOAD_BYTES)
        if not data:
            raise BadRequest("the upload is empty: send an image file as the request body")
        return await self._run(self._encode_upload, data, invert, label)

    def _encode_upload(self, data: bytes, invert: bool, label: int | None) -> dict[str, Any]:
        from vae.data import to_float

        spec = self.decoder.spec
        with self._uploads:
            pixels = read_upload(data, spec.height, spec.width, spec.channels, invert)
        images = to_float(pixels)
        latent = self.encoder.encode(images, label)[0]
        (reconstruction,) = self.decoder.pictures(latent[None], label)
        return {
            "z": rounded(latent),
            "original": png_data_url(images[0].numpy()),
            "reconstruction": reconstruction,
            "label": None,
            "class": label,
            "warning": self._background_warning(pixels, invert),
        }

    def _background_warning(self, pixels: Any, inverted: bool) -> str | None:
        """The page's line for an upload on a light background given to a model that draws
        dark ones (``vae.backgrounds``): its Invert box is the ``--invert`` of the commands."""
        from vae.backgrounds import count_light

        if not count_light(pixels) or not self.encoder.draws_dark_backgrounds():
            return None
        if inverted:
            return (
                "this image has a light background after inverting, but the model was trained "
                "on dark ones: untick Invert"
            )
        return (
            "this image has a light background, but the model was trained on dark ones: tick "
            "Invert to invert it (x -> 1 - x)"
        )

    async def interpolate(self, request: Request) -> dict[str, Any]:
        body = await json_object(request)
        start = latent_of(body, "a", self.dimensions)
        end = latent_of(body, "b", self.dimensions)
        label = class_of(body.get("label"), self.classes)
        fractions = body.get("t")
        if (
            not isinstance(fractions, list)
            or not 1 <= len(fractions) <= MAX_FRAMES
            or not all(is_number(t) and 0.0 <= t <= 1.0 for t in fractions)
        ):
            raise BadRequest(f"t must be a list of 1 to {MAX_FRAMES} fractions between 0 and 1")

        def work() -> dict[str, Any]:
            path = self.encoder.interpolate(start, end, [float(t) for t in fractions])
            images = self.decoder.pictures(path, label)
            return {"z": [rounded(code) for code in path], "images": images}

        return await self._run(work)

    async def latent_map(self, request: Request) -> dict[str, Any]:
        self.encoder.test_set("mapped")
        found = self.encoder.latent_map
        if found is None:
            raise BadRequest(NO_PLANE, 409)
        return {
            "points": [[round(float(x), 4), round(float(y), 4)] for x, y in found.points],
            "labels": found.labels,
            "axes": list(found.axes),
            "title": found.title,
        }


def _finish(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
