"""The rbm family against independent truth: the free energy against the sum over all hidden
configurations, Σ Q = 1 by enumeration, AIS against the exact partition function, Gibbs samples
against exact Q (χ²), the contrastive gradient against the exact NLL gradient."""

import itertools

import pytest
import torch
from scipy import stats

from qtomo.models import build, load
from qtomo.models import rbm as rbm_module
from qtomo.povm import enumerate_outcomes
from tests.physics import record_counts as counts


def randomized_rbm(L: int, K: int, scale: float = 0.6, **hyperparameters):
    torch.manual_seed(0)
    model = build("rbm", L=L, K=K, **hyperparameters).double()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, scale)
    return model.eval()



def test_free_energy_is_the_sum_over_hidden_configurations():
    model = randomized_rbm(3, 4, hidden=5)
    a = torch.as_tensor(enumerate_outcomes(3, 4))
    v = torch.nn.functional.one_hot(a, 4).double().flatten(1)  # (64, 12)
    h = torch.tensor(list(itertools.product([0.0, 1.0], repeat=5)), dtype=torch.float64)
    energy = -(v @ model.visible_bias.flatten())[:, None] - (h @ model.hidden_bias)[None] \
        - v @ model.weight @ h.T  # E(a, h), (64, 32)
    with torch.no_grad():
        assert torch.allclose(model.free_energy(a), -torch.logsumexp(-energy, 1), atol=1e-12)


def test_log_prob_is_normalised_and_ais_agrees_with_enumeration():
    model = randomized_rbm(4, 4, hidden=8)
    a = torch.as_tensor(enumerate_outcomes(4, 4))
    with torch.no_grad():
        assert model.log_prob(a).exp().sum().item() == pytest.approx(1.0, abs=1e-12)
    exact = model.log_partition_exact()
    ais = model.log_partition_ais(1000, 512, generator=torch.Generator().manual_seed(1))
    assert model.exact_log_prob and model.log_partition().stderr == 0.0
    assert 0 < ais.stderr < 0.05
    assert abs(ais.value - exact) < 4 * ais.stderr


def test_above_the_enumeration_limit_log_prob_is_the_ais_estimate(monkeypatch):
    model = randomized_rbm(3, 4, hidden=6)
    exact = model.log_partition_exact()
    monkeypatch.setattr(rbm_module, "EXACT_MAX_RECORDS", 4**3 - 1)
    assert not model.exact_log_prob
    estimate = model.log_partition()
    assert estimate.stderr > 0 and abs(estimate.value - exact) < 4 * estimate.stderr
    a = torch.as_tensor(enumerate_outcomes(3, 4))
    with torch.no_grad():
        assert torch.allclose(model.log_prob(a), -model.free_energy(a) - estimate.value)


def test_gibbs_samples_follow_the_exact_distribution_chi_squared():
    model = randomized_rbm(3, 4, scale=0.5, hidden=6, chains=500, burn_in=200, thinning=5)
    a = model.sample(50_000, generator=torch.Generator().manual_seed(2))
    assert a.shape == (50_000, 3) and a.dtype == torch.long
    with torch.no_grad():
        expected = model.log_prob(torch.as_tensor(enumerate_outcomes(3, 4))).exp().numpy()
    # thinned records of 500 chains: nearly independent, so the plain χ² test applies
    assert stats.chisquare(counts(a, 4), expected * 50_000).pvalue > 1e-3


def test_contrastive_gradient_estimates_the_exact_nll_gradient():
    """Long persistent chains (many, well mixed) make the PCD surrogate's gradient the exact
    gradient of the mean NLL, computed here by autograd through ln Z by enumeration."""
    model = randomized_rbm(3, 4, scale=0.4, hidden=4, chains=20000, gibbs_steps=100)
    data = torch.randint(4, (256, 3), generator=torch.Generator().manual_seed(3))
    every = torch.as_tensor(enumerate_outcomes(3, 4))
    exact_nll = (model.free_energy(data).mean()
                 + torch.logsumexp(-model.free_energy(every), 0))
    exact = torch.cat([g.flatten() for g in torch.autograd.grad(exact_nll, model.parameters())])
    model.train()
    torch.manual_seed(4)
    surrogate = model.training_nll(data).mean()
    cd = torch.cat([g.flatten() for g in torch.autograd.grad(surrogate, model.parameters())])
    assert (cd - exact).norm() < 0.05 * exact.norm()
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model.training_nll(data), -model.log_prob(data))


def test_persistent_chains_move_and_travel_in_the_checkpoint(tmp_path):
    from qtomo.models import save_checkpoint

    model = build("rbm", L=4, K=4, hidden=8, chains=16).train()
    before = model.persistent.clone()
    model.training_nll(torch.zeros(8, 4, dtype=torch.long))
    assert not torch.equal(before, model.persistent)
    same = load(save_checkpoint(tmp_path / "rbm.pt", model, povm="pauli4"))
    assert torch.equal(same.persistent, model.persistent)
    cd = build("rbm", L=4, K=4, hidden=8, chains=16, contrastive="cd").train()
    chains = cd.persistent.clone()
    cd.training_nll(torch.zeros(8, 4, dtype=torch.long))
    assert torch.equal(chains, cd.persistent)  # CD restarts at the data, keeps no chains
