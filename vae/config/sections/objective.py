"""What the model is trained to minimise: ObjectiveConfig, the run configuration's
``objective`` section (likelihood, KL weight schedule, free bits, ELBO or IWAE bound)."""

from __future__ import annotations

from dataclasses import dataclass

from vae import limits
from vae.config.choices import BETA_SCHEDULES, ELBO_OBJECTIVE, LIKELIHOODS, OBJECTIVES
from vae.config.sections.help_text import choices_text
from vae.config.settings import setting


@dataclass
class ObjectiveConfig:
    """Likelihood, KL weight schedule, free bits, and the bound trained (ELBO or IWAE)."""

    likelihood: str = setting(
        "bce",
        help="bce (Bernoulli), mse (Gaussian: fixed or learned sigma), or the perceptual "
        "ssim / ms-ssim (no likelihood: evaluate refuses them).",
        flags=("--likelihood", "--loss"),
        aliases={"--likelihood-type": (), "--loss-type": ()},
        choices=LIKELIHOODS,
        doc="`bce` (Bernoulli on logits), `mse` (Gaussian with fixed or learned sigma), or the "
        "perceptual `ssim` / `ms-ssim` (see below)",
    )
    gaussian_sigma: float = setting(
        0.1,
        help="Standard deviation of the Gaussian likelihood (mse); with --learn-sigma its start.",
        above=0,
        doc="sigma of the Gaussian likelihood (with `--learn-sigma`: its starting value)",
    )
    learn_sigma: bool = setting(
        False,
        help="mse: learn one sigma per channel (colour data) instead of keeping it fixed.",
        flags=("--learn-sigma/--fixed-sigma",),
        doc="`mse`: learn one sigma per channel (kept at or above 0.001), the usual choice for "
        "colour data; the learned values are in the checkpoint's metadata",
        doc_default="fixed",
    )
    beta: float = setting(
        1.0,
        help="KL weight after warm-up.",
        aliases={"--kld-weight": ("--beta-schedule", "constant", "--beta")},
        at_least=0,
        low_text="zero or positive",
    )
    beta_schedule: str = setting(
        "linear",
        help=choices_text(BETA_SCHEDULES),
        choices=BETA_SCHEDULES,
        doc="`constant`, `linear`, `sigmoid`, `cosine`, `cyclical`; stepped per optimisation step",
    )
    beta_warmup: str = setting(
        "3",
        help="Warm-up length: epochs (10) or steps (2000steps).",
        doc="warm-up length in epochs (`3`) or steps (`2000steps`)",
    )
    beta_cycles: int = setting(
        4,
        help="Cycles within the warm-up (cyclical schedule).",
        at_least=1,
        doc="`cyclical`: cycles within the warm-up",
    )
    beta_ramp_ratio: float = setting(
        0.5,
        help="Fraction of each cycle spent ramping (cyclical schedule).",
        above=0,
        at_most=1,
        low_text="in (0, 1]",
        high_text="in (0, 1]",
        doc="`cyclical`: fraction of each cycle spent ramping from 0 to beta",
    )
    free_bits: float = setting(
        0.0,
        help="Minimum KL per latent dimension in the training loss (nats; 0 = off).",
        at_least=0,
        low_text="zero or positive",
        doc="minimum KL (nats) per latent dimension in the training loss (reported KL is always "
        "the true one); needs `--prior standard`, whose KL splits over dimensions",
        doc_default="0",
    )
    objective: str = setting(
        ELBO_OBJECTIVE,
        help=f"{choices_text(OBJECTIVES)}: what training maximises (iwae: the importance-weighted "
        "bound of --iw-samples samples per image; needs a likelihood and --beta 1).",
        choices=OBJECTIVES,
        doc="`elbo`, or `iwae`: the importance-weighted bound of `--iw-samples` posterior samples "
        "per image (Burda et al. 2016), log (1/K) sum_k p(x,z_k) / q(z_k\\|x); it needs a "
        "likelihood (`bce` or `mse`, not an autoencoder), `--beta 1` and no free bits, and picks "
        "the best checkpoint on its own validation figure (see "
        "[Losses and trackers](../losses-and-trackers.md#the-iwae-bound---objective-iwae))",
    )
    iw_samples: int = setting(
        5,
        help="iwae: posterior samples per image (K) of the bound; 1 gives the ELBO.",
        at_least=1,
        at_most=limits.MAX_IW_SAMPLES,
        doc="`iwae`: posterior samples per image (K); each step decodes K times the batch. "
        "1 gives the ELBO (with the KL sampled)",
    )
