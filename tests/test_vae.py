"""The vae family: the importance-weighted estimate against Gauss–Hermite quadrature of
Q(a) = ∫ p(z) p(a|z) dz for a one-dimensional latent, the bound below the estimate."""

import math

import numpy as np
import pytest
import torch

from qtomo.models import build
from qtomo.povm import enumerate_outcomes
from tests.physics import record_counts as counts


def test_iwae_estimate_converges_to_the_quadrature_of_the_latent_integral():
    torch.manual_seed(0)
    model = build("vae", L=3, K=4, latent=1, hidden=16).double()
    with torch.no_grad():
        for parameter in model.decoder.parameters():
            parameter.mul_(2.0)  # a decoder that depends strongly on z
    nodes, weights = np.polynomial.hermite_e.hermegauss(120)  # ∫ N(z) f(z) dz, 120 nodes
    a = torch.as_tensor(enumerate_outcomes(3, 4))
    with torch.no_grad():
        z = torch.as_tensor(nodes)[:, None, None].expand(-1, len(a), 1)  # (120, 64, 1)
        log_p = model._log_likelihood(a, z)  # (120, 64)
        truth = torch.logsumexp(log_p + torch.as_tensor(np.log(weights / math.sqrt(2 * math.pi)))
                                [:, None], 0)
        w = model.log_weights(a, 4096, torch.Generator().manual_seed(1))  # (64, 4096)
        estimate = model.log_prob(a, 4096, torch.Generator().manual_seed(1))
        bound = model.log_prob_bound(a, 4096, torch.Generator().manual_seed(1))
    ratios = (w - w.max(1, keepdim=True).values).exp()
    stderr = ratios.std(1) / (ratios.mean(1) * math.sqrt(4096))  # delta method for ln mean e^w
    assert truth.exp().sum().item() == pytest.approx(1.0, abs=1e-10)
    assert torch.equal(estimate, torch.logsumexp(w, 1) - math.log(4096))
    assert ((estimate - truth).abs() < 5 * stderr + 1e-3).all()
    assert (bound <= estimate).all() and (bound < truth).all()


def test_vae_samples_match_its_likelihood_and_the_training_objective_is_the_elbo():
    torch.manual_seed(0)
    model = build("vae", L=2, K=4, latent=2, hidden=16)
    every = torch.as_tensor(enumerate_outcomes(2, 4))
    with torch.no_grad():
        q = model.log_prob(every, 4096, torch.Generator().manual_seed(2)).double().exp()
        sampled = counts(model.sample(100_000, generator=torch.Generator().manual_seed(3)), 4)
        torch.manual_seed(4)
        objective = torch.stack([model.training_nll(every) for _ in range(400)])  # (400, 16)
        elbo = model.log_weights(every, 400, torch.Generator().manual_seed(5))  # (16, 400)
    assert 0.5 * np.abs(q.numpy() - sampled / 100_000).sum() < 0.01
    # β = 1: the closed-form-KL objective and the Monte Carlo ELBO estimate the same −ELBO
    gap = objective.mean(0) + elbo.mean(1)
    error = 3 * (objective.var(0) / 400 + elbo.var(1) / 400).sqrt() + 1e-3
    assert (gap.abs() < error).all()
