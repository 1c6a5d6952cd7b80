"""Exact small-L states and POVM distributions against closed forms and dense diagonalisation."""

import numpy as np
import pytest
import scipy.stats
import torch

from qtomo.errors import QtomoError
from qtomo.povm import POVM_NAMES, enumerate_outcomes, get_povm
from qtomo.states.exact import exact_limit, ghz_state, product_state, tfim_ground_state
from qtomo.states.hamiltonians import TFIM

from .physics import X, Z, dense_born, dense_tfim, site_operator


@pytest.mark.parametrize("L, J, h, periodic", [(6, 1, 1, False), (7, 1, 0.4, False),
                                                (8, 1, 1.6, False), (6, 1, 1, True),
                                                (8, 0.5, 2.0, True), (5, -1, 0.7, False)])
def test_tfim_energy_matches_free_fermions_and_dense_ed(L, J, h, periodic):
    boundary = "periodic" if periodic else "open"
    state = tfim_ground_state(L, J, h, boundary)
    energy = float(state.references()["energy"])
    assert energy == pytest.approx(np.linalg.eigvalsh(dense_tfim(L, J, h, periodic))[0], abs=1e-10)
    assert energy == pytest.approx(TFIM(L, J, h, boundary).free_fermion_ground_energy(), abs=1e-10)


def test_free_fermion_energy_of_long_chain_per_site():
    # the critical open chain's energy per site approaches −4/π
    assert TFIM(2000).free_fermion_ground_energy() / 2000 == pytest.approx(-4 / np.pi, rel=1e-3)


@pytest.mark.parametrize("h", [0.0, 0.3])
def test_ordered_phase_returns_parity_even_state(h):
    psi = tfim_ground_state(10, 1.0, h).psi
    assert np.vdot(psi, psi[::-1]).real == pytest.approx(1.0, abs=1e-10)  # ⟨Π X⟩ = +1


def test_references_match_dense_operators():
    L = 6
    state = tfim_ground_state(L, 1.0, 0.8)
    psi, ref = state.psi, state.references()
    for i in range(L):
        assert ref["X"][i] == pytest.approx(np.vdot(psi, site_operator(X, i, L) @ psi).real)
        assert ref["Z"][i] == pytest.approx(0.0, abs=1e-10)
        for j in range(L):
            zz = site_operator(Z, i, L) @ site_operator(Z, j, L)
            xx = site_operator(X, i, L) @ site_operator(X, j, L)
            assert ref["ZZ"][i, j] == pytest.approx(np.vdot(psi, zz @ psi).real, abs=1e-12)
            assert ref["XX"][i, j] == pytest.approx(np.vdot(psi, xx @ psi).real, abs=1e-12)
    # entropy from the spectrum of the reduced density matrix of qubits 0..b
    for b in range(L - 1):
        m = psi.reshape(2 ** (b + 1), -1)
        w = np.linalg.eigvalsh(m @ m.conj().T)
        w = w[w > 1e-15]
        assert ref["entropy"][b] == pytest.approx(-(w * np.log(w)).sum(), abs=1e-10)


@pytest.mark.parametrize("name", POVM_NAMES)
def test_ghz_distribution_closed_form(name):
    L, povm = 5, get_povm(name)
    P = ghz_state(L).distribution(povm).probabilities
    M = povm.elements
    outcomes = enumerate_outcomes(L, povm.K)
    closed = 0.5 * (np.prod(M[outcomes, 0, 0], axis=1) + np.prod(M[outcomes, 1, 1], axis=1)
                    + 2 * np.prod(M[outcomes, 1, 0], axis=1).real)
    assert np.allclose(P, closed.real, atol=1e-15)
    assert P.sum() == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("label", ["0", "+", "-i"])
def test_product_distribution_closed_form(label):
    L, povm = 4, get_povm("tetra")
    phi = {"0": [1, 0], "+": [1, 1], "-i": [1, -1j]}[label]
    phi = np.array(phi, dtype=complex) / np.linalg.norm(phi)
    single = povm.probabilities(np.outer(phi, phi.conj()))
    P = product_state(L, label).distribution(povm).probabilities
    closed = np.prod(single[enumerate_outcomes(L, povm.K)], axis=1)
    assert np.allclose(P, closed, atol=1e-15)


@pytest.mark.parametrize("name", POVM_NAMES)
def test_sampled_log_prob_matches_dense_born_rule(name):
    L, povm = 4, get_povm(name)
    state = tfim_ground_state(L, 1.0, 1.3)
    outcomes, log_prob = state.distribution(povm).sample_with_log_prob(
        200, torch.Generator().manual_seed(1))
    rho = np.outer(state.psi, state.psi.conj())
    dense = dense_born(rho, povm.elements, outcomes.numpy())
    assert np.allclose(log_prob.numpy(), np.log(dense), atol=1e-10, rtol=0)


def test_sample_frequencies_chi_square():
    """Pearson χ² of 10^5 samples over all 64 records of L = 3, at significance 10^-3."""
    povm = get_povm("pauli4")
    dist = tfim_ground_state(3, 1.0, 1.0).distribution(povm)
    outcomes = dist.sample(100_000, torch.Generator().manual_seed(2024))
    index = outcomes.numpy() @ (povm.K ** np.arange(2, -1, -1))
    observed = np.bincount(index, minlength=povm.K**3)
    expected = dist.probabilities * 100_000
    statistic = ((observed - expected) ** 2 / expected).sum()
    assert statistic < scipy.stats.chi2.ppf(1 - 1e-3, df=povm.K**3 - 1)


def test_exact_limits_and_bad_input():
    assert exact_limit(4) == 12 and exact_limit(6) == 9
    with pytest.raises(QtomoError, match="L >= 2"):
        tfim_ground_state(1)
    with pytest.raises(QtomoError, match="1 <= L <= 12"):
        ghz_state(13)
    with pytest.raises(QtomoError, match="L <= 9"):
        ghz_state(10).distribution(get_povm("pauli6"))
    with pytest.raises(QtomoError, match="unknown single-qubit state"):
        product_state(3, "up")
    with pytest.raises(QtomoError, match="finite"):
        tfim_ground_state(4, h=float("nan"))


def test_field_free_of_coupling_is_unique_and_silent():
    state = tfim_ground_state(5, J=0.0, h=1.0)
    assert "warning" not in state.attrs
    assert np.allclose(state.references()["X"], 1.0)
