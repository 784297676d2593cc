"""The hierarchical VAE family (``model_type`` "hvae"): ``latent_groups`` groups of latent
variables with top-down inference, as in the Ladder VAE (Sønderby et al. 2016) and NVAE (Vahdat &
Kautz 2020). Its modules: ``family`` (the Family: settings, checks, KL per group; no torch),
``layout`` (its tensors and sizes, no torch), ``prior`` (its code's prior), ``module`` (torch),
``densities`` (torch: the groups' densities) and ``numpy_decoder`` (the torch-free generative
path). docs/models.md says what it is and what makes it train.
"""

from vae.models.hierarchical.family import FAMILY, HierarchicalVAE

__all__ = ["FAMILY", "HierarchicalVAE"]
