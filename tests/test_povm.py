"""POVM definitions, dual frames, Born rule and its inversion against dense linear algebra."""

from functools import reduce

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qtomo.errors import QtomoError
from qtomo.povm import (
    PAULI,
    POVM,
    POVM_NAMES,
    born_probabilities,
    enumerate_outcomes,
    get_povm,
    invert_probabilities,
)
from qtomo.states.exact import tfim_ground_state
from qtomo.states.mps import ghz_mps


def random_density_matrix(L: int, rng: np.random.Generator) -> np.ndarray:
    A = rng.normal(size=(2**L, 2**L)) + 1j * rng.normal(size=(2**L, 2**L))
    rho = A @ A.conj().T
    return rho / np.trace(rho)


def dense_element(ops: np.ndarray, a) -> np.ndarray:
    return reduce(np.kron, (ops[k] for k in a))


@pytest.mark.parametrize("name", POVM_NAMES)
def test_elements_form_a_povm(name):
    povm = get_povm(name)
    assert np.allclose(povm.elements.sum(axis=0), np.eye(2), atol=1e-14)
    for element in povm.elements:
        assert np.allclose(element, element.conj().T)
        assert np.linalg.eigvalsh(element).min() > -1e-14


def test_spec_definitions():
    s = 1 / np.sqrt(2)
    pauli4, pauli6, tetra = (get_povm(n) for n in ("pauli4", "pauli6", "tetra"))
    plus_i = np.array([s, 1j * s])
    assert np.allclose(pauli4.elements[2], np.outer(plus_i, plus_i.conj()) / 3)
    minus = np.array([s, -s])
    assert np.allclose(pauli6.elements[3], np.outer(minus, minus.conj()) / 3)
    # tetra: Bloch vectors from Tr(σ M_k) = s_k / 2
    bloch = np.array([[np.trace(PAULI[p] @ m).real * 2 for p in "XYZ"] for m in tetra.elements])
    assert np.allclose(bloch[1], [2 * np.sqrt(2) / 3, 0, -1 / 3])
    assert np.allclose(bloch[2], [-np.sqrt(2) / 3, np.sqrt(2 / 3), -1 / 3])
    assert np.allclose(np.linalg.norm(bloch, axis=1), 1)


@pytest.mark.parametrize("name", POVM_NAMES)
def test_dual_frame_identity(name):
    povm = get_povm(name)
    rng = np.random.default_rng(7)
    for _ in range(10):
        X = rng.normal(size=(2, 2)) + 1j * rng.normal(size=(2, 2))
        coefficients = np.einsum("aij,ji->a", povm.elements, X)
        assert np.allclose(np.einsum("a,aij->ij", coefficients, povm.duals), X, atol=1e-13)


def test_overlap_inverse_for_four_outcome_povms():
    for name in ("pauli4", "tetra"):
        povm = get_povm(name)
        assert np.allclose(np.linalg.pinv(povm.overlap), np.linalg.inv(povm.overlap))
    assert np.linalg.matrix_rank(get_povm("pauli6").overlap) == 4


@pytest.mark.parametrize("name", POVM_NAMES)
def test_rank_one_refinement_sums_to_elements(name):
    povm = get_povm(name)
    vectors, parent = povm.rank_one_vectors()
    rebuilt = np.zeros_like(povm.elements)
    for v, k in zip(vectors, parent, strict=True):
        rebuilt[k] += np.outer(v, v.conj())
    assert np.allclose(rebuilt, povm.elements, atol=1e-14)


@pytest.mark.parametrize("name", POVM_NAMES)
def test_born_probabilities_match_dense_rule(name):
    povm = get_povm(name)
    rng = np.random.default_rng(3)
    rho = random_density_matrix(3, rng)
    P = born_probabilities(rho, povm)
    dense = [np.trace(dense_element(povm.elements, a) @ rho).real
             for a in enumerate_outcomes(3, povm.K)]
    assert np.allclose(P, dense, atol=1e-15)
    assert abs(P.sum() - 1) < 1e-13


@settings(max_examples=20, deadline=None)
@given(L=st.integers(1, 4), name=st.sampled_from(POVM_NAMES), seed=st.integers(0, 2**31))
def test_inversion_recovers_rho(L, name, seed):
    povm = get_povm(name)
    rho = random_density_matrix(L, np.random.default_rng(seed))
    assert np.allclose(invert_probabilities(born_probabilities(rho, povm), povm), rho, atol=1e-12)


def test_product_observable_from_dual_traces():
    povm = get_povm("pauli4")
    rho = random_density_matrix(2, np.random.default_rng(11))
    P = born_probabilities(rho, povm).reshape(4, 4)
    tables = povm.pauli_dual_traces()
    estimate = np.einsum("ab,a,b->", P, tables["X"], tables["Z"])
    assert np.isclose(estimate, np.trace(np.kron(PAULI["X"], PAULI["Z"]) @ rho).real)


def test_enumeration_order_is_qubit_zero_most_significant():
    outcomes = enumerate_outcomes(3, 4)
    assert outcomes.shape == (64, 3)
    assert outcomes[4 * 4 * 2 + 4 * 1 + 3].tolist() == [2, 1, 3]


def test_value_equality_and_immutability():
    assert get_povm("pauli4") == POVM("pauli4", get_povm("pauli4").elements.copy())
    assert get_povm("pauli4") != get_povm("tetra")
    with pytest.raises(ValueError):
        get_povm("pauli4").elements[0, 0, 0] = 1


@pytest.mark.parametrize(
    "elements, problem",
    [
        (np.array([np.eye(2) / 4] * 4), "informationally complete"),
        (np.array([np.eye(2) / 2] * 3), "K >= 4"),
        (get_povm("pauli4").elements * 1.1, "sum to the identity"),
        (np.array([[[1, 1], [0, 0]]] + [np.eye(2) / 3] * 3), "Hermitian"),
    ],
)
def test_invalid_povms_are_rejected(elements, problem):
    with pytest.raises(QtomoError, match=problem):
        POVM("custom", elements)


def test_unknown_name():
    with pytest.raises(QtomoError, match="unknown POVM 'pauli5'"):
        get_povm("pauli5")


def test_truth_distributions_share_the_record_check():
    pauli4 = get_povm("pauli4")
    for truth in (tfim_ground_state(3).distribution(pauli4), ghz_mps(3).distribution(pauli4)):
        with pytest.raises(QtomoError, match="must lie in 0..3 for POVM 'pauli4'; got 9 in row"):
            truth.log_prob(torch.tensor([[0, 9, 0]]))
        with pytest.raises(QtomoError, match="shape"):
            truth.log_prob(torch.zeros(1, 4, dtype=torch.long))
