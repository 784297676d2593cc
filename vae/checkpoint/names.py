"""What the checkpoint format calls things: its name and version, the run folder's checkpoint
file names, and the prefixes that sort a file's tensors into model, optimizer and random state."""

from __future__ import annotations

from pathlib import Path

FORMAT_NAME = "vae-checkpoint"
# 2: layers named by the layer plan (``decoder.deconv1``); 1 named them by their position in
# nn.Sequential containers (``decoder.deconv.0``), renamed on load (``vae.plan.version1_names``).
FORMAT_VERSION = 2
BEST_NAME = "checkpoint_best.safetensors"
LAST_NAME = "checkpoint_last.safetensors"
DEFAULT_CHECKPOINT = Path("pretrained") / BEST_NAME
MODEL_PREFIX = "model."
OPTIMIZER_PREFIX = "optimizer."
RNG_PREFIX = "rng."
