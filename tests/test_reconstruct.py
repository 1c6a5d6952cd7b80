"""Reconstruction and observables against dense linear algebra and closed forms (issue 5);
fidelities refuse targets that are not states and lie in [0, 1] for those that are (hypothesis)."""

from functools import reduce

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qtomo.distribution import ENUMERATE_MAX_L, enumerate_probabilities, outcome_blocks
from qtomo.errors import QtomoError
from qtomo.observables import (
    estimate_observables,
    exact_observables,
    model_observables,
    parse_pauli_string,
)
from qtomo.povm import PAULI, POVM_NAMES, born_probabilities, get_povm
from qtomo.reconstruct import (
    FidelityWarning,
    density_matrix,
    mps_fidelity,
    project_to_physical,
    pure_state_overlaps,
    quantum_fidelity,
    uhlmann_fidelity,
)
from qtomo.states.exact import (
    ExactDistribution,
    expectation_pauli_string,
    ghz_state,
    product_state,
    tfim_ground_state,
)
from qtomo.states.mps import vector_to_mps
from tests.fuzz import FUZZ, accepted_or_refused

from .physics import site_operator


def noisy_state(psi: np.ndarray, weight: float, seed: int) -> np.ndarray:
    """ρ = (1 − w)|ψ⟩⟨ψ| + w|φ⟩⟨φ| with a random |φ⟩: a physical, imperfect "model" state."""
    rng = np.random.default_rng(seed)
    phi = rng.normal(size=psi.size) + 1j * rng.normal(size=psi.size)
    phi /= np.linalg.norm(phi)
    return (1 - weight) * np.outer(psi, psi.conj()) + weight * np.outer(phi, phi.conj())


def dense_pauli(string: dict[int, str], L: int) -> np.ndarray:
    return reduce(np.matmul, [site_operator(PAULI[letter], site, L)
                              for site, letter in string.items()], np.eye(2**L))


@pytest.mark.parametrize("povm_name", POVM_NAMES)
@pytest.mark.parametrize("make_state", [lambda: ghz_state(4), lambda: product_state(4, "+i")])
def test_exact_distribution_reconstructs_its_state(povm_name, make_state):
    povm, state = get_povm(povm_name), make_state()
    model = state.distribution(povm)  # the truth as "model"
    rec = density_matrix(enumerate_probabilities(model), povm)
    assert np.abs(rec.rho - np.outer(state.psi, state.psi.conj())).max() < 1e-10
    assert abs(rec.trace - 1) < 1e-12 and rec.hermiticity_error < 1e-12
    assert rec.min_eigenvalue > -1e-10 and rec.is_physical
    fidelity = rec.fidelity(state.psi)
    assert abs(fidelity.value - 1) < 1e-10 and fidelity.physical
    assert rec.to_qobj().dims == [[2] * 4, [2] * 4]


def test_model_probabilities_follow_enumeration_order():
    povm = get_povm("pauli6")
    model = tfim_ground_state(3, h=0.7).distribution(povm)
    assert np.allclose(enumerate_probabilities(model, batch_size=7), model.probabilities, atol=0)
    blocks = list(outcome_blocks(3, 6, rows=36))
    assert [start for start, _ in blocks] == [0, 36, 72, 108, 144, 180]
    assert blocks[2][1][5].tolist() == [2, 0, 5]


def test_uhlmann_fidelity_matches_pure_formula_and_self_fidelity():
    psi = tfim_ground_state(3).psi
    rho = noisy_state(psi, 0.3, seed=1)
    pure = quantum_fidelity(rho, psi)
    mixed = quantum_fidelity(rho, np.outer(psi, psi.conj()))
    # qutip sums √ of the eigenvalues of √σ ρ √σ: rank-deficient states cost ~1e-8
    assert abs(pure.value - mixed.value) < 1e-6
    assert abs(pure.value - np.vdot(psi, rho @ psi).real) < 1e-12
    assert abs(quantum_fidelity(rho, rho).value - 1) < 1e-6


def test_unphysical_reconstruction_is_flagged_and_projected():
    povm = get_povm("pauli4")
    delta = np.eye(4)[0]  # Q = δ_{a,0}: ρ = Q_0, not positive
    rec = density_matrix(delta, povm)
    fidelity = rec.fidelity(np.array([1, 0], dtype=complex))
    assert fidelity.value > 1 and not fidelity.physical and fidelity.min_eigenvalue < 0
    assert 0 <= fidelity.projected <= 1
    projected = rec.projected()
    assert projected.is_physical and abs(projected.trace - 1) < 1e-12
    assert np.allclose(project_to_physical(projected.rho), projected.rho)


def test_exact_reconstruction_above_the_limit_is_refused():
    L = ENUMERATE_MAX_L + 1

    class Big:
        K = 4

    Big.L = L
    with pytest.raises(QtomoError, match=f"L <= {ENUMERATE_MAX_L}"):
        enumerate_probabilities(Big())


@pytest.mark.parametrize("povm_name", POVM_NAMES)
def test_exact_observables_equal_dense_traces(povm_name):
    """Σ_a Q(a) f_O(a) = Tr(ρ O) for a mixed ρ, every observable the estimators report."""
    povm, L = get_povm(povm_name), 4
    state = tfim_ground_state(L, h=0.8)
    rho = noisy_state(state.psi, 0.25, seed=2)
    strings = ["X0 Y2", "Z1 X3", "y0 y1 z3"]
    obs = exact_observables(born_probabilities(rho, povm), povm, hamiltonian=state.hamiltonian,
                            pauli_strings=strings)

    def trace(string):
        return np.trace(rho @ dense_pauli(string, L)).real

    for i in range(L):
        assert abs(obs.X.value[i] - trace({i: "X"})) < 1e-10
        assert abs(obs.Z.value[i] - trace({i: "Z"})) < 1e-10
        for j in range(L):
            expected_zz = 1.0 if i == j else trace({i: "Z", j: "Z"})
            expected_xx = 1.0 if i == j else trace({i: "X", j: "X"})
            assert abs(obs.ZZ.value[i, j] - expected_zz) < 1e-10
            assert abs(obs.XX.value[i, j] - expected_xx) < 1e-10
    energy = np.trace(rho @ state.hamiltonian.sparse_matrix().toarray()).real
    assert abs(obs.energy.value - energy) < 1e-10 and obs.energy.stderr == 0
    for text in strings:
        assert abs(obs.strings[text].value - trace(parse_pauli_string(text, L))) < 1e-10
    assert obs.n_samples is None


def test_monte_carlo_observables_agree_with_exact_within_four_sigma():
    povm, L = get_povm("pauli4"), 6
    state = tfim_ground_state(L, h=1.0)
    model = state.distribution(povm)
    generator = torch.Generator().manual_seed(11)
    obs = model_observables(model, povm, samples=40_000, batch_size=9999, generator=generator,
                            hamiltonian=state.hamiltonian, pauli_strings=["X0 Z2 X5"])
    reference = state.references()
    assert obs.n_samples == 40_000
    for name in ("X", "Z", "ZZ", "XX"):
        estimate = getattr(obs, name)
        off_diagonal = estimate.stderr > 0
        z_scores = np.abs(estimate.value - reference[name])[off_diagonal] / estimate.stderr[
            off_diagonal]
        assert z_scores.max() < 4, name
    assert abs(obs.energy.value - reference["energy"]) < 4 * obs.energy.stderr
    string_value = expectation_pauli_string(state.psi, {0: "X", 2: "Z", 5: "X"})
    assert abs(obs.strings["X0 Z2 X5"].value - string_value) < 4 * obs.strings["X0 Z2 X5"].stderr


def test_energy_error_includes_term_covariances():
    """stderr(E) is that of the per-record sum e(a) = Σ_t c_t f_t(a), covariances included."""
    povm, L = get_povm("pauli4"), 4
    state = tfim_ground_state(L, h=0.5)
    records = state.distribution(povm).sample(20_000, torch.Generator().manual_seed(3))
    obs = estimate_observables(records.numpy(), povm, hamiltonian=state.hamiltonian)
    tables = povm.pauli_dual_traces()
    a = records.numpy()
    terms = np.stack([coefficient * np.prod([tables[p][a[:, s]] for s, p in string.items()], 0)
                      for coefficient, string in state.hamiltonian.terms()], axis=1)
    per_record = terms.sum(axis=1)
    assert abs(obs.energy.value - per_record.mean()) < 1e-12
    assert abs(obs.energy.stderr - per_record.std(ddof=1) / np.sqrt(a.shape[0])) < 1e-12


@pytest.mark.parametrize("povm_name, L", [("pauli4", 6), ("tetra", 6), ("pauli6", 5)])
def test_mps_fidelity_equals_dense_fidelity(povm_name, L):
    povm = get_povm(povm_name)
    state = tfim_ground_state(L, h=1.2)
    mps = vector_to_mps(state.psi)
    rho = noisy_state(state.psi, 0.3, seed=4)
    model = ExactDistribution(povm, born_probabilities(rho, povm))
    dense = np.vdot(state.psi, rho @ state.psi).real
    overlaps = np.concatenate([pure_state_overlaps(block, mps, povm, batch_size=1000)
                               for _, block in outcome_blocks(L, povm.K)])
    assert abs(model.probabilities @ overlaps - dense) < 1e-10


def test_monte_carlo_mps_fidelity_agrees_within_four_sigma():
    povm, L = get_povm("pauli6"), 6  # the smallest variance of g(a) among the POVMs
    state = tfim_ground_state(L, h=1.2)
    rho = noisy_state(state.psi, 0.3, seed=4)
    model = ExactDistribution(povm, born_probabilities(rho, povm))
    estimate = mps_fidelity(model, vector_to_mps(state.psi), povm, samples=20_000,
                            generator=torch.Generator().manual_seed(5))
    assert estimate.relative_error < 0.1
    assert abs(estimate.value - np.vdot(state.psi, rho @ state.psi).real) < 4 * estimate.stderr


def test_truth_has_unit_mps_fidelity_and_bad_estimates_warn():
    povm = get_povm("tetra")
    state = ghz_state(5)
    mps = vector_to_mps(state.psi)
    model = state.distribution(povm)
    overlaps = np.concatenate([pure_state_overlaps(block, mps, povm)
                               for _, block in outcome_blocks(5, povm.K)])
    assert abs(model.probabilities @ overlaps - 1) < 1e-10
    with pytest.warns(FidelityWarning, match="relative error"):
        mps_fidelity(model, mps, povm, samples=3, generator=torch.Generator().manual_seed(0))


def test_mps_shape_is_checked():
    povm = get_povm("pauli4")
    mps = vector_to_mps(ghz_state(3).psi)
    with pytest.raises(QtomoError, match="3 tensors; expected L = 4"):
        pure_state_overlaps(np.zeros((2, 4), int), mps, povm)


def test_dense_pauli_strings_read_as_their_sparse_form():
    assert parse_pauli_string("XiYIzI", 6) == parse_pauli_string("X0 Y2 Z4", 6)


@pytest.mark.parametrize("text, message", [
    ("X0 Z7", "site 7 is out of range for L = 6"),
    ("X0 Q3", "cannot read 'Q3'"),
    ("X0 X0", "site 0 appears more than once"),
    ("", "is empty"),
    ("X-1", "cannot read 'X-1'"),
    ("XXZ", "has 3 letters; a dense string needs one per qubit, L = 6"),
    ("IIIIII", "is the identity"),
])
def test_bad_pauli_strings_are_one_line_errors(text, message):
    with pytest.raises(QtomoError, match=message) as info:
        parse_pauli_string(text, 6)
    assert "\n" not in str(info.value)


def _random_hermitian_unit_trace(rng, D: int, negative: float) -> np.ndarray:
    """A Hermitian D × D matrix of unit trace with a negative eigenvalue of size ``negative``."""
    vectors = np.linalg.qr(rng.normal(size=(D, D)) + 1j * rng.normal(size=(D, D)))[0]
    eigenvalues = rng.dirichlet(np.ones(D - 1))
    eigenvalues = np.append(eigenvalues * (1 + negative), -negative)
    return (vectors * eigenvalues) @ vectors.conj().T


@pytest.mark.parametrize("seed", range(4))
def test_sgs_projection_is_the_constrained_minimum(seed):
    """SGS against a brute-force minimisation of ‖σ − ρ‖_F over σ = A A†/Tr(A A†), 4×4."""
    from scipy.optimize import minimize

    rng = np.random.default_rng(seed)
    rho = _random_hermitian_unit_trace(rng, 4, negative=0.15)
    sgs = project_to_physical(rho)
    assert np.linalg.eigvalsh(sgs).min() > -1e-12 and abs(np.trace(sgs) - 1) < 1e-12

    def distance(x):
        A = (x[:16] + 1j * x[16:]).reshape(4, 4)
        sigma = A @ A.conj().T
        return np.linalg.norm(sigma / np.trace(sigma).real - rho)

    best = min(minimize(distance, rng.normal(size=32), method="BFGS",
                        options={"gtol": 1e-10, "maxiter": 5000}).fun for _ in range(6))
    assert np.linalg.norm(sgs - rho) <= best + 1e-6
    assert best <= np.linalg.norm(sgs - rho) + 1e-4  # the search finds the same minimum
    eigenvalues, vectors = np.linalg.eigh(rho)
    clipped = np.clip(eigenvalues, 0, None)
    clip_and_renormalise = (vectors * (clipped / clipped.sum())) @ vectors.conj().T
    assert np.linalg.norm(clip_and_renormalise - rho) > np.linalg.norm(sgs - rho) + 1e-3


def test_sgs_equals_the_simplex_projection_closed_form():
    """diag(0.7, 0.4, −0.1): the deficit 0.1 is spread over the two positive eigenvalues."""
    projected = project_to_physical(np.diag([0.7, 0.4, -0.1, 0.0]))
    assert np.allclose(np.diag(projected).real, [0.65, 0.35, 0.0, 0.0], atol=1e-12)
    # trace ≠ 1 (an estimated Q): the projection still lands on unit trace
    assert np.allclose(np.diag(project_to_physical(np.diag([1.2, 0.0]))).real, [1.0, 0.0])


def test_reconstruction_diagnostics_against_dense_values():
    psi = tfim_ground_state(3).psi
    rho = noisy_state(psi, 0.2, seed=3) + 0.05 * np.diag([1, -1, 1, -1, 1, -1, 1, -1])
    rec = density_matrix(born_probabilities(rho, get_povm("tetra")), get_povm("tetra"))
    eigenvalues, vectors = np.linalg.eigh(rho)
    assert abs(rec.purity - np.trace(rho @ rho).real) < 1e-10
    assert abs(rec.negativity - (-eigenvalues[eigenvalues < 0].sum())) < 1e-10
    fidelity = rec.fidelity(psi)
    top = vectors[:, -1]
    assert abs(fidelity.top_eigenvector - abs(np.vdot(top, psi)) ** 2) < 1e-10
    assert abs(fidelity.projected - np.vdot(psi, project_to_physical(rho) @ psi).real) < 1e-10
    assert rec.diagnostics(fidelity)["top_eigenvector_fidelity"] == fidelity.top_eigenvector


def test_fidelities_refuse_targets_that_are_not_states():
    psi = np.array([1, 0, 0, 1]) / np.sqrt(2)
    rho = np.outer(psi, psi)
    assert quantum_fidelity(rho, psi).value == pytest.approx(1.0)
    with pytest.raises(QtomoError, match="is not normalised: ‖ψ‖ = 2"):
        quantum_fidelity(rho, 2 * psi)
    with pytest.raises(QtomoError, match="has trace 2"):
        uhlmann_fidelity(2 * rho, 2 * rho)
    with pytest.raises(QtomoError, match="NaN"):
        quantum_fidelity(np.full((4, 4), np.nan), psi)
    with pytest.raises(QtomoError, match="ρ has trace 2"):
        quantum_fidelity(2 * rho, psi)
    # variant: a Hermitian, trace-1 σ with a negative eigenvalue is not a state either
    with pytest.raises(QtomoError, match="not positive: smallest eigenvalue -0.2"):
        uhlmann_fidelity(rho, np.diag([1.2, -0.2, 0.0, 0.0]))
    assert float(uhlmann_fidelity(np.eye(4) / 4, rho)) == pytest.approx(0.25)


@settings(FUZZ, max_examples=100)
@given(seed=st.integers(0, 2**16), scale=st.sampled_from([1.0, 1.0, 2.0, 0.5, 1 + 1e-9]),
       trace=st.sampled_from([1.0, 1.0, 3.0, 1 + 1e-9]), mixed=st.booleans(),
       poison=st.booleans())
def test_fidelity_is_in_0_1_for_states_and_refused_otherwise(seed, scale, trace, mixed,
                                                              poison):
    rng = np.random.default_rng(seed)
    D = 4
    vector = rng.normal(size=D) + 1j * rng.normal(size=D)
    vector /= np.linalg.norm(vector)
    factor = rng.normal(size=(D, D)) + 1j * rng.normal(size=(D, D))
    rho = factor @ factor.conj().T
    rho *= trace / np.trace(rho).real
    if poison:
        rho[0, 0] = np.nan if seed % 2 else np.inf
    target = np.outer(vector, vector.conj()) * scale if mixed else vector * np.sqrt(scale)
    valid = abs(scale - 1) < 1e-6 and abs(trace - 1) < 1e-6 and not poison
    fidelity = accepted_or_refused(lambda: quantum_fidelity(rho, target), valid,
                                   (seed, scale, trace, mixed, poison))
    assert fidelity is None or -1e-9 <= fidelity.value <= 1 + 1e-6
