"""MPS states against independent truth: dense diagonalisation, free fermions, closed forms."""

from functools import reduce

import numpy as np
import pytest
import torch

from qtomo.errors import ConvergenceError, QtomoError
from qtomo.povm import get_povm
from qtomo.states.exact import tfim_ground_state
from qtomo.states.hamiltonians import TFIM
from qtomo.states.mps import MPSState, ghz_mps, product_mps, tfim_mps
from tests.physics import X, Z, dense_from_mps, dense_tfim, site_operator


def dense_ground_state(L: int, J: float, h: float, periodic: bool = False) -> np.ndarray:
    """Parity-even ground state of the dense TFIM (eigh in the Π = ⊗X = +1 subspace)."""
    H = dense_tfim(L, J, h, periodic)
    parity = reduce(np.kron, [X] * L)
    even = np.linalg.eigh(parity)[1][:, 2 ** (L - 1):]  # eigenvalue +1 columns
    energies, vectors = np.linalg.eigh(even.conj().T @ H @ even)
    return even @ vectors[:, 0]


def dense_references(psi: np.ndarray, L: int) -> dict:
    x_psi = np.array([site_operator(X, i, L) @ psi for i in range(L)])  # (L, 2^L) X_i|ψ⟩
    z_psi = np.array([site_operator(Z, i, L) @ psi for i in range(L)])
    entropy = []
    for b in range(1, L):
        weights = np.linalg.svd(psi.reshape(2**b, -1), compute_uv=False) ** 2
        weights = weights[weights > 1e-300]
        entropy.append(-np.sum(weights * np.log(weights)))
    return {
        "X": (x_psi @ psi.conj()).real,
        "Z": (z_psi @ psi.conj()).real,
        "XX": (x_psi.conj() @ x_psi.T).real,  # ⟨X_i ψ|X_j ψ⟩ = ⟨X_i X_j⟩
        "ZZ": (z_psi.conj() @ z_psi.T).real,
        "entropy": np.array(entropy),
    }


def free_fermion_open(L: int, J: float, h: float) -> tuple[float, np.ndarray]:
    """Open TFIM by Jordan–Wigner: (E₀, ⟨X_i⟩) from the SVD T = U Σ Vᵀ of the Majorana coupling.

    With X_i = −i γᴬ_i γᴮ_i and Z_i Z_{i+1} = −i γᴮ_i γᴬ_{i+1}, H = i γᴬᵀ T γᴮ with T_ii = h,
    T_{i+1,i} = −J; in the rotated Majoranas α = Uᵀγᴬ, β = Vᵀγᴮ, H = i Σ σ_k α_k β_k, so
    E₀ = −Σ σ_k and ⟨−i γᴬ_i γᴮ_j⟩ = (U Vᵀ)_ij.
    """
    T = h * np.eye(L) - J * np.eye(L, k=-1)
    U, sigma, Vt = np.linalg.svd(T)
    return -sigma.sum(), np.diag(U @ Vt).copy()


@pytest.mark.parametrize("h", [0.5, 1.0, 1.5])
def test_free_fermion_solver_against_dense(h):
    psi = dense_ground_state(8, 1.0, h)
    energy, x = free_fermion_open(8, 1.0, h)
    assert np.vdot(psi, dense_tfim(8, 1.0, h) @ psi).real == pytest.approx(energy, abs=1e-12)
    np.testing.assert_allclose(dense_references(psi, 8)["X"], x, atol=1e-8)


@pytest.mark.parametrize("L, h, boundary", [(8, 0.5, "open"), (9, 1.0, "open"),
                                            (8, 1.5, "open"), (8, 0.8, "periodic")])
def test_tfim_mps_matches_exact_diagonalisation(L, h, boundary):
    # no truncation: an error ε in discarded weight moves long-range correlators by ~√ε
    state = tfim_mps(L, J=1.0, h=h, boundary=boundary, svd_min=0.0, energy_tol=1e-13)
    exact = dense_ground_state(L, 1.0, h, periodic=boundary == "periodic")
    psi = dense_from_mps(state.mps)
    assert abs(np.vdot(exact, psi)) == pytest.approx(1.0, abs=1e-12)
    references, truth = state.references(), dense_references(exact, L)
    for key in ("X", "Z", "XX", "ZZ", "entropy"):
        np.testing.assert_allclose(references[key], truth[key], rtol=0, atol=1e-8, err_msg=key)
    H = dense_tfim(L, 1.0, h, periodic=boundary == "periodic")
    assert references["energy"] == pytest.approx(np.vdot(exact, H @ exact).real, abs=1e-10)
    assert state.attrs["truncation_error"] < 1e-20
    assert state.method == "mps" and state.L == L


def test_tfim_mps_tensors_are_right_canonical_and_real_parity_even():
    state = tfim_mps(10, h=0.7)
    for B in state.mps:
        np.testing.assert_allclose(np.einsum("asb,csb->ac", B, B.conj()), np.eye(B.shape[0]),
                                   atol=1e-12)
        assert B.dtype == np.complex128 and not np.any(B.imag)
    assert state.expectation(dict.fromkeys(range(10), "X")) == pytest.approx(1.0, abs=1e-10)


@pytest.mark.parametrize("L", [20, pytest.param(50, marks=pytest.mark.slow)])
def test_tfim_mps_critical_against_free_fermions(L):
    critical = tfim_mps(L, h=1.0, svd_min=1e-12)
    energy, x = free_fermion_open(L, 1.0, 1.0)
    references = critical.references()
    assert references["energy"] == pytest.approx(energy, rel=1e-8)
    np.testing.assert_allclose(references["X"], x, rtol=1e-8)
    assert critical.attrs["truncation_error"] <= 1e-12
    assert "warning" not in critical.attrs


@pytest.mark.slow
@pytest.mark.parametrize("h", [0.5, 1.5])
def test_tfim_mps_at_L50_both_phases_against_free_fermions(h):
    state = tfim_mps(50, h=h, svd_min=1e-12)
    energy, x = free_fermion_open(50, 1.0, h)
    references = state.references()
    assert references["energy"] == pytest.approx(energy, rel=1e-8)
    np.testing.assert_allclose(references["X"], x, rtol=1e-8)
    # the ordered phase: parity-even ground state, not a symmetry-broken mixture
    np.testing.assert_allclose(references["Z"], 0.0, atol=1e-8)
    assert ("warning" in state.attrs) == (h < 1)


def test_parity_gap_against_dense_spectrum():
    for L, h, boundary in [(8, 0.5, "open"), (7, 0.7, "periodic"), (8, 1.3, "periodic")]:
        H = dense_tfim(L, 1.0, h, periodic=boundary == "periodic")
        parity = reduce(np.kron, [X] * L)
        sectors = []
        for sign in (1, -1):
            eigenvalues, basis = np.linalg.eigh(parity)
            block = basis[:, eigenvalues * sign > 0]
            sectors.append(np.linalg.eigvalsh(block.conj().T @ H @ block)[0])
        assert TFIM(L, 1.0, h, boundary).parity_gap() == pytest.approx(
            abs(sectors[1] - sectors[0]), abs=1e-10
        )


def test_negative_field_odd_chain_is_the_parity_odd_ground_state():
    state = tfim_mps(7, h=-0.6, svd_min=0.0, energy_tol=1e-13)
    energies, vectors = np.linalg.eigh(dense_tfim(7, 1.0, -0.6))
    assert abs(np.vdot(vectors[:, 0], dense_from_mps(state.mps))) == pytest.approx(1.0, abs=1e-10)
    assert state.expectation(dict.fromkeys(range(7), "X")) == pytest.approx(-1.0, abs=1e-10)


def test_ordered_phase_warning_is_stored():
    state = tfim_mps(40, h=0.3)
    assert "parity gap" in state.attrs["warning"]
    assert state.expectation(dict.fromkeys(range(40), "X")) == pytest.approx(1.0, abs=1e-8)


def test_ghz_mps_is_the_ghz_vector_with_closed_form_references():
    psi = dense_from_mps(ghz_mps(6).mps)
    expected = np.zeros(64)
    expected[[0, 63]] = 1 / np.sqrt(2)
    np.testing.assert_allclose(psi, expected, atol=1e-15)
    references = ghz_mps(60).references()
    np.testing.assert_allclose(references["ZZ"], 1.0, atol=1e-14)
    np.testing.assert_allclose(references["XX"], np.eye(60), atol=1e-14)
    np.testing.assert_allclose(references["Z"], 0.0, atol=1e-14)
    np.testing.assert_allclose(references["entropy"], np.log(2), atol=1e-14)
    assert "energy" not in references


@pytest.mark.parametrize("label, x, z", [("0", 0, 1), ("1", 0, -1), ("+", 1, 0), ("-", -1, 0),
                                         ("+i", 0, 0), ([3, 4], 24 / 25, -7 / 25)])
def test_product_mps(label, x, z):
    state = product_mps(5, label)
    references = state.references()
    np.testing.assert_allclose(references["X"], x, atol=1e-14)
    np.testing.assert_allclose(references["Z"], z, atol=1e-14)
    np.testing.assert_allclose(references["entropy"], 0.0, atol=1e-14)


@pytest.mark.parametrize("call, match", [
    (lambda: tfim_mps(10, chi_max=0), "chi_max must be an integer >= 1; got 0"),
    (lambda: tfim_mps(10, chi_max=2.5), "chi_max"),
    (lambda: tfim_mps(1), "L >= 2"),
    (lambda: tfim_mps(10, boundary="twisted"), "boundary"),
    (lambda: tfim_mps(10, svd_min=-1.0), "svd_min"),
    (lambda: tfim_mps(10, energy_tol=0.0), "energy_tol"),
    (lambda: ghz_mps(1), "L >= 2"),
    (lambda: product_mps(0, "+"), "L >= 1"),
    (lambda: product_mps(3, "up"), "single-qubit state"),
    (lambda: MPSState([np.ones((1, 2, 1))]), "not right-canonical"),
    (lambda: MPSState([np.ones((1, 2, 2)) / 2]), "right bond dimension 1"),
    (lambda: MPSState([np.ones((2, 2, 1))]), r"shape \(1, 2, χ\)"),
])
def test_bad_input_raises_one_line_errors(call, match):
    with pytest.raises(QtomoError, match=match) as info:
        call()
    assert "\n" not in str(info.value)


def test_unconverged_dmrg_raises_convergence_error(monkeypatch):
    monkeypatch.setattr("qtomo.states.dmrg._MAX_SWEEPS", 2)
    with pytest.raises(ConvergenceError, match="relative energy change"):
        tfim_mps(30, h=1.0, chi_max=4, energy_tol=1e-14)


def test_default_mps_log_probabilities_meet_1e_5_against_the_dense_state():
    """The default truncation keeps every stored ln P within 1e-5 of the exact ground state's
    (L = 10, h = 0.9: 7·10⁻⁵ at the former svd_min = 1e-10)."""
    pauli4 = get_povm("pauli4")
    truth = tfim_ground_state(10, h=0.9).distribution(pauli4)
    mps = tfim_mps(10, h=0.9).distribution(pauli4)
    a, log_p = mps.sample_with_log_prob(2000, torch.Generator().manual_seed(0))
    assert float((log_p - truth.log_prob(a)).abs().max()) < 1e-5


@pytest.mark.slow
def test_default_mps_log_probabilities_meet_1e_5_at_L37():
    """The issue's case: L = 37, h = 0.9, against an independent DMRG without cutoff."""
    pauli4 = get_povm("pauli4")
    reference = tfim_mps(37, h=0.9, chi_max=256, svd_min=0.0, energy_tol=1e-13)
    mps = tfim_mps(37, h=0.9).distribution(pauli4)
    a, log_p = mps.sample_with_log_prob(1000, torch.Generator().manual_seed(0))
    assert float((log_p - reference.distribution(pauli4).log_prob(a)).abs().max()) < 1e-5
