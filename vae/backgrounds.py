"""Background brightness: whether images are light or dark around their edges, and whether a
model draws dark backgrounds, so that a dark digit on white paper shown to a model trained on
white-on-black digits is named (one warning) instead of silently reconstructed as noise.

The model's background is estimated from the model itself, not from the name of its dataset: a
``folder:`` or ``hf:`` dataset says nothing about its colours, and nothing new need be stored in
checkpoints. Every sample of a model trained on dark backgrounds has a dark border, however well
it has learnt the digits, so a few samples decoded from its prior at a fixed seed (one small
decoder batch) settle it; the median over samples and border pixels is not moved by a stroke that
reaches the edge or an odd sample. A model whose samples' borders are not clearly dark (natural
images, light backgrounds) is never warned about.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from vae.model import VAE

# Samples decoded from the prior to estimate the model's background, and their seed.
BACKGROUND_SAMPLES = 16
BACKGROUND_SEED = 0
# A model draws dark backgrounds when its samples' median border pixel is below this; an image
# is light when its own median border pixel is above LIGHT_IMAGE (both on a 0-1 scale).
DARK_MODEL = 0.25
LIGHT_IMAGE = 0.5


def border_brightness(images: torch.Tensor) -> torch.Tensor:
    """The median border pixel of each image [N, C, H, W] (uint8, or float in [0, 1]), on a 0-1
    scale: the outer ring of about a fourteenth of the side (2 pixels of 28), where a centred
    digit or object leaves the background showing."""
    images = images.detach().cpu()
    scale = 255.0 if images.dtype == torch.uint8 else 1.0
    grey = images.float().mean(dim=1) / scale  # [N, H, W]: a colour image's pixels as grey
    height, width = grey.shape[1:]
    ring = max(1, min(height, width) // 14)
    inside = torch.zeros(height, width, dtype=torch.bool)
    inside[ring : height - ring, ring : width - ring] = True
    return grey[:, ~inside].median(dim=1).values


def draws_dark_backgrounds(model: VAE) -> bool:
    """Whether ``model``'s samples have dark borders (see the module's docstring)."""
    from vae.sampling import sample_from_model

    samples = sample_from_model(model, BACKGROUND_SAMPLES, BACKGROUND_SEED)
    return bool(border_brightness(samples).median() < DARK_MODEL)


def count_light(images: torch.Tensor) -> int:
    """How many of ``images`` have light backgrounds."""
    return int((border_brightness(images) > LIGHT_IMAGE).sum())


def mostly_light(light: int, total: int) -> bool:
    """More than half of the images are light: the inputs as a whole are on light backgrounds
    (a few light images among dark ones are the user's choice, not a mistake)."""
    return 2 * light > total


def invert(images: torch.Tensor) -> torch.Tensor:
    """uint8 images with every pixel ``x`` replaced by ``255 - x`` (exact, before scaling)."""
    return 255 - images


def background_warning(model: VAE, images: torch.Tensor, inverted: bool) -> str | None:
    """One line for the user when most of ``images`` (uint8 [N, C, H, W], as the model gets
    them) have light backgrounds but ``model`` draws dark ones; None otherwise. ``inverted``:
    the images were inverted at the user's request (then the advice is to stop)."""
    total = int(images.shape[0])
    light = count_light(images)
    if not mostly_light(light, total) or not draws_dark_backgrounds(model):
        return None
    after = " after --invert" if inverted else ""
    advice = "leave out --invert" if inverted else "pass --invert to invert them (x -> 1 - x)"
    return (
        f"{light} of {total} input images have light backgrounds{after}, but the model was "
        f"trained on dark ones: {advice}"
    )
