"""safetensors checkpoints: self-describing metadata, atomic saves, one loading factory.

Reading a header needs no torch (``info`` relies on that); torch is imported only by the functions
that move tensors. There is no pickle and no ``torch.load`` anywhere: a checkpoint from a stranger
cannot run code.

One job per module:

- :mod:`~vae.checkpoint.names`: the format's name and version, file names, tensor prefixes;
- :mod:`~vae.checkpoint.header`: reading and checking the header and its vae metadata;
- :mod:`~vae.checkpoint.layout`: the data area's layout, checked from the tensor table;
- :mod:`~vae.checkpoint.tensors`: the model's tensor table checks, reading tensors, format-1
  names;
- :mod:`~vae.checkpoint.file`: header, spec, sha256 and weights in one pass over one open file;
- :mod:`~vae.checkpoint.saving`: the metadata written and the atomic save;
- :mod:`~vae.checkpoint.factory`: the one place a model is rebuilt from a checkpoint.
"""

from __future__ import annotations

from vae.checkpoint.factory import load_checkpoint, load_model
from vae.checkpoint.file import CheckpointFile, read_checkpoint
from vae.checkpoint.header import CheckpointHeader, read_header, read_metadata
from vae.checkpoint.layout import DTYPE_SIZES
from vae.checkpoint.names import (
    BEST_NAME,
    DEFAULT_CHECKPOINT,
    FORMAT_NAME,
    FORMAT_VERSION,
    LAST_NAME,
    MODEL_PREFIX,
    OPTIMIZER_PREFIX,
    RNG_PREFIX,
)
from vae.checkpoint.saving import build_metadata, save_checkpoint
from vae.checkpoint.tensors import (
    check_model_tensors,
    check_tensor_table,
    data_for_model,
    read_tensors,
)

__all__ = [
    "BEST_NAME",
    "DEFAULT_CHECKPOINT",
    "DTYPE_SIZES",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "LAST_NAME",
    "MODEL_PREFIX",
    "OPTIMIZER_PREFIX",
    "RNG_PREFIX",
    "CheckpointFile",
    "CheckpointHeader",
    "build_metadata",
    "check_model_tensors",
    "check_tensor_table",
    "data_for_model",
    "load_checkpoint",
    "load_model",
    "read_checkpoint",
    "read_header",
    "read_metadata",
    "read_tensors",
    "save_checkpoint",
]
