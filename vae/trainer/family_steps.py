"""What a model family adds to training besides its loss: today the refit of a distribution to
its training codes (``Family.refits_codes``: the autoencoder samples from a Gaussian fitted to
them), done after each epoch before its checkpoints are saved."""

from __future__ import annotations

import torch

from vae.data import TRAINING_BINARIZATION_SEED, ImageSet, binarize_once, evaluation_batches
from vae.model import VAE


class FamilySteps:
    """The family's steps at the end of an epoch, for ``model`` trained on ``train``
    (``dynamic``: drawn anew each epoch from grey images)."""

    def __init__(self, model: VAE, train: ImageSet, dynamic: bool) -> None:
        self.model = model
        self.train = train
        self.dynamic = dynamic
        self._code_images: ImageSet | None = None  # the images whose codes are fitted, drawn once

    def end_epoch(self, is_main: bool) -> None:
        """Rank 0 refits what the family fits to its codes (the others save no checkpoint)."""
        if self.model.family.refits_codes and is_main:
            self._refit_from_codes()

    @torch.no_grad()
    def _refit_from_codes(self) -> None:
        """Refitted before each save so that every checkpoint can generate."""
        self.model.eval()
        if self._code_images is None:
            train = self.train
            if self.dynamic:  # the kind of image the model trains on
                train = binarize_once(train, TRAINING_BINARIZATION_SEED)
            self._code_images = train
        codes = torch.cat(
            [self.model.encode(x)[0] for x in evaluation_batches(self._code_images, 1000)]
        )
        self.model.fit_code_distribution(codes)
        self.model.train()
