"""Property tests (Hypothesis) for the objectives: they hold for any input, not just chosen ones."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vae.evaluation import score_batch
from vae.model import LOGVAR_MAX, LOGVAR_MIN, ModelSpec, build_model
from vae.objectives import bernoulli_log_likelihood, elbo_terms, gaussian_kl

finite = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False)
logvars = st.floats(min_value=LOGVAR_MIN, max_value=LOGVAR_MAX, allow_nan=False)


@given(st.lists(st.tuples(finite, logvars), min_size=1, max_size=16))
def test_kl_is_never_negative_and_always_finite(pairs):
    mu = torch.tensor([[m for m, _ in pairs]], dtype=torch.float32)
    logvar = torch.tensor([[v for _, v in pairs]], dtype=torch.float32)
    kl = gaussian_kl(mu, logvar)
    assert torch.isfinite(kl).all()
    assert (kl >= 0).all()


@given(
    st.lists(st.floats(min_value=-1e4, max_value=1e4, allow_nan=False), min_size=4, max_size=4),
    st.lists(st.sampled_from([0.0, 1.0]), min_size=4, max_size=4),
)
def test_bernoulli_log_likelihood_is_finite_and_at_most_zero_for_extreme_logits(logits, pixels):
    log_p = bernoulli_log_likelihood(torch.tensor([logits]), torch.tensor([pixels]))
    assert torch.isfinite(log_p).all() and (log_p <= 0).all()


@given(
    st.floats(min_value=-50, max_value=50),
    st.floats(min_value=-1e3, max_value=1e3, allow_nan=False),
    st.floats(min_value=0, max_value=10),
)
def test_elbo_terms_are_finite_for_extreme_encoder_outputs(raw_logvar, mu_value, beta):
    # The model clamps the log-variance to [LOGVAR_MIN, LOGVAR_MAX]; anything it can emit is fine.
    logvar = torch.full((2, 3), raw_logvar).clamp(LOGVAR_MIN, LOGVAR_MAX)
    mu = torch.full((2, 3), mu_value)
    x = torch.bernoulli(torch.full((2, 1, 2, 2), 0.5), generator=torch.Generator().manual_seed(0))
    terms = elbo_terms(torch.zeros(2, 1, 2, 2), x, mu, logvar, "bce", beta)
    assert all(torch.isfinite(t) for t in (terms.loss, terms.neg_elbo, terms.recon, terms.kl))
    assert terms.kl >= 0


# derandomize: with N(0, I) the -ELBO uses the exact KL while the NLL uses k samples, so the two
# are ordered only in expectation; a fixed set of examples keeps the check from flaking (a random
# one failed by 4e-4 nats at seed 299), and the mixture-prior test below checks the exact order.
@settings(max_examples=25, deadline=None, derandomize=True)
@given(st.integers(min_value=0, max_value=10_000), st.integers(min_value=1, max_value=4))
def test_importance_weighted_bound_is_at_least_the_elbo_on_average(seed, latent):
    torch.manual_seed(seed)
    model = build_model(ModelSpec("mlp", latent, 1, 2, 2, "bce", [6], [])).eval()
    x = torch.bernoulli(
        torch.full((16, 1, 2, 2), 0.5), generator=torch.Generator().manual_seed(seed)
    )
    scores = score_batch(model, x, 64, torch.Generator().manual_seed(seed))
    # log p(x) >= IWAE bound >= ELBO in expectation: NLL estimate <= -ELBO on average.
    assert torch.isfinite(scores["nll"]).all()
    assert scores["nll"].mean() <= scores["neg_elbo"].mean() + 1e-4


@settings(max_examples=25, deadline=None)
@given(st.integers(min_value=0, max_value=10_000), st.integers(min_value=1, max_value=4))
def test_importance_weighted_bound_is_at_least_the_same_samples_elbo(seed, latent):
    """With a mixture prior the KL is estimated on the same k samples as the NLL, so Jensen's
    inequality orders them exactly, image by image: -log mean(w) <= -mean(log w)."""
    torch.manual_seed(seed)
    spec = ModelSpec("mlp", latent, 1, 2, 2, "bce", [6], [], prior="mog", prior_components=3)
    model = build_model(spec).eval()
    x = torch.bernoulli(
        torch.full((16, 1, 2, 2), 0.5), generator=torch.Generator().manual_seed(seed)
    )
    scores = score_batch(model, x, 64, torch.Generator().manual_seed(seed))
    assert torch.isfinite(scores["nll"]).all()
    assert (scores["nll"] <= scores["neg_elbo"] + 1e-4).all()
