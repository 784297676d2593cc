"""The four sections of a run configuration, one module each, one field per setting, each defined
once with its Option: what the images are (DataConfig), the model (ModelConfig), its objective
(ObjectiveConfig) and its optimisation and bookkeeping (TrainConfig)."""

from vae.config.sections.data import MAX_DECODE_WORKERS, DataConfig
from vae.config.sections.model import ModelConfig
from vae.config.sections.objective import ObjectiveConfig
from vae.config.sections.train import TrainConfig

__all__ = ["MAX_DECODE_WORKERS", "DataConfig", "ModelConfig", "ObjectiveConfig", "TrainConfig"]
