"""Variational autoencoders for images: training, safetensors checkpoints, pictures and numbers.

Importing the package is cheap on purpose: it does not import torch, so that ``info`` can read a
checkpoint header in a fraction of a second.
"""

__version__ = "0.1.0"
