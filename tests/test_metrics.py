"""Classical metrics (NLL, KL, F_c) against exact enumeration (issue 5); inputs that are not
log-probabilities are refused (also for values drawn by hypothesis)."""


import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qtomo.distribution import enumerate_probabilities, log_prob_batched
from qtomo.errors import QtomoError
from qtomo.estimate import Estimate
from qtomo.metrics import (
    LOG_PROB_TOL,
    classical_fidelity,
    classical_metrics,
    kl_divergence,
    nll,
)
from qtomo.models import build
from qtomo.povm import born_probabilities, get_povm
from qtomo.states.exact import ExactDistribution, tfim_ground_state
from tests.fuzz import FUZZ, accepted_or_refused


def test_estimate_behaves_like_a_value_with_an_error():
    samples = np.random.default_rng(0).normal(size=(400, 3))
    estimate = Estimate.from_samples(samples)
    assert np.allclose(estimate.value, samples.mean(axis=0))
    assert np.allclose(estimate.stderr, samples.std(axis=0, ddof=1) / 20)
    element = estimate[1]
    assert isinstance(element.value, float) and element.value == estimate.value[1]
    assert estimate.as_dict()["stderr"] == estimate.stderr.tolist()
    value, stderr = Estimate(2.0, 0.5)
    assert (value, stderr) == (2.0, 0.5) and Estimate(2.0, 0.5).relative_error == 0.25
    assert Estimate.from_samples(np.array([1.0])).stderr == np.inf


@pytest.fixture(scope="module")
def truth_and_model():
    """P: the TFIM ground state; Q: the same state with 20% of a random pure state mixed in."""
    povm = get_povm("tetra")
    state = tfim_ground_state(5, h=0.8)
    rng = np.random.default_rng(7)
    phi = rng.normal(size=32) + 1j * rng.normal(size=32)
    phi /= np.linalg.norm(phi)
    rho = 0.8 * np.outer(state.psi, state.psi.conj()) + 0.2 * np.outer(phi, phi.conj())
    return state.distribution(povm), ExactDistribution(povm, born_probabilities(rho, povm))


def test_estimates_agree_with_exact_enumeration_within_four_sigma(truth_and_model):
    truth, model = truth_and_model
    P, Q = truth.probabilities, model.probabilities
    records, log_p = truth.sample_with_log_prob(20_000, torch.Generator().manual_seed(2))
    chunks = [(records[i:i + 7000].numpy(), log_p[i:i + 7000].numpy())
              for i in range(0, 20_000, 7000)]
    metrics = classical_metrics(model, chunks, batch_size=3000)
    support = P > 0
    exact = {
        "kl": np.sum(P[support] * np.log(P[support] / Q[support])),
        "classical_fidelity": np.sum(np.sqrt(P * Q)) ** 2,
        "nll": -np.sum(P[support] * np.log(Q[support])),
        "entropy": -np.sum(P[support] * np.log(P[support])),
    }
    assert metrics.n_test == 20_000
    for name, value in exact.items():
        estimate = getattr(metrics, name)
        assert 0 < estimate.stderr < 0.05, name
        assert abs(estimate.value - value) < 4 * estimate.stderr, name
    assert abs(metrics.nll.value - metrics.entropy.value - metrics.kl.value) < 1e-12


def test_a_model_against_itself_has_zero_kl_and_unit_fidelity():
    """Records sampled from a network, scored against its own ln Q: KL = 0, F_c = 1."""
    torch.manual_seed(0)
    model = build("gru", L=5, K=4, hidden=8, layers=1).eval()
    with torch.no_grad():
        records = model.sample(3000, generator=torch.Generator().manual_seed(1))
        log_q = model.log_prob(records).double().numpy()
    metrics = classical_metrics(model, [(records.numpy(), log_q)])
    assert abs(metrics.kl.value) <= max(4 * metrics.kl.stderr, 1e-12)
    assert abs(metrics.classical_fidelity.value - 1) < 1e-12
    assert abs(metrics.nll.value - metrics.entropy.value) < 1e-12


def test_log_prob_batched_matches_the_enumerated_table():
    torch.manual_seed(0)
    model = build("gru", L=4, K=4, hidden=8, layers=1)
    table = enumerate_probabilities(model, batch_size=37)
    assert abs(table.sum() - 1) < 1e-5  # normalised by construction, in float32
    records = np.array([[0, 0, 0, 0], [3, 2, 1, 0], [1, 1, 3, 2]])
    index = records @ (4 ** np.arange(3, -1, -1))
    assert np.allclose(np.exp(log_prob_batched(model, records, batch_size=2)), table[index],
                       rtol=1e-6, atol=0)


def test_closed_forms_and_empty_input():
    log_p = np.log([0.5, 0.5])
    assert kl_divergence(log_p, np.log([0.25, 0.25])).value == pytest.approx(np.log(2))
    assert classical_fidelity(log_p, np.log([0.125, 0.125])).value == pytest.approx(0.25)
    assert nll(np.log([0.25, 0.25])).value == pytest.approx(np.log(4))
    with pytest.raises(QtomoError, match="no test records"):
        classical_metrics(None, [])


def test_metrics_refuse_what_is_not_a_log_probability():
    log_p = np.log([0.5, 0.25])
    with pytest.raises(QtomoError, match=r"ln Q must be <= 0 .*got 0.5 at record 1"):
        kl_divergence(log_p, [-1.0, 0.5])
    with pytest.raises(QtomoError, match="ln Q must be <= 0"):
        classical_fidelity(log_p, [0.2, -1.0])
    with pytest.raises(QtomoError, match=r"ln Q must have shape \(2,\)"):
        kl_divergence(log_p, [-1.0, -1.0, -1.0])
    with pytest.raises(QtomoError, match="ln P must be <= 0 .*and finite"):
        kl_divergence([np.nan, -1.0], log_p)
    with pytest.raises(QtomoError, match=r"\(a log-probability\) and finite; got -inf"):
        classical_fidelity([-np.inf, -1.0], log_p)
    # variant: ln Q = -inf (Q = 0 at a record) is a true, infinite NLL; rounding above 0 passes
    assert nll([-np.inf, -1.0]).value == np.inf
    assert kl_divergence(log_p, log_p + 1e-9).value == pytest.approx(-1e-9)


log_values = st.one_of(st.floats(-30, 0), st.floats(allow_nan=True, allow_infinity=True),
                       st.floats(0, 1e-7))


@settings(FUZZ, max_examples=150)
@given(log_p=st.lists(log_values, max_size=5), log_q=st.lists(log_values, max_size=5))
def test_metrics_refuse_whatever_is_not_a_log_probability(log_p, log_q):
    p, q = np.array(log_p, dtype=float), np.array(log_q, dtype=float)
    valid = (p.size == q.size > 0 and np.all(np.isfinite(p)) and not np.isnan(q).any()
             and np.all(p <= LOG_PROB_TOL) and np.all(q <= LOG_PROB_TOL))
    figures = accepted_or_refused(
        lambda: (kl_divergence(p, q), classical_fidelity(p, q), nll(q)), valid, (p, q))
    if figures is None:
        return
    kl, fidelity, cross = figures
    assert cross.value >= -LOG_PROB_TOL and fidelity.value >= 0
    assert np.isclose(kl.value, np.mean(p - q)) or np.isinf(kl.value)
