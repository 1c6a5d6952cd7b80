"""Independent dense references for the tests: Kronecker-product operators and Hamiltonians.

Deliberately naive (explicit np.kron of 2×2 matrices) so that they share no code path with qtomo.
"""

from functools import reduce

import numpy as np

I2 = np.eye(2)
X = np.array([[0, 1], [1, 0]], dtype=complex)
Y = np.array([[0, -1j], [1j, 0]])
Z = np.diag([1.0, -1.0]).astype(complex)


def site_operator(op: np.ndarray, site: int, L: int) -> np.ndarray:
    return reduce(np.kron, [op if i == site else I2 for i in range(L)])


def dense_tfim(L: int, J: float, h: float, periodic: bool = False) -> np.ndarray:
    bonds = [(i, i + 1) for i in range(L - 1)] + ([(L - 1, 0)] if periodic else [])
    H = sum(-J * site_operator(Z, i, L) @ site_operator(Z, j, L) for i, j in bonds)
    return H + sum(-h * site_operator(X, i, L) for i in range(L))


def dense_born(rho: np.ndarray, elements: np.ndarray, outcomes) -> np.ndarray:
    """Tr(M_a ρ) with M_a built as an explicit Kronecker product, one record at a time."""
    return np.array([np.trace(reduce(np.kron, [elements[k] for k in a]) @ rho).real
                     for a in outcomes])


def dense_from_mps(tensors) -> np.ndarray:
    """Dense ψ (2^L,) from MPS tensors (χ_l, 2, χ_r), qubit 0 most significant."""
    return reduce(lambda psi, B: np.tensordot(psi, B, axes=([-1], [0])), tensors).reshape(-1)


def record_counts(a, K: int) -> np.ndarray:
    """How often each of the K^L records (index = Σ a_i K^(L-1-i)) occurs in the rows of ``a``."""
    a = np.asarray(a, dtype=np.int64)
    index = a @ (K ** np.arange(a.shape[1] - 1, -1, -1))
    return np.bincount(index, minlength=K ** a.shape[1])


def exact_kl(p: np.ndarray, log_q: np.ndarray) -> float:
    """KL(P‖Q) = Σ_a P(a) ln(P(a)/Q(a)) over all records, with 0 ln 0 = 0 (an outcome's P can
    be 0 to the last bit)."""
    support = p > 0
    return float(np.sum(p[support] * (np.log(p[support]) - log_q[support])))
