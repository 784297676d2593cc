"""The reconstruction losses a model can train with, torch-free: read by the settings and by the
model families."""

from __future__ import annotations

LIKELIHOODS = ("bce", "mse", "ssim", "ms-ssim")
# Perceptual reconstruction losses: trained like a likelihood, but not one (no NLL, no bits/dim).
PERCEPTUAL_LOSSES = ("ssim", "ms-ssim")
