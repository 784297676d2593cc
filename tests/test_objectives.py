import math

import pytest
import torch

from vae.config import ObjectiveConfig
from vae.objectives import (
    BetaSchedule,
    bernoulli_log_likelihood,
    elbo_terms,
    gaussian_kl,
    gaussian_log_likelihood,
)


def test_kl_matches_closed_form_for_one_dimension():
    mu, logvar = torch.tensor([[0.7]]), torch.tensor([[math.log(0.25)]])
    # KL(N(0.7, 0.25) || N(0, 1)) = 0.5 * (0.25 + 0.49 - 1 - ln 0.25)
    expected = 0.5 * (0.25 + 0.49 - 1 - math.log(0.25))
    assert gaussian_kl(mu, logvar).item() == pytest.approx(expected, rel=1e-6)


def test_kl_is_zero_for_the_prior_and_positive_otherwise():
    assert torch.all(gaussian_kl(torch.zeros(3, 5), torch.zeros(3, 5)) == 0)
    assert torch.all(gaussian_kl(torch.randn(3, 5), torch.randn(3, 5)) > 0)


def test_kl_matches_monte_carlo_estimate():
    generator = torch.Generator().manual_seed(0)
    mu = torch.tensor([0.5, -1.0, 2.0])
    logvar = torch.tensor([-1.0, 0.5, 0.0])
    std = torch.exp(0.5 * logvar)
    z = mu + std * torch.randn(400_000, 3, generator=generator)
    log_q = (-0.5 * ((z - mu) / std) ** 2 - torch.log(std) - 0.5 * math.log(2 * math.pi)).sum(1)
    log_p = (-0.5 * z**2 - 0.5 * math.log(2 * math.pi)).sum(1)
    monte_carlo = (log_q - log_p).mean().item()
    closed_form = gaussian_kl(mu, logvar).sum().item()
    assert monte_carlo == pytest.approx(closed_form, abs=0.02)


def test_bernoulli_log_likelihood_by_hand():
    logits = torch.tensor([[[[0.0, 2.0], [-1.0, 3.0]]]])
    x = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    sigmoid = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    expected = (
        math.log(0.5)
        + math.log(1 - sigmoid(2.0))
        + math.log(1 - sigmoid(-1.0))
        + math.log(sigmoid(3.0))
    )
    assert bernoulli_log_likelihood(logits, x).item() == pytest.approx(expected, rel=1e-6)


def test_bernoulli_log_likelihood_handles_grey_targets():
    # With p = 0.5 the cross-entropy is ln 2 per pixel whatever the target value.
    value = bernoulli_log_likelihood(torch.zeros(1, 1, 2, 2), torch.full((1, 1, 2, 2), 0.3))
    assert value.item() == pytest.approx(-4 * math.log(2), rel=1e-6)


def test_gaussian_log_likelihood_by_hand():
    mean = torch.tensor([[[[0.5, 0.2]]]])
    x = torch.tensor([[[[0.7, 0.2]]]])
    sigma = 0.1
    expected = sum(
        -((a - b) ** 2) / (2 * sigma**2) - math.log(sigma) - 0.5 * math.log(2 * math.pi)
        for a, b in ((0.7, 0.5), (0.2, 0.2))
    )
    assert gaussian_log_likelihood(mean, x, sigma).item() == pytest.approx(expected, rel=1e-5)


def test_elbo_terms_sum_per_image_and_average_over_batch():
    torch.manual_seed(0)
    decoded = torch.randn(4, 1, 3, 3)
    x = torch.randint(0, 2, (4, 1, 3, 3)).float()
    mu, logvar = torch.randn(4, 2), torch.randn(4, 2)
    terms = elbo_terms(decoded, x, mu, logvar, "bce", beta=0.5)
    recon = -bernoulli_log_likelihood(decoded, x)
    kl = gaussian_kl(mu, logvar).sum(1)
    assert terms.recon.item() == pytest.approx(recon.mean().item(), rel=1e-6)
    assert terms.kl.item() == pytest.approx(kl.mean().item(), rel=1e-6)
    assert terms.neg_elbo.item() == pytest.approx((recon + kl).mean().item(), rel=1e-6)
    assert terms.loss.item() == pytest.approx((recon + 0.5 * kl).mean().item(), rel=1e-6)


def test_free_bits_raise_small_kl_in_the_loss_only():
    mu, logvar = torch.zeros(2, 3), torch.zeros(2, 3)  # KL = 0 in every dimension
    decoded, x = torch.zeros(2, 1, 2, 2), torch.ones(2, 1, 2, 2)
    terms = elbo_terms(decoded, x, mu, logvar, "bce", beta=1.0, free_bits=0.25)
    assert terms.kl.item() == 0
    assert terms.loss.item() == pytest.approx(terms.recon.item() + 3 * 0.25, rel=1e-6)


@pytest.mark.parametrize(
    ("schedule", "points"),
    [
        ("constant", {0: 2.0, 50: 2.0, 100: 2.0, 500: 2.0}),
        ("linear", {0: 0.0, 25: 0.5, 50: 1.0, 100: 2.0, 150: 2.0}),
        ("cosine", {0: 0.0, 50: 1.0, 100: 2.0, 101: 2.0}),
        ("sigmoid", {0: 0.0, 50: 1.0, 100: 2.0, 200: 2.0}),
        # 4 cycles of 25 steps, ramping over the first half of each.
        ("cyclical", {0: 0.0, 6: 0.96, 12: 1.92, 13: 2.0, 24: 2.0, 25: 0.0, 75: 0.0, 100: 2.0}),
    ],
)
def test_beta_schedules_at_key_points(schedule, points):
    beta = BetaSchedule(schedule, beta_max=2.0, warmup_steps=100, cycles=4, ramp_ratio=0.5)
    for step, expected in points.items():
        assert beta(step) == pytest.approx(expected, abs=1e-9), (schedule, step)


def test_schedules_rise_monotonically_during_warmup():
    for schedule in ("linear", "cosine", "sigmoid"):
        beta = BetaSchedule(schedule, 1.0, 100)
        values = [beta(step) for step in range(101)]
        assert values == sorted(values)


def test_warmup_resolves_epochs_and_steps():
    objective = ObjectiveConfig(beta_warmup="3")
    assert BetaSchedule.from_config(objective, steps_per_epoch=10).warmup_steps == 30
    objective.beta_warmup = "45steps"
    assert BetaSchedule.from_config(objective, steps_per_epoch=10).warmup_steps == 45
    objective.beta_schedule = "constant"
    schedule = BetaSchedule.from_config(objective, steps_per_epoch=10)
    assert schedule.warmup_done(0) and schedule(0) == objective.beta
