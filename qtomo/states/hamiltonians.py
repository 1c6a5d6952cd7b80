"""Spin Hamiltonians in qtomo's conventions (docs/conventions.md "Conventions").

Basis: |s_0 s_1 … s_{L-1}⟩ with qubit 0 the most significant bit of the dense index,
index = Σ s_i 2^(L-1-i); Z|0⟩ = |0⟩, Z|1⟩ = −|1⟩, X|s⟩ = |1−s⟩.

Transverse-field Ising model::

    H = −J Σ_{i<L−1} Z_i Z_{i+1} − h Σ_i X_i        (+ the bond −J Z_{L−1} Z_0 if periodic)

It commutes with the parity Π = ⊗_i X_i. The ferromagnet (J > 0) is ordered for |h| < J and
paramagnetic for |h| > J, critical at |h| = J.

XXZ chain (docs/simulate.md "More states", docs/states-and-circuits.md), Pauli matrices, open
boundary::

    H = J Σ_{i<L−1} (X_i X_{i+1} + Y_i Y_{i+1} + Δ Z_i Z_{i+1})

Δ = 1 is the Heisenberg antiferromagnet (J > 0). H conserves the magnetisation Σ_i Z_i.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from qtomo.errors import QtomoError

__all__ = ["BOUNDARIES", "TFIM", "XXZ", "PauliTerm", "hamiltonian_from_attrs", "pauli_sum_matrix"]

BOUNDARIES = ("open", "periodic")

#: a weighted Pauli string: (coefficient, {site: "X" | "Y" | "Z"})
PauliTerm = tuple[float, dict[int, str]]


def check_chain_length(L: int, what: str, minimum: int = 2) -> int:
    """L as an int; QtomoError naming ``what`` unless it is an integer ≥ ``minimum``.

    Example:
        >>> check_chain_length(3, "a W state")
        3
    """
    if isinstance(L, bool) or not isinstance(L, (int, np.integer)) or L < minimum:
        raise QtomoError(f"{what} needs an integer L >= {minimum}; got L = {L!r}")
    return int(L)


def _check_chain(name: str, L: int, couplings: dict[str, float]) -> None:
    """Refuse a chain of fewer than 2 qubits (or a non-integer L) and couplings that are not
    finite real numbers (QtomoError naming the Hamiltonian and the parameter)."""
    check_chain_length(L, name)
    for key, value in couplings.items():
        real = isinstance(value, int | float | np.integer | np.floating)
        if isinstance(value, bool) or not real or not math.isfinite(value):
            raise QtomoError(f"{name} parameter {key} must be finite; got {value!r}")


@dataclass(frozen=True)
class TFIM:
    """The transverse-field Ising chain H = −J Σ Z_i Z_{i+1} − h Σ X_i.

    Args:
        L: number of qubits, at least 2 (3 for periodic boundaries).
        J: Ising coupling (finite).
        h: transverse field (finite).
        boundary: ``"open"`` or ``"periodic"``.

    Raises:
        QtomoError: for impossible parameters.

    Example:
        >>> tfim = TFIM(4, J=1.0, h=1.0)
        >>> round(tfim.free_fermion_ground_energy(), 10)
        -4.7587704831
    """

    L: int
    J: float = 1.0
    h: float = 1.0
    boundary: str = "open"

    def __post_init__(self) -> None:
        _check_chain("TFIM", self.L, {"J": self.J, "h": self.h})
        if self.boundary not in BOUNDARIES:
            raise QtomoError(
                f"boundary must be one of {', '.join(BOUNDARIES)}; got {self.boundary!r}"
            )
        if self.boundary == "periodic" and self.L < 3:
            raise QtomoError(f"a periodic TFIM needs L >= 3; got L = {self.L}")

    @property
    def bonds(self) -> list[tuple[int, int]]:
        """Nearest-neighbour pairs (i, j) carrying −J Z_i Z_j."""
        bonds = [(i, i + 1) for i in range(self.L - 1)]
        if self.boundary == "periodic":
            bonds.append((self.L - 1, 0))
        return bonds

    def terms(self) -> list[PauliTerm]:
        """H as a list of weighted Pauli strings: (−J, {i: Z, j: Z}) and (−h, {i: X})."""
        zz = [(-self.J, {i: "Z", j: "Z"}) for i, j in self.bonds]
        x = [(-self.h, {i: "X"}) for i in range(self.L)]
        return zz + x

    #: the symmetry TeNPy's ``SpinHalfSite`` may conserve in DMRG (none: parity would reorder
    #: the basis into X eigenstates)
    conserve: ClassVar[str | None] = None

    def tenpy_terms(self) -> list[tuple[float, list[tuple[int, str]]]]:
        """H in TeNPy operator names: (c, [(site, "Sigmax" | "Sigmaz"), …]) per term."""
        return [(c, [(i, f"Sigma{letter.lower()}") for i, letter in sorted(string.items())])
                for c, string in self.terms()]

    def sparse_matrix(self) -> sp.csr_matrix:
        """H as a (2^L, 2^L) real CSR matrix in the computational basis."""
        L, D = self.L, 2**self.L
        index = np.arange(D)
        spins = 1 - 2 * ((index[:, None] >> (L - 1 - np.arange(L))) & 1)  # (D, L), Z eigenvalues
        diagonal = -self.J * sum(spins[:, i] * spins[:, j] for i, j in self.bonds)
        rows = [index] + [index] * L
        cols = [index] + [index ^ (1 << (L - 1 - i)) for i in range(L)]
        values = [diagonal] + [np.full(D, -self.h)] * L
        return sp.csr_matrix(
            (np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))), shape=(D, D)
        )

    def _quasiparticle_energies(self, sector: str = "even") -> np.ndarray:
        """Jordan–Wigner single-particle energies ε_k ≥ 0 (before the factor 2), |J| and |h|.

        Open chain: the singular values of the L×L bidiagonal matrix A_ii = h, A_{i,i+1} = J
        (Lieb–Schultz–Mattis / Pfeuty), taken as the positive eigenvalues of the 2L×2L
        Golub–Kahan tridiagonal matrix (zero diagonal, off-diagonal h, J, h, …, h): O(L²) and
        accurate even for the exponentially small edge mode (sorted ascending, ``sector``
        unused). Periodic chain: √(J² + h² − 2J|h| cos k) with k = π(2n+1)/L in the parity-even
        sector (antiperiodic fermions) and k = 2πn/L, n ≠ 0, in the odd sector.
        """
        J, h = abs(self.J), abs(self.h)
        if self.boundary == "open":
            off_diagonal = np.empty(2 * self.L - 1)
            off_diagonal[0::2], off_diagonal[1::2] = h, J
            eigenvalues = scipy.linalg.eigvalsh_tridiagonal(np.zeros(2 * self.L), off_diagonal)
            return np.abs(eigenvalues[self.L:])  # the nonnegative half of the ±σ_k pairs
        n = np.arange(self.L)
        k = np.pi * (2 * n + 1) / self.L if sector == "even" else 2 * np.pi * n[1:] / self.L
        return np.sqrt(J**2 + h**2 - 2 * J * h * np.cos(k))

    def free_fermion_ground_energy(self) -> float:
        """Exact ground-state energy from the Jordan–Wigner free-fermion solution.

        Open chain: E₀ = −Σ_k σ_k(A) (see :meth:`_quasiparticle_energies`). Periodic chain,
        parity-even sector: E₀ = −Σ_{n=0}^{L−1} √(J² + h² − 2J|h| cos(π(2n+1)/L)), valid for
        J ≥ 0 or even L (⊗Z maps h to −h; for even L a sublattice rotation maps J to −J).
        The frustrated odd antiferromagnetic ring has its ground state in the odd sector.

        Raises:
            QtomoError: for the frustrated periodic case (J < 0, odd L).
        """
        if self.boundary == "periodic" and self.J < 0 and self.L % 2:
            raise QtomoError(
                f"no free-fermion closed form for the frustrated ring J = {self.J} < 0 with odd "
                f"L = {self.L}; expected J >= 0 or even L"
            )
        return -float(self._quasiparticle_energies().sum())

    def check_ground_state_defined(self) -> None:
        """Raise QtomoError for J = h = 0, where H = 0 and every state is a ground state.

        Example:
            >>> TFIM(4, J=0.0, h=0.0).check_ground_state_defined()
            Traceback (most recent call last):
            ...
            qtomo.errors.QtomoError: J = h = 0 makes H = 0 and every state a ground state; ...
        """
        if self.J == 0 and self.h == 0:
            raise QtomoError("J = h = 0 makes H = 0 and every state a ground state; give a "
                             "nonzero J or h")

    def parity_gap(self) -> float:
        """Splitting of the lowest parity-even and parity-odd levels (free fermions, |J|, |h|).

        Open chain: 2 σ_min(A), the edge mode, ≈ 2J(1 − h²/J²)(h/J)^L for h < J. Periodic
        chain: E_R − E_NS with E_NS the even-sector energy above and
        E_R = −Σ_{n≠0} √(J² + h² − 2J|h| cos(2πn/L)) − (|J| − |h|).

        Example:
            >>> round(TFIM(8, h=0.5, boundary="periodic").parity_gap(), 10)
            0.0014558475
        """
        if self.boundary == "open":
            return float(2 * self._quasiparticle_energies()[0])
        even = -self._quasiparticle_energies("even").sum()
        odd = -self._quasiparticle_energies("odd").sum() - (abs(self.J) - abs(self.h))
        return float(abs(odd - even))


def pauli_sum_matrix(terms: list[PauliTerm], L: int) -> sp.csr_matrix:
    """Σ_t c_t ⊗_i σ_i as a (2^L, 2^L) complex CSR matrix (qubit 0 most significant).

    Each Pauli string is a signed permutation: X and Y flip bit i, Y multiplies by i (−i) on a
    source bit 0 (1) and Z by (−1)^{s_i}, so string t maps |s⟩ to phase_t(s) |s ⊕ f_t⟩.

    Example:
        >>> pauli_sum_matrix([(1.0, {0: "Y"})], 1).toarray().tolist()
        [[0j, -1j], [1j, 0j]]
    """
    D = 2**L
    index = np.arange(D)
    bits = (index[:, None] >> (L - 1 - np.arange(L))) & 1  # (D, L)
    rows, cols, values = [], [], []
    for coefficient, string in terms:
        phase = np.full(D, complex(coefficient))
        flip = 0
        for site, letter in string.items():
            if letter in ("X", "Y"):
                flip |= 1 << (L - 1 - site)
            if letter == "Y":
                phase = phase * np.where(bits[:, site] == 0, 1j, -1j)
            if letter == "Z":
                phase = phase * (1 - 2 * bits[:, site])
        rows.append(index ^ flip)
        cols.append(index)
        values.append(phase)
    return sp.csr_matrix(
        (np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))), shape=(D, D)
    )


@dataclass(frozen=True)
class XXZ:
    """The open XXZ chain H = J Σ (X_i X_{i+1} + Y_i Y_{i+1} + Δ Z_i Z_{i+1}) (Pauli matrices).

    Its ground state (in qtomo: the lowest state with Σ_i Z_i = 0) is unique for even L in the
    regime Δ·sign(J) > −1; for Δ·sign(J) ≤ −1 the ground states are the degenerate
    ferromagnets |0…0⟩, |1…1⟩, and odd L has a degenerate doublet Σ Z = ±1, so both are refused.

    Args:
        L: number of qubits, even, at least 2.
        J: coupling (finite, nonzero).
        delta: anisotropy Δ (finite).

    Raises:
        QtomoError: for impossible parameters or a degenerate ground state.

    Example (L = 2: the singlet, E = J(−1 − 1 − Δ)):
        >>> round(float(np.linalg.eigvalsh(XXZ(2).sparse_matrix().toarray())[0]), 12)
        -3.0
    """

    L: int
    J: float = 1.0
    delta: float = 1.0
    boundary: str = "open"

    def __post_init__(self) -> None:
        _check_chain("XXZ", self.L, {"J": self.J, "delta": self.delta})
        if self.boundary != "open":
            raise QtomoError(f"the XXZ chain is open only; got boundary {self.boundary!r}")

    @property
    def bonds(self) -> list[tuple[int, int]]:
        """Nearest-neighbour pairs (i, i+1)."""
        return [(i, i + 1) for i in range(self.L - 1)]

    def check_ground_state_defined(self) -> None:
        """Raise QtomoError where the ground state is degenerate: J = 0, odd L, Δ·sign(J) ≤ −1."""
        if self.J == 0:
            raise QtomoError("J = 0 makes H = 0 and every state a ground state; give a nonzero J")
        if self.L % 2:
            raise QtomoError(f"the open XXZ chain with odd L has a degenerate ground state "
                             f"(Σ Z = ±1); expected an even L, got L = {self.L}")
        if self.delta * math.copysign(1.0, self.J) <= -1:
            raise QtomoError(
                f"XXZ with Δ = {self.delta:g}, J = {self.J:g} (Δ·sign(J) <= −1) has the degenerate "
                f"ferromagnetic ground states |0…0⟩, |1…1⟩; expected Δ·sign(J) > −1 "
                f"(for a ferromagnet use --state ghz or product)")

    def terms(self) -> list[PauliTerm]:
        """H as weighted Pauli strings (J, {i: X, i+1: X}), (J, {…Y…}), (JΔ, {…Z…})."""
        return [(coefficient, {i: letter, j: letter}) for i, j in self.bonds
                for coefficient, letter in ((self.J, "X"), (self.J, "Y"),
                                            (self.J * self.delta, "Z"))]

    def sparse_matrix(self) -> sp.csr_matrix:
        """H as a (2^L, 2^L) real CSR matrix in the computational basis."""
        return pauli_sum_matrix(self.terms(), self.L).real.tocsr()

    #: DMRG conserves Σ Z (TeNPy's ``Sz``), which H commutes with
    conserve: ClassVar[str | None] = "Sz"

    def tenpy_terms(self) -> list[tuple[float, list[tuple[int, str]]]]:
        """H in TeNPy's Sz-conserving operators: X X + Y Y = 2 (σ⁺σ⁻ + σ⁻σ⁺) with σ⁺ = ``Sp``."""
        terms = []
        for i, j in self.bonds:
            terms += [(2 * self.J, [(i, "Sp"), (j, "Sm")]), (2 * self.J, [(i, "Sm"), (j, "Sp")]),
                      (self.J * self.delta, [(i, "Sigmaz"), (j, "Sigmaz")])]
        return terms


def hamiltonian_from_attrs(attrs: dict, L: int) -> TFIM | XXZ | None:
    """The Hamiltonian a dataset's root attributes describe (``state``, ``J``, ``h``,
    ``boundary``; for ``xxz`` ``J`` and ``delta``; docs/conventions.md "The dataset file"), or None
    for a state without one (GHZ, product, W, cluster, circuits, measured data): the registry's
    :func:`~qtomo.states.registry.dataset_hamiltonian`.

    Example:
        >>> hamiltonian_from_attrs({"state": "tfim", "J": 1.0, "h": 0.5, "boundary": "open"}, 4)
        TFIM(L=4, J=1.0, h=0.5, boundary='open')
        >>> hamiltonian_from_attrs({"state": "ghz"}, 4) is None
        True
    """
    from qtomo.states.registry import dataset_hamiltonian  # the registry imports this module

    return dataset_hamiltonian(attrs, L)
