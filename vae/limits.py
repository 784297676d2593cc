"""Upper bounds on every size that decides an allocation, from a checkpoint or an option.

A 3 KB file or a mistyped option must never make a command allocate gigabytes: each of these is
checked before anything is built. The bounds are far above any model or picture this package is
meant for (docs/checkpoints.md, "Limits", lists them); raising one is a one-line change here.
"""

from __future__ import annotations

from vae.errors import ConfigError

MAX_IMAGE_SIDE = 1024  # pixels, height and width of a model's images
MAX_LATENT_DIM = 4096
MAX_LAYER_WIDTH = 16384  # a dense hidden layer's units
MAX_CONV_WIDTH = 4096  # a convolution's channels
MAX_LAYERS = 32  # dense or conv layers in encoder or decoder
# A hierarchical VAE's groups of latents, each with a residual cell in both passes: deeper than
# NVAE's deepest (about 40 groups) and VDVAE's (75 blocks); the parameter and activation bounds
# still apply to the whole.
MAX_LATENT_GROUPS = 256
MAX_PRIOR_COMPONENTS = 100_000
# A VampPrior's pseudo-inputs: every training step encodes all of them (Tomczak & Welling use 500).
MAX_PSEUDO_INPUTS = 10_000
# Log-variances of posteriors and priors are clamped here: exp(logvar) stays finite and away from
# zero however wild an encoder's output or a stored prior gets.
LOGVAR_MIN, LOGVAR_MAX = -30.0, 20.0
# A conditional model's classes (ImageNet has 1,000, Places365 365) and the characters of one
# class's name (a folder's name, a dataset's label text): both are read from checkpoints.
MAX_CLASSES = 10_000
MAX_CLASS_NAME_CHARS = 200
MAX_PARAMETERS = 500_000_000  # 2 GB of float32 weights
# A checkpoint file: the largest model's float32 weights with Adam's two moments (a training
# checkpoint), and a header. Checked on every file read, and before a Hub download starts.
MAX_CHECKPOINT_BYTES = 3 * 4 * MAX_PARAMETERS + 100 * 1024 * 1024
MAX_IMAGE_ACTIVATIONS = 1 << 24  # values in a model's largest layer output, per image
MAX_BATCH_SIZE = 65536
MAX_PICTURE_IMAGES = 10_000  # images in one grid, GIF or mosaic (generate, visualize)
# Values (images x channels x height x width) in one picture: 200 MB as float32 pixels, a few
# seconds of decoding for the largest models this package accepts.
MAX_PICTURE_PIXELS = 50_000_000
# Layer-output values decoded at once for a picture (images per batch x the largest layer
# output): keeps a decode's working memory near 200 MB whatever the image size or count.
DECODE_BATCH_VALUES = 1 << 23
MAX_IMPORTANCE_SAMPLES = 1_000_000  # evaluate --k
# train --iw-samples: each training image is decoded this many times a step (Burda et al. train
# with up to 50); the bound keeps a mistyped value from asking for batch x K decodes at once.
MAX_IW_SAMPLES = 1000
MAX_REPEATS = 1000  # evaluate --repeats
# Scales of the prior's spread (generate --temperature) and of a sweep in standard deviations
# (visualize --span): far beyond anything informative, and far below float32's range.
MAX_TEMPERATURE = 100.0
MAX_SPAN = 100.0


def check_at_most(name: str, value: int | float, bound: int | float, hint: str = "") -> None:
    """Raise ConfigError naming the setting ``name`` when ``value`` exceeds ``bound``."""
    if value > bound:
        extra = f"; {hint}" if hint else ""
        raise ConfigError(f"{name} is {value:,}, more than the limit of {bound:,}{extra}")


def check_picture(setting: str, images: int, channels: int, height: int, width: int) -> None:
    """Raise ConfigError when a picture of ``images`` decoded images of this shape would exceed
    MAX_PICTURE_IMAGES or MAX_PICTURE_PIXELS; ``setting`` names what decides the count."""
    check_at_most(setting, images, MAX_PICTURE_IMAGES)
    per_image = channels * height * width
    if images * per_image > MAX_PICTURE_PIXELS:
        raise ConfigError(
            f"{setting} is {images:,}: that many {channels}x{height}x{width} images exceed the "
            f"limit of {MAX_PICTURE_PIXELS:,} values in one picture; use at most "
            f"{max(1, MAX_PICTURE_PIXELS // per_image):,}"
        )
