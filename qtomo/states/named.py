"""Named states users prepare: W, the 1D cluster (graph) state and the XXZ ground state.

Conventions as everywhere in qtomo (docs/conventions.md "Conventions"; docs/states-and-circuits.md):
qubit 0 is the most significant factor, |0⟩ is Z = +1.

- ``w``: |W⟩ = Σ_i |0…1_i…0⟩ / √L, an exact MPS of bond dimension 2 (the bond carries "a 1 has
  been placed");
- ``cluster``: Π_i CZ_{i,i+1} |+⟩^L on the open chain, ψ(s) = 2^(−L/2) Π_i (−1)^(s_i s_{i+1}),
  an exact MPS of bond dimension 2 (the bond carries the previous bit); its stabilisers are
  K_i = Z_{i−1} X_i Z_{i+1} (Z's outside the chain dropped), and every bond has entropy ln 2;
- ``xxz``: the ground state of H = J Σ (X_i X_{i+1} + Y_i Y_{i+1} + Δ Z_i Z_{i+1})
  (:class:`~qtomo.states.hamiltonians.XXZ`) in the sector Σ_i Z_i = 0, by exact diagonalisation
  of that sector (exact path) or two-site DMRG from the Néel state |0101…⟩ (MPS path).

Each state comes as an :class:`~qtomo.states.exact.ExactState` (dense ψ, exact path) or an
:class:`~qtomo.states.mps.MPSState` (MPS path).

Example:
    >>> refs = w_mps(8).references()
    >>> round(float(refs["Z"][0]), 12), round(float(refs["XX"][0, 5]), 12)   # 1 − 2/L, 2/L
    (0.75, 0.25)
"""

from __future__ import annotations

import numpy as np
import scipy.sparse.linalg as sla

from qtomo.errors import QtomoError
from qtomo.states.dmrg import DMRG_SECONDS, dmrg_ground_state
from qtomo.states.exact import EXACT_MAX_L, ExactState
from qtomo.states.hamiltonians import XXZ, check_chain_length
from qtomo.states.mps import MPSState, right_canonical

__all__ = ["cluster_mps", "named_state", "w_mps", "xxz_ground_state", "xxz_mps"]

#: defaults of the XXZ DMRG: the critical chain needs a larger χ than the TFIM (measured:
#: χ = 253 at L = 50, Δ = 1 for a discarded weight of 1e-16 per truncation; README
#: "More states and circuits", docs/states-and-circuits.md)
XXZ_CHI_MAX = 256
XXZ_SVD_MIN = 1e-16
XXZ_ENERGY_TOL = 1e-12


def w_mps(L: int) -> MPSState:
    """|W⟩ = Σ_i |0…1_i…0⟩/√L as a right-canonical MPS of bond dimension 2.

    Bond state 0 = "no 1 yet", 1 = "one 1 placed": B^0 = diag(1, 1), B^1 = |0⟩⟨1| (moves 0 → 1);
    the first tensor starts in 0, the last projects on 1.

    Raises:
        QtomoError: for L < 2.
    """
    L = check_chain_length(L, "a W state")
    middle = np.zeros((2, 2, 2))
    middle[0, 0, 0] = middle[1, 0, 1] = middle[0, 1, 1] = 1.0
    tensors = [middle[:1]] + [middle] * (L - 2) + [middle[:, :, 1:]]
    return MPSState(tuple(right_canonical(tensors)), {"state": "w"})


def cluster_mps(L: int) -> MPSState:
    """The open-chain cluster state Π CZ_{i,i+1} |+⟩^L as a right-canonical MPS (χ = 2).

    B_i^s[a, b] = (−1)^(a s) δ_{b s}: the bond carries the previous bit a, and the sign is the
    CZ phase of the pair (a, s).

    Raises:
        QtomoError: for L < 2.
    """
    L = check_chain_length(L, "a cluster state")
    middle = np.zeros((2, 2, 2))
    for a in (0, 1):
        for s in (0, 1):
            middle[a, s, s] = (-1) ** (a * s)
    last = middle.sum(axis=2, keepdims=True)
    tensors = [middle[:1]] + [middle] * (L - 2) + [last]
    return MPSState(tuple(right_canonical(tensors)), {"state": "cluster"})


def xxz_ground_state(L: int, J: float = 1.0, delta: float = 1.0) -> ExactState:
    """The XXZ ground state with Σ Z_i = 0 by sparse diagonalisation of that sector (L ≤ 12).

    The sector holds the C(L, L/2) basis states with L/2 ones; H restricted to it is
    diagonalised by ``eigsh`` from a seeded random start (dense ``eigh`` below 64 states).

    Raises:
        QtomoError: for impossible parameters, a degenerate ground state (odd L, J = 0,
            Δ·sign(J) ≤ −1; :meth:`XXZ.check_ground_state_defined`) or L > 12.

    Example (L = 2: the singlet (|01⟩ − |10⟩)/√2, E = −J(2 + Δ)):
        >>> state = xxz_ground_state(2)
        >>> round(float(state.references()["energy"]), 12), np.round(abs(state.psi), 6).tolist()
        (-3.0, [0.0, 0.707107, 0.707107, 0.0])
    """
    hamiltonian = XXZ(L, J, delta)
    hamiltonian.check_ground_state_defined()
    if L > EXACT_MAX_L:
        raise QtomoError(f"the exact XXZ ground state handles L <= {EXACT_MAX_L}; got L = {L}")
    index = np.arange(2**L)
    ones = np.array([bin(value).count("1") for value in index])
    sector = index[ones == L // 2]
    block = hamiltonian.sparse_matrix()[sector][:, sector]
    if block.shape[0] <= 64:
        vector = np.linalg.eigh(block.toarray())[1][:, 0]
    else:
        # a generic start: the uniform vector is orthogonal to ground states that are odd
        # under the spin flip (L/2 odd)
        start = np.random.default_rng(0).normal(size=block.shape[0])
        vector = sla.eigsh(block, k=1, which="SA", v0=start, tol=1e-14)[1][:, 0]
    psi = np.zeros(2**L, dtype=np.complex128)
    psi[sector] = vector / np.linalg.norm(vector)
    return ExactState(psi, _xxz_attrs(J, delta), hamiltonian)


def xxz_mps(L: int, J: float = 1.0, delta: float = 1.0, chi_max: int = XXZ_CHI_MAX,
            svd_min: float = XXZ_SVD_MIN, energy_tol: float = XXZ_ENERGY_TOL,
            max_seconds: float = DMRG_SECONDS) -> MPSState:
    """The XXZ ground state with Σ Z_i = 0 by two-site DMRG from the Néel state |0101…⟩.

    Args:
        L: even number of qubits.
        J, delta: couplings (:class:`~qtomo.states.hamiltonians.XXZ`).
        chi_max, svd_min, energy_tol, max_seconds: as
            :func:`qtomo.states.dmrg.dmrg_ground_state`.

    Returns:
        MPSState with attrs ``state, J, delta, boundary, chi_max, svd_min, energy_tol,
        truncation_error``.

    Raises:
        QtomoError, ConvergenceError: as :func:`qtomo.states.dmrg.dmrg_ground_state`.

    Example:
        >>> state = xxz_mps(8, delta=0.5)
        >>> exact = xxz_ground_state(8, delta=0.5).references()["energy"]
        >>> bool(abs(state.references()["energy"] - exact) < 1e-9)
        True
    """
    hamiltonian = XXZ(L, J, delta)
    neel = [np.eye(2)[site % 2] for site in range(L)]
    tensors, _, truncation_error = dmrg_ground_state(hamiltonian, neel, chi_max, svd_min,
                                                     energy_tol, max_seconds)
    attrs = {**_xxz_attrs(J, delta), "chi_max": int(chi_max), "svd_min": float(svd_min),
             "energy_tol": float(energy_tol), "truncation_error": float(truncation_error)}
    return MPSState(tuple(tensors), attrs, hamiltonian)


def _xxz_attrs(J: float, delta: float) -> dict:
    return {"state": "xxz", "J": float(J), "delta": float(delta), "boundary": "open"}


def named_state(state: str, L: int, method: str, *, J: float = 1.0, delta: float = 1.0,
                chi_max: int | None = None, svd_min: float | None = None,
                max_seconds: float = DMRG_SECONDS) -> ExactState | MPSState:
    """``w``, ``cluster`` or ``xxz`` (any state of :mod:`qtomo.states.registry`) of L qubits on
    the ``exact`` (dense ψ) or ``mps`` path, as the registry builds it.

    W and cluster states are built as their exact MPS and contracted to ψ on the exact path;
    ``chi_max`` and ``svd_min`` (None: the XXZ defaults) and ``max_seconds`` set the XXZ
    DMRG.

    Example:
        >>> psi = named_state("w", 3, "exact").psi
        >>> np.round(psi.real * 3**0.5, 6).tolist()
        [0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0]
    """
    from qtomo.states.registry import StateParameters, named_state_entry  # it imports this module

    parameters = StateParameters(J=J, delta=delta, chi_max=chi_max, svd_min=svd_min,
                                 dmrg_seconds=max_seconds)
    return named_state_entry(state).build(L, parameters, method)
