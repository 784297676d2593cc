"""The explorer's torch half, loaded in the background: the encoder, the test images it shows,
the order of the latent dimensions and the latent map.

Each piece is computed by the function the still pictures use (``vae.visualize.load_inputs``,
``vae.latent.traversal_order``, ``vae.latent.plane_of``), so the page orders its sliders as
``visualize traverse`` orders its rows and maps the codes as ``visualize latent-map`` does.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vae.errors import VAEError, first_line

if TYPE_CHECKING:
    import torch

    from vae.model import VAE
    from vae.reporting import Reporter
    from vae.visualize import Inputs

# Test images in the page's strip (the first ones of the test split, in order).
STRIP_SIZE = 20

LOADING, READY, FAILED = "loading", "ready", "failed"
NO_PLANE = "a 1-D latent has no plane to map"
# The latent map is drawn from the test images: when they fail, the page says why once, beside
# Encode, and the map points there.
MAP_NEEDS_TEST_IMAGES = "it is drawn from the test images, which did not load (see Encode)"


@dataclass
class Feature:
    """The state of one background feature as the page shows it: loading, ready or failed
    (with the one-line reason)."""

    state: str = LOADING
    reason: str = ""

    def as_json(self) -> dict[str, str]:
        """For /api/status."""
        return {"state": self.state, "reason": self.reason}


@dataclass
class TestImages:
    """Images of the checkpoint's test set and their posterior means."""

    images: torch.Tensor  # float [N, C, H, W] in [0, 1], as they were encoded
    labels: torch.Tensor | None
    means: np.ndarray  # [N, D]
    # The class a conditional model encoded each as (its own label), else None.
    condition: torch.Tensor | None = None


@dataclass
class LatentMap:
    """The test set's posterior means in 2-D, as ``visualize latent-map`` draws them."""

    points: np.ndarray  # [N, 2]
    labels: list[int] | None
    axes: tuple[str, str]
    title: str


@dataclass
class Encoder:
    """What needs the torch model, filled in by :meth:`load` (in a background thread)."""

    checkpoint: Path
    dataset: str | None = None  # None: the checkpoint's own, when it is a named dataset
    data_dir: str | None = None
    download: bool = False
    limit: int | None = None
    model: VAE | None = None
    strip: TestImages | None = None  # grey test images, shown and encoded as they look
    mapped: TestImages | None = None  # test images as the likelihood scores them
    order: list[int] | None = None
    inactive: list[int] = field(default_factory=list)
    importance: list[float] | None = None
    latent_map: LatentMap | None = None
    status: dict[str, Feature] = field(
        default_factory=lambda: {
            "encoder": Feature(),
            "test_images": Feature(),
            "latent_map": Feature(),
        }
    )
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _dark: bool | None = field(default=None, init=False, repr=False)

    def start(self, reporter: Reporter) -> threading.Thread:
        """Load everything in a daemon thread (Ctrl-C need not wait for it); failures are
        reported as one warning each and shown on the page."""
        thread = threading.Thread(target=self.load, args=(reporter,), daemon=True)
        thread.start()
        return thread

    def load(self, reporter: Reporter) -> None:
        """The encoder first (uploads need only it), then the test images and what they give."""
        try:
            from vae.checkpoint import load_model

            model = load_model(self.checkpoint, "cpu")
        except VAEError as error:
            self._fail("encoder", str(error), reporter)
            self._fail("test_images", "the encoder did not load", reporter, quiet=True)
            return
        except Exception as error:  # noqa: BLE001 - a background thread has no handler above it
            self._fail("encoder", first_line(error), reporter)
            self._fail("test_images", "the encoder did not load", reporter, quiet=True)
            return
        with self._lock:
            self.model = model
            self.status["encoder"] = Feature(READY)
        try:
            self._load_test_images()
        except VAEError as error:
            from vae.config import flag_of

            # Spelled as the command's flags: the page and the terminal belong to `vae explore`,
            # whose own images come from uploads, not --input.
            spell = lambda name: "an upload" if name == "input" else flag_of(name)  # noqa: E731
            self._fail("test_images", error.render(spell), reporter)
        except Exception as error:  # noqa: BLE001 - as above
            self._fail("test_images", first_line(error), reporter)
        else:
            with self._lock:
                self.status["test_images"] = Feature(READY)
                found = self.latent_map is not None
                self.status["latent_map"] = Feature(READY) if found else Feature(FAILED, NO_PLANE)

    def _fail(self, name: str, reason: str, reporter: Reporter, quiet: bool = False) -> None:
        with self._lock:
            self.status[name] = Feature(FAILED, reason)
            if name == "test_images":  # the map is drawn from them: the page says why once
                self.status["latent_map"] = Feature(FAILED, MAP_NEEDS_TEST_IMAGES)
        if not quiet:
            reporter.warning(f"explorer: no {name.replace('_', ' ')}: {reason}")

    def _load_test_images(self) -> None:
        from vae.data import ImageSource
        from vae.latent import plane_of, traversal_order
        from vae.visualize import load_inputs

        source = ImageSource(dataset=self.dataset, data_dir=self.data_dir, download=self.download)
        # As the likelihood scores them (binarized once for a Bernoulli model), as traverse
        # and latent-map encode them; the strip shows the grey images, as interpolate does.
        scored = load_inputs(self.checkpoint, replace(source, limit=self.limit), model=self.model)
        grey = load_inputs(
            self.checkpoint, replace(source, limit=STRIP_SIZE), binarize=False, model=self.model
        )
        codes = scored.codes()
        order = traversal_order(codes, include_inactive=True)
        active = codes.active()
        mapped = _test_images(scored)
        strip = _test_images(grey)
        latent_map = None
        if codes.means.shape[1] >= 2:
            plane = plane_of(codes.means)
            title = (
                f"{scored.name}, {scored.source} ({codes.means.shape[0]:,} images), {plane.label}"
            )
            if plane.explained is not None:
                title += f" ({100 * plane.explained:.0f}% of variance)"
            latent_map = LatentMap(
                plane.project(codes.means).numpy(),
                None if scored.labels is None else [int(label) for label in scored.labels],
                ("z1", "z2") if plane.explained is None else ("PC1", "PC2"),
                title,
            )
        with self._lock:
            self.mapped, self.strip, self.latent_map = mapped, strip, latent_map
            self.order = [d for d in order if bool(active[d])]
            self.inactive = [d for d in order if not bool(active[d])]
            self.importance = [float(value) for value in codes.importance()]

    def encode(self, images: torch.Tensor, label: int | None = None) -> np.ndarray:
        """Posterior means [N, D] of float images [N, C, H, W] in [0, 1] (a conditional
        model's as the class ``label``, an index)."""
        import torch

        from vae.latent import encode_images

        if self.model is None:
            raise NotReady("the encoder")
        labels = None if label is None else torch.full((len(images),), label, dtype=torch.long)
        return encode_images(self.model, images, labels=labels).means.numpy()

    def draws_dark_backgrounds(self) -> bool:
        """Whether the model's samples have dark borders (``vae.backgrounds``), found on the
        first light upload and kept (the same for every request)."""
        if self.model is None:
            raise NotReady("the encoder")
        if self._dark is None:
            from vae.backgrounds import draws_dark_backgrounds

            self._dark = draws_dark_backgrounds(self.model)
        return self._dark

    def test_set(self, which: str) -> TestImages:
        """``strip`` (grey test images) or ``mapped`` (those the map shows)."""
        found = self.strip if which == "strip" else self.mapped
        if found is None:
            reason = self.status["test_images"].reason
            raise NotReady("the test images", reason, plural=True)
        return found

    def interpolate(self, start: np.ndarray, end: np.ndarray, fractions: list[float]) -> np.ndarray:
        """Codes [T, D] at ``fractions`` of the spherical path from ``start`` to ``end``
        (``vae.latent.slerp``, as ``visualize interpolate`` walks)."""
        if self.model is None:  # torch is imported once the encoder is there
            raise NotReady("interpolation")
        import torch

        from vae.latent import slerp

        t = torch.tensor(fractions, dtype=torch.float32)
        path = slerp(torch.from_numpy(start).float(), torch.from_numpy(end).float(), t)
        return path.numpy()


class NotReady(VAEError):
    """A feature the page asked for before its background load finished (or after it failed)."""

    def __init__(self, what: str, reason: str = "", *, plural: bool = False) -> None:
        detail = f" ({reason})" if reason else ""
        verb = "are" if plural else "is"
        state = "not available" if reason else "still loading"
        super().__init__(f"{what} {verb} {state}{detail}")


def _test_images(inputs: Inputs) -> TestImages:
    return TestImages(inputs.images, inputs.labels, inputs.codes().means.numpy(), inputs.condition)
