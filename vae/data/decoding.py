"""Image files: finding them and decoding them with Pillow into uint8 arrays, with the guards that
hostile or damaged files need (a pixel limit and a JPEG scan limit checked before decoding,
non-finite pixels refused, every decoder error turned into one line naming the file), on every
core for large folders.

Torch-free at import: the decoding processes need only this module, Pillow and NumPy.
"""

from __future__ import annotations

import functools
import io
import math
import os
import struct
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vae.errors import DataError, first_line

if TYPE_CHECKING:
    import numpy as np
    import torch

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
MAX_IMAGE_PIXELS = 40_000_000  # larger files are refused before decoding (decompression bombs)
# A progressive JPEG is decoded scan by scan, each scan a pass over every block of the image (10 ms
# at 4096 x 4096), and nothing in the format bounds their number: a small file that repeats its
# last scan thousands of times decodes for minutes. libjpeg's and mozjpeg's progressive scripts
# write 6 to 10 scans (a few more with mozjpeg's scan optimisation), so a JPEG with more than this
# many is refused before decoding, as an image over MAX_IMAGE_PIXELS is.
MAX_JPEG_SCANS = 100
_GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")
# Images handed to a decoding process at a time: enough to hide the hand-over, few enough that
# the progress bar moves and an interrupted decode loses little.
CHUNK_IMAGES = 64
# Below this many images a process pool costs more to start than it saves.
POOL_MIN_IMAGES = 256

# An encoded image: a file, or the bytes of one (a Hugging Face dataset's image column).
Encoded = Path | bytes


# What Pillow's decoders raise on damaged files besides OSError: a broken PNG chunk gives
# SyntaxError, a short one EOFError or struct.error, odd headers the others.
DECODER_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    struct.error,
    IndexError,
    KeyError,
    TypeError,
    ZeroDivisionError,
)


def read_image_files(
    files: Sequence[Encoded], size: int, channels: int | None, crop: int | None = None
) -> torch.Tensor:
    """Image files -> uint8 [N, C, size, size] in this process; channels None infers from the
    first file. See :func:`decode_image` for what is done to each image."""
    import numpy as np
    import torch

    if channels is None:
        channels = image_channels(files[0]) if files else 1
    images = np.empty((len(files), channels, size, size), dtype=np.uint8)
    for index, source in enumerate(files):
        images[index] = decode_image(source, size, channels, crop)
    return torch.from_numpy(images)


def decode_into(
    out: np.ndarray,
    sources: Sequence[Encoded],
    crop: int | None,
    workers: int,
    advance: Callable[[int], None],
) -> None:
    """Decode ``sources`` into ``out`` (uint8 [N, C, size, size], N = len(sources)) with
    ``workers`` processes, calling ``advance(n)`` as each chunk of n images lands.

    Chunks go to the pool in order and are written into ``out`` where they belong, so the result
    is the same for any number of workers. The first damaged file stops everything with its
    one-line error.
    """
    _, channels, size, _ = out.shape
    chunks = [
        (list(sources[begin : begin + CHUNK_IMAGES]), size, channels, crop, begin)
        for begin in range(0, len(sources), CHUNK_IMAGES)
    ]
    if workers <= 1 or len(sources) < POOL_MIN_IMAGES:
        for chunk in chunks:
            _land(out, _decode_chunk(chunk), advance)
        return
    import concurrent.futures
    import multiprocessing

    # Forked on Linux, as torch's own DataLoader workers are: the workers run only Pillow and
    # NumPy, and a fresh interpreter (spawn, forkserver) first imports the parent's main module
    # again, torch included: seconds per worker on a 2-core machine.
    method = "fork" if sys.platform == "linux" else "spawn"
    context = multiprocessing.get_context(method)
    with concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=context, initializer=_end_with_parent
    ) as pool:
        pending: set[concurrent.futures.Future[Any]] = set()
        queue = iter(chunks)
        try:
            # At most a few chunks in flight per worker: bounded memory, even for ImageNet.
            for chunk in queue:
                pending.add(pool.submit(_decode_chunk, chunk))
                if len(pending) >= 4 * workers:
                    done, pending = concurrent.futures.wait(
                        pending, return_when=concurrent.futures.FIRST_COMPLETED
                    )
                    for future in done:
                        _land(out, future.result(), advance)
            for future in concurrent.futures.as_completed(pending):
                _land(out, future.result(), advance)
        except BaseException:
            for future in pending:
                future.cancel()
            raise


def _end_with_parent() -> None:
    """A decoding process ends when the process that started it does (kill -9 included): else
    it would wait for work for ever, since forked workers keep each other's end of the queue."""
    if sys.platform == "linux":
        import ctypes
        import signal

        PR_SET_PDEATHSIG = 1  # noqa: N806 - the constant's name in <sys/prctl.h>
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _land(
    out: np.ndarray,
    result: tuple[int, np.ndarray | None, str | None],
    advance: Callable[[int], None],
) -> None:
    """Put one decoded chunk in its place (or raise the error of its damaged file)."""
    begin, images, error = result
    if error is not None or images is None:
        raise DataError(error or "decoding failed")
    out[begin : begin + len(images)] = images
    advance(len(images))


def _decode_chunk(
    chunk: tuple[list[Encoded], int, int, int | None, int],
) -> tuple[int, np.ndarray | None, str | None]:
    """A decoding process's job: (first index, images, None), or (first index, None, the error's
    one line): errors travel as text, so that nothing but plain values crosses processes."""
    import numpy as np

    sources, size, channels, crop, begin = chunk
    images = np.empty((len(sources), channels, size, size), dtype=np.uint8)
    try:
        for index, source in enumerate(sources):
            images[index] = decode_image(source, size, channels, crop)
    except DataError as error:
        return begin, None, str(error)
    return begin, images, None


def image_channels(source: Encoded) -> int:
    """1 for a grey image, 3 otherwise: what ``channels`` None becomes for a folder."""
    from PIL import UnidentifiedImageError

    try:
        with _open(source) as image:
            return 1 if image.mode in _GREY_MODES else 3
    except (*DECODER_ERRORS, UnidentifiedImageError) as error:
        raise DataError(f"cannot read image {_name(source)}: {first_line(error)}") from None


def decode_image(source: Encoded, size: int, channels: int, crop: int | None = None) -> np.ndarray:
    """One image -> uint8 [channels, size, size].

    Each image is centre-cropped to a square (``crop`` pixels a side, else the largest centred
    square) and resized, so faces and objects keep their proportions. A JPEG much larger than
    ``size`` is decoded at a reduced scale first (Pillow's ``draft``: the DCT skips detail the
    resize would discard, several times faster), never below the crop's final size. 16-bit and
    float images are scaled to 8 bits (not clipped), and a float image with NaN or infinite pixels
    is refused; transparency is composited onto black, the background of the datasets these
    models train on; palettes are expanded. Images over MAX_IMAGE_PIXELS, and JPEGs of more than
    MAX_JPEG_SCANS scans, are refused before decoding.
    """
    import warnings

    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with _open(source) as image:
                width, height = image.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise DataError(
                        f"cannot read image {_name(source)}: {width}x{height} pixels is over the "
                        f"{MAX_IMAGE_PIXELS:,}-pixel limit (refused before decoding)"
                    )
                if image.format in ("JPEG", "MPO"):
                    _check_scans(image, source)
                side = min(width, height, crop or max(width, height))
                if image.format == "JPEG" and side > size:
                    # Ask for the whole image at the scale that keeps the crop >= size pixels.
                    wanted = (math.ceil(width * size / side), math.ceil(height * size / side))
                    image.draft(image.mode, wanted)
                    scale = image.size[0] / width
                    width, height = image.size
                    side = min(width, height, max(size, round(side * scale)))
                converted = _to_8bit(image, channels)
                left, top = (width - side) // 2, (height - side) // 2
                converted = converted.resize(
                    (size, size),
                    Image.Resampling.BILINEAR,
                    box=(left, top, left + side, top + side),
                )
                array = np.asarray(converted, dtype=np.uint8)
    except (*DECODER_ERRORS, UnidentifiedImageError, Image.DecompressionBombError) as error:
        raise DataError(f"cannot read image {_name(source)}: {first_line(error)}") from None
    except Image.DecompressionBombWarning as error:
        raise DataError(f"cannot read image {_name(source)}: {error}") from None
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


@functools.cache
def image_formats() -> tuple[str, ...]:
    """Pillow's names of the formats images are read in: those of IMAGE_EXTENSIONS. Pillow would
    otherwise judge a file by its content and try every format it knows, whatever its name: an
    EPS or PDF file named ``.png`` would be handed to Ghostscript."""
    from PIL import Image

    known = Image.registered_extensions()
    return tuple(sorted({known[ext] for ext in IMAGE_EXTENSIONS if ext in known}))


def _check_scans(image: Any, source: Encoded) -> None:
    """Refuse a JPEG with more than MAX_JPEG_SCANS scans, from the bytes it is decoded from,
    before decoding.

    Every start-of-scan marker is the byte pair FF DA, and the data of a scan cannot hold the pair
    (an FF byte there is followed by 00, or by D0-D7 in a restart marker), so counting the pairs
    in the whole file is a bound on the scans the decoder reads that no arrangement of segments
    can slip past; other segments (an EXIF thumbnail, an ICC profile) add a few at most.
    """
    if isinstance(source, bytes):
        data = source
    else:  # through the file Pillow opened: the bytes counted are the bytes decoded
        position = image.fp.tell()
        image.fp.seek(0)
        data = image.fp.read()
        image.fp.seek(position)
    scans = _pairs(data, 0xFFDA)
    if scans > MAX_JPEG_SCANS:
        raise DataError(
            f"cannot read image {_name(source)}: a JPEG of {scans:,} scans is over the limit of "
            f"{MAX_JPEG_SCANS} (refused before decoding)"
        )


def _pairs(data: bytes, pair: int) -> int:
    """How often the two bytes ``pair`` (big-endian) occur in ``data``: as 16-bit words at even
    and at odd offsets, with NumPy (bytes.count is several times slower on JPEG data, whose
    many FF bytes each start a partial match)."""
    import numpy as np

    array = np.frombuffer(data, dtype=np.uint8)
    found = 0
    for start in (0, 1):
        end = start + (len(array) - start) // 2 * 2
        found += int(np.count_nonzero(array[start:end].view(">u2") == pair))
    return found


def _open(source: Encoded) -> Any:
    from PIL import Image

    opened = io.BytesIO(source) if isinstance(source, bytes) else source
    return Image.open(opened, formats=image_formats())


def _name(source: Encoded) -> str:
    return f"of {len(source)} bytes" if isinstance(source, bytes) else str(source)


def default_workers() -> int:
    """Every core this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _to_8bit(image: Any, channels: int) -> Any:
    """A PIL image in mode L (channels 1) or RGB (channels 3), from any mode Pillow opens."""
    import numpy as np
    from PIL import Image

    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        values = np.asarray(image, dtype=np.float64)
        if not np.isfinite(values).all():
            # NaN would become 0 and make max() NaN, skipping the scaling: a wrong image, silently.
            raise ValueError("it has NaN or infinite pixel values")
        if image.mode != "F":
            values = values / 257.0  # integer grey images are 16-bit in practice (PNG, TIFF)
        elif values.max(initial=0.0) <= 1.0:
            values = values * 255.0  # float images in [0, 1]; otherwise already in [0, 255]
        image = Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), mode="L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        image = image.convert("RGBA")
        black = Image.new("RGBA", image.size, (0, 0, 0, 255))
        image = Image.alpha_composite(black, image)
    return image.convert("L" if channels == 1 else "RGB")


def collect_image_files(path: Path) -> list[Path]:
    """An image file, or every image file under a folder (sorted)."""
    if path.is_dir():
        return sorted(
            p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
        )
    if path.is_file():
        return [path]
    raise DataError(f"image file or folder not found: {path}")
