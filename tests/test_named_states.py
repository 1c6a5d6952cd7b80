"""W, cluster and XXZ states against closed forms, independent dense constructions and ED."""

from __future__ import annotations

import math
from functools import reduce

import numpy as np
import pytest

from qtomo.errors import QtomoError
from qtomo.states.hamiltonians import XXZ
from qtomo.states.mps import mps_to_vector
from qtomo.states.named import cluster_mps, named_state, w_mps, xxz_ground_state, xxz_mps

PAULI = {"I": np.eye(2), "X": np.array([[0, 1], [1, 0]]), "Y": np.array([[0, -1j], [1j, 0]]),
         "Z": np.diag([1.0, -1.0])}


def _kron_string(L, string):
    """⊗_i σ_i by explicit Kronecker products, qubit 0 the leftmost factor."""
    return reduce(np.kron, [PAULI[string.get(i, "I")] for i in range(L)])


def _xxz_dense(L, J, delta):
    """H = J Σ (XX + YY + Δ ZZ) built from Kronecker products (independent of qtomo)."""
    return sum(coefficient * _kron_string(L, {i: letter, i + 1: letter})
               for i in range(L - 1)
               for coefficient, letter in ((J, "X"), (J, "Y"), (J * delta, "Z")))


@pytest.mark.parametrize("L", [3, 6, 30])
def test_w_state_closed_forms(L):
    """⟨Z_i⟩ = 1 − 2/L, ⟨Z_iZ_j⟩ = 1 − 4/L, ⟨X_iX_j⟩ = 2/L, S_b = H(k/L) with k = b + 1."""
    refs = w_mps(L).references()
    off = ~np.eye(L, dtype=bool)
    np.testing.assert_allclose(refs["Z"], 1 - 2 / L, atol=1e-12)
    np.testing.assert_allclose(refs["X"], 0, atol=1e-12)
    np.testing.assert_allclose(refs["ZZ"][off], 1 - 4 / L, atol=1e-12)
    np.testing.assert_allclose(refs["XX"][off], 2 / L, atol=1e-12)
    k = np.arange(1, L) / L
    np.testing.assert_allclose(refs["entropy"], -k * np.log(k) - (1 - k) * np.log(1 - k),
                               atol=1e-12)


def test_w_and_cluster_vectors_match_direct_construction():
    L = 5
    w = np.zeros(2**L)
    w[[1 << (L - 1 - i) for i in range(L)]] = 1 / math.sqrt(L)
    np.testing.assert_allclose(named_state("w", L, "exact").psi, w, atol=1e-12)
    bits = (np.arange(2**L)[:, None] >> (L - 1 - np.arange(L))) & 1
    signs = (-1.0) ** np.sum(bits[:, :-1] * bits[:, 1:], axis=1)
    psi = named_state("cluster", L, "exact").psi
    np.testing.assert_allclose(psi, signs / 2 ** (L / 2), atol=1e-12)
    np.testing.assert_allclose(mps_to_vector(cluster_mps(L).tensors), psi, atol=1e-12)


@pytest.mark.parametrize("L", [2, 7, 40])
def test_cluster_stabilisers_and_entropy(L):
    """K_i = Z_{i−1} X_i Z_{i+1} = +1 for every i, ⟨X_i⟩ = ⟨Z_i⟩ = 0, S = ln 2 at every bond."""
    state = cluster_mps(L)
    for i in range(L):
        string = {i: "X", **{j: "Z" for j in (i - 1, i + 1) if 0 <= j < L}}
        assert state.expectation(string) == pytest.approx(1.0, abs=1e-12)
    refs = state.references()
    np.testing.assert_allclose(refs["entropy"], math.log(2), atol=1e-12)
    np.testing.assert_allclose(refs["Z"], 0, atol=1e-12)
    if L > 2:
        np.testing.assert_allclose(refs["X"], 0, atol=1e-12)


@pytest.mark.parametrize("L, delta, J", [(8, 1.0, 1.0), (10, 0.5, 1.0), (10, 2.0, 0.7),
                                         (8, -0.5, 1.0), (10, 0.5, -1.0)])
def test_xxz_exact_is_the_dense_ground_state(L, delta, J):
    """The Σ Z = 0 sector ground state is the ground state of the full dense H (L/2 even and
    odd: the ground state is even or odd under the spin flip)."""
    H = _xxz_dense(L, J, delta)
    np.testing.assert_allclose(XXZ(L, J, delta).sparse_matrix().toarray(), H, atol=1e-12)
    energies, vectors = np.linalg.eigh(H)
    assert energies[1] - energies[0] > 1e-3  # a unique ground state
    state = xxz_ground_state(L, J, delta)
    assert state.references()["energy"] == pytest.approx(energies[0], abs=1e-10)
    assert abs(np.vdot(vectors[:, 0], state.psi)) ** 2 == pytest.approx(1.0, abs=1e-10)


@pytest.mark.parametrize("L, delta", [(10, 1.0), (10, 0.5), (12, 2.0)])
def test_xxz_dmrg_matches_exact_diagonalisation(L, delta):
    mps = xxz_mps(L, delta=delta).references()
    exact = xxz_ground_state(L, delta=delta).references()
    assert abs(mps["energy"] - exact["energy"]) < 1e-10
    for key in ("X", "Z", "XX", "ZZ", "entropy"):
        np.testing.assert_allclose(mps[key], exact[key], atol=1e-8, err_msg=key)


def test_xxz_energy_per_site_approaches_bethe_ansatz_small_L():
    """E(L+2) − E(L) → 2 e∞ with e∞ = 4(1/4 − ln 2) = 1 − 4 ln 2 per bond (Pauli units, Δ = 1).

    Measured (ED): errors 9.9e-3, 6.4e-3, 4.5e-3 for L = 6→8, 8→10, 10→12, shrinking with L."""
    e_inf = 1 - 4 * math.log(2)
    energies = {L: xxz_ground_state(L).references()["energy"] for L in (6, 8, 10, 12)}
    errors = [abs((energies[L + 2] - energies[L]) / 2 - e_inf) for L in (6, 8, 10)]
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 5e-3


def test_xxz_energy_per_site_approaches_bethe_ansatz_dmrg():
    """DMRG at L = 20, 22: |(E(22) − E(20))/2 − e∞| < 1.5e-3 (measured 1.38e-3 with χ ≤ 128,
    svd_min 1e-14; 3.9e-4 at L = 40, 42), below the ED value at L = 10, 12 (4.5e-3). 11 s here."""
    e_inf = 1 - 4 * math.log(2)
    E20, E22 = (xxz_mps(L, chi_max=128).references()["energy"] for L in (20, 22))
    assert abs((E22 - E20) / 2 - e_inf) < 1.5e-3


@pytest.mark.parametrize("L, J, delta, message", [
    (7, 1.0, 1.0, "odd L"), (8, 1.0, -1.0, "ferromagnetic"), (8, -1.0, 1.5, "ferromagnetic"),
    (8, 0.0, 1.0, "J = 0")])
def test_xxz_refuses_degenerate_ground_states(L, J, delta, message):
    with pytest.raises(QtomoError, match=message):
        xxz_ground_state(L, J, delta)
    with pytest.raises(QtomoError, match=message):
        xxz_mps(L, J, delta)


@pytest.mark.parametrize("state", ["w", "cluster"])
def test_named_states_refuse_one_qubit(state):
    with pytest.raises(QtomoError, match="L >= 2"):
        named_state(state, 1, "mps")


@pytest.mark.parametrize("method", ["exact", "mps"])
def test_simulate_xxz_records_and_references_match_dense(method, tmp_path):
    """ln P of the records and the stored references against the dense ground state (L = 6)."""
    from qtomo.data import read_dataset
    from qtomo.observables import estimate_observables
    from qtomo.simulate import simulate
    from qtomo.states.hamiltonians import hamiltonian_from_attrs

    from .physics import dense_born

    L, J, delta = 6, 0.8, 0.5
    path = simulate("xxz", L, J=J, delta=delta, povm="pauli6", samples=20_000, method=method,
                    seed=4, out=tmp_path / "xxz.h5", quiet=True)
    dataset = read_dataset(path)
    assert dataset.attrs["state"] == "xxz" and dataset.attrs["delta"] == delta
    energies, vectors = np.linalg.eigh(_xxz_dense(L, J, delta))
    psi = vectors[:, 0]
    dense = dense_born(np.outer(psi, psi.conj()), dataset.povm.elements, dataset.outcomes()[:50])
    np.testing.assert_allclose(dataset.log_prob()[:50], np.log(dense), atol=1e-9)
    reference = dataset.reference
    assert float(reference["energy"]) == pytest.approx(energies[0], abs=1e-9)
    zz = np.vdot(psi, _kron_string(L, {1: "Z", 4: "Z"}) @ psi).real
    assert reference["ZZ"][1, 4] == pytest.approx(zz, abs=1e-9)
    # the model-free energy estimate from the records agrees with ⟨H⟩ within 4 stderr
    hamiltonian = hamiltonian_from_attrs(dataset.attrs, L)
    estimate = estimate_observables(dataset.outcomes(), dataset.povm,
                                    hamiltonian=hamiltonian).energy
    assert abs(estimate.value - energies[0]) < 4 * estimate.stderr
