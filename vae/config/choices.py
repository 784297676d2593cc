"""The values the settings choose from. The model vocabulary is the model families' own
(vae.models: the families and the VAE's priors) and the reconstruction losses' (vae.likelihoods);
the dataset names are the data registry's (vae.data.registry); every list is torch-free."""

from __future__ import annotations

from vae.data.registry import DATASETS, names_read_by
from vae.likelihoods import LIKELIHOODS
from vae.models import FAMILIES, PRIOR_NAMES

# Dataset names come from the data registry (torch-free), which lists each dataset once.
MEDMNIST_DATASETS = names_read_by("medmnist")
IMAGE_TREE_DATASETS = names_read_by("trees")
ARCHITECTURES = ("mlp", "conv")
# The model families (vae.models) and the priors of the VAE family (vae.models.priors): standard
# N(0, I); mog, a learned mixture of Gaussians (Tomczak & Welling 2018, "MoG prior").
MODEL_TYPES = tuple(FAMILIES)
PRIORS = PRIOR_NAMES
BINARIZATIONS = ("dynamic", "static", "none")
BETA_SCHEDULES = ("constant", "linear", "sigmoid", "cosine", "cyclical")
# What training maximises: the ELBO, or the k-sample importance-weighted bound of Burda et al.
# (2016), IWAE.
ELBO_OBJECTIVE, IWAE_OBJECTIVE = "elbo", "iwae"
OBJECTIVES = (ELBO_OBJECTIVE, IWAE_OBJECTIVE)
OPTIMIZERS = ("adam", "adamw")
LR_SCHEDULES = ("none", "cosine", "plateau")
DEVICES = ("auto", "cpu", "cuda", "mps")
TRACKERS = ("none", "tensorboard", "wandb")
# Where decoded images live while training: see vae.data.storage for the rule "auto" follows.
STORAGES = ("auto", "memory", "mapped")

__all__ = [
    "ARCHITECTURES",
    "BETA_SCHEDULES",
    "BINARIZATIONS",
    "DATASETS",
    "DEVICES",
    "ELBO_OBJECTIVE",
    "IMAGE_TREE_DATASETS",
    "IWAE_OBJECTIVE",
    "LIKELIHOODS",
    "LR_SCHEDULES",
    "MEDMNIST_DATASETS",
    "MODEL_TYPES",
    "OBJECTIVES",
    "OPTIMIZERS",
    "PRIORS",
    "STORAGES",
    "TRACKERS",
]
