"""Single-qubit informationally complete POVMs and their dual frames (docs/conventions.md
"Conventions").

A POVM is a set of K positive operators M_k (2×2, complex128) with Σ_k M_k = 1. Outcome k is
stored as the integer k. Many-qubit elements are tensor products, M_a = ⊗_i M_{a_i}, with qubit 0
the most significant factor.

Overlap and duals::

    T_ab = Tr(M_a M_b)                     (K, K), real symmetric
    Q_a  = Σ_b (T⁺)_ab M_b                 (K, 2, 2), canonical dual frame
    X    = Σ_a Tr(M_a X) Q_a               for every 2×2 operator X (needs rank T = 4)

so that Born's rule P(a) = Tr(M_a ρ) inverts to ρ = Σ_a P(a) Q_a and, for a product observable
O = ⊗ O_i, ⟨O⟩ = Σ_a P(a) Π_i Tr(O_i Q_{a_i}).

Example:
    >>> povm = get_povm("pauli4")
    >>> povm.K
    4
    >>> rho = np.array([[1, 0], [0, 0]], dtype=complex)        # |0⟩⟨0|
    >>> np.round(povm.probabilities(rho), 6)
    array([0.333333, 0.166667, 0.166667, 0.333333])
    >>> round(float(np.real(povm.probabilities(rho) @ povm.dual_traces(PAULI["Z"]))), 12)
    1.0
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from qtomo.errors import QtomoError

__all__ = [
    "PAULI",
    "POVM",
    "POVM_NAMES",
    "PerQubitPOVM",
    "born_probabilities",
    "povm_from_elements",
    "povm_elements",
    "check_outcomes",
    "enumerate_outcomes",
    "get_povm",
    "invert_probabilities",
    "sites_from_size",
]

_TOL = 1e-10

PAULI: dict[str, np.ndarray] = {
    "I": np.eye(2, dtype=np.complex128),
    "X": np.array([[0, 1], [1, 0]], dtype=np.complex128),
    "Y": np.array([[0, -1j], [1j, 0]], dtype=np.complex128),
    "Z": np.array([[1, 0], [0, -1]], dtype=np.complex128),
}
for _matrix in PAULI.values():
    _matrix.flags.writeable = False


@dataclass(frozen=True, eq=False)
class POVM:
    """An immutable, validated single-qubit POVM.

    Args:
        name: registry name (``"pauli4"``, ``"pauli6"``, ``"tetra"``) or a user label.
        elements: (K, 2, 2) complex128, Hermitian, positive semidefinite, summing to the
            identity and spanning the 2×2 operators (informationally complete).
        require_complete: check informational completeness (default). False admits the
            Heisenberg-picture POVMs E†(M_k) of strong noise (docs/simulate.md "Noisy states"),
            which a sampler may measure but whose duals do not invert Born's rule.

    Raises:
        QtomoError: if any of the conditions above fails; the message names it.

    Two POVMs are equal when their names match and their elements agree to 1e-12.
    """

    name: str
    elements: np.ndarray
    require_complete: bool = field(default=True, repr=False)
    overlap: np.ndarray = field(init=False, repr=False)
    duals: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        elements = np.array(self.elements, dtype=np.complex128)
        _validate_elements(self.name, elements, self.require_complete)
        overlap = np.einsum("aij,bji->ab", elements, elements).real  # (K, K)
        duals = np.einsum("ab,bij->aij", np.linalg.pinv(overlap), elements)  # (K, 2, 2)
        for array in (elements, overlap, duals):
            array.flags.writeable = False
        object.__setattr__(self, "elements", elements)
        object.__setattr__(self, "overlap", overlap)
        object.__setattr__(self, "duals", duals)

    @property
    def K(self) -> int:
        """Number of outcomes."""
        return self.elements.shape[0]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, POVM):
            return NotImplemented
        return (
            self.name == other.name
            and self.elements.shape == other.elements.shape
            and bool(np.allclose(self.elements, other.elements, rtol=0, atol=1e-12))
        )

    def __hash__(self) -> int:
        return hash((self.name, self.K))

    def __repr__(self) -> str:
        return f"POVM({self.name!r}, K={self.K})"

    def at(self, site: int) -> POVM:
        """The POVM measured on qubit ``site``: this one on every qubit."""
        return self

    def site_elements(self, L: int) -> np.ndarray:
        """M_k of every qubit, (L, K, 2, 2) complex128 (a read-only broadcast view)."""
        return np.broadcast_to(self.elements, (L, *self.elements.shape))

    def site_duals(self, L: int) -> np.ndarray:
        """Q_k of every qubit, (L, K, 2, 2) complex128 (a read-only broadcast view)."""
        return np.broadcast_to(self.duals, (L, *self.duals.shape))

    def apply(self, transform: Callable[[POVM], POVM]) -> POVM:
        """``transform`` applied to the POVM of every qubit."""
        return transform(self)

    def probabilities(self, rho: np.ndarray) -> np.ndarray:
        """Single-qubit Born rule p_k = Tr(M_k ρ).

        Args:
            rho: (2, 2) complex density matrix.

        Returns:
            (K,) float64.
        """
        return np.einsum("kij,ji->k", self.elements, np.asarray(rho, dtype=np.complex128)).real

    def dual_traces(self, op: np.ndarray) -> np.ndarray:
        """Tr(O Q_k) for a single-qubit operator O, the per-site factor of an estimator.

        ⟨⊗_i O_i⟩ = Σ_a P(a) Π_i Tr(O_i Q_{a_i}); this returns the table over k for one O_i.

        Args:
            op: (2, 2) complex operator.

        Returns:
            (K,) complex128; real (imaginary part zero) when O is Hermitian.
        """
        return np.einsum("ij,kji->k", np.asarray(op, dtype=np.complex128), self.duals)

    def pauli_dual_traces(self) -> dict[str, np.ndarray]:
        """Tr(σ Q_k) for σ in I, X, Y, Z, each a (K,) float64 table."""
        return {name: self.dual_traces(matrix).real.copy() for name, matrix in PAULI.items()}

    def rank_one_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """A rank-one refinement M_k = Σ_{r: parent_r = k} v_r v_r†.

        Sampling the refined outcome r and reporting parent_r samples the POVM exactly, while the
        post-measurement state of every refined outcome stays pure (used by the MPS sampler).

        Returns:
            vectors: (R, 2) complex128, the v_r (eigenvectors scaled by √eigenvalue).
            parent: (R,) int64, the POVM outcome each v_r belongs to.
        """
        vectors, parent = [], []
        for k, element in enumerate(self.elements):
            eigenvalues, eigenvectors = np.linalg.eigh(element)
            for value, vector in zip(eigenvalues, eigenvectors.T, strict=True):
                if value > _TOL:
                    vectors.append(np.sqrt(value) * vector)
                    parent.append(k)
        return np.array(vectors, dtype=np.complex128), np.array(parent, dtype=np.int64)


@dataclass(frozen=True, eq=False)
class PerQubitPOVM:
    """A single-qubit POVM that differs from qubit to qubit (docs/measured-data.md "Measured data").

    Readout errors that vary by qubit make one: every qubit measures ``pauli6`` with its own bit
    flips. Many-qubit elements and duals are M_a = ⊗_i M^(i)_{a_i}, Q_a = ⊗_i Q^(i)_{a_i}, so
    every estimator of docs/conventions.md "Conventions" holds with qubit i's duals in qubit i's
    factor.

    Args:
        sites: one :class:`POVM` per qubit, qubit 0 first, all with the same name and K.

    Raises:
        QtomoError: for no sites, or sites whose names or K differ.

    Example:
        >>> from qtomo.readout import readout_povms
        >>> povm = readout_povms([[0.0, 0.0], [0.1, 0.2]])
        >>> povm, povm.at(0) == get_povm("pauli6"), povm.site_duals(2).shape
        (PerQubitPOVM('pauli6+readout', K=6, L=2), False, (2, 6, 2, 2))
    """

    sites: tuple[POVM, ...]

    def __post_init__(self) -> None:
        sites = tuple(self.sites)
        if not sites or not all(isinstance(povm, POVM) for povm in sites):
            raise QtomoError("a per-qubit POVM needs one POVM per qubit (at least one)")
        if len({(povm.name, povm.K) for povm in sites}) != 1:
            found = sorted({f"{povm.name} (K = {povm.K})" for povm in sites})
            raise QtomoError(f"every qubit's POVM needs the same name and K; got {found}")
        object.__setattr__(self, "sites", sites)

    @property
    def name(self) -> str:
        """The name every qubit's POVM shares."""
        return self.sites[0].name

    @property
    def K(self) -> int:
        """Number of outcomes per qubit."""
        return self.sites[0].K

    @property
    def L(self) -> int:
        """Number of qubits."""
        return len(self.sites)

    def at(self, site: int) -> POVM:
        """The POVM measured on qubit ``site``."""
        return self.sites[site]

    def site_elements(self, L: int) -> np.ndarray:
        """M^(i)_k of every qubit, (L, K, 2, 2) complex128."""
        return np.stack([povm.elements for povm in self._sites(L)])

    def site_duals(self, L: int) -> np.ndarray:
        """Q^(i)_k of every qubit, (L, K, 2, 2) complex128."""
        return np.stack([povm.duals for povm in self._sites(L)])

    def apply(self, transform: Callable[[POVM], POVM]) -> PerQubitPOVM:
        """``transform`` applied to the POVM of every qubit."""
        return PerQubitPOVM(tuple(transform(povm) for povm in self.sites))

    def _sites(self, L: int) -> tuple[POVM, ...]:
        if L != self.L:
            raise QtomoError(f"POVM {self.name!r} is defined on {self.L} qubits; the records "
                             f"have L = {L}")
        return self.sites

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PerQubitPOVM):
            return NotImplemented
        return self.L == other.L and all(
            mine == theirs for mine, theirs in zip(self.sites, other.sites, strict=True))

    def __hash__(self) -> int:
        return hash((self.name, self.K, self.L))

    def __repr__(self) -> str:
        return f"PerQubitPOVM({self.name!r}, K={self.K}, L={self.L})"


def povm_elements(povm: POVM | PerQubitPOVM, L: int) -> np.ndarray:
    """The elements as ``/povm/elements`` stores them for records of L qubits (docs/conventions.md
    "The dataset file"): (K, 2, 2) complex128 for one POVM on every qubit, (L, K, 2, 2) for a
    :class:`PerQubitPOVM` (which must have L qubits)."""
    return povm.site_elements(L) if isinstance(povm, PerQubitPOVM) else povm.elements


def povm_from_elements(name: str, elements: np.ndarray) -> POVM | PerQubitPOVM:
    """The inverse of :func:`povm_elements`: a :class:`POVM` from (K, 2, 2), a
    :class:`PerQubitPOVM` from (L, K, 2, 2).

    Raises:
        QtomoError: for another shape, or elements that are not a POVM (naming the qubit).
    """
    elements = np.asarray(elements)
    if elements.ndim == 3:
        return POVM(name, elements)
    if elements.ndim != 4:
        raise QtomoError(f"POVM {name!r} needs elements (K, 2, 2), or (L, K, 2, 2) per qubit; "
                         f"got {elements.shape}")
    return per_qubit(lambda site_elements: POVM(name, site_elements), elements)


def per_qubit(make: Callable[[np.ndarray], POVM], rows: np.ndarray) -> PerQubitPOVM:
    """The :class:`PerQubitPOVM` of ``make(row)`` for each qubit's row; an error names the
    qubit."""
    sites = []
    for site, row in enumerate(rows):
        try:
            sites.append(make(row))
        except QtomoError as error:
            raise QtomoError(f"qubit {site}: {error}") from None
    return PerQubitPOVM(tuple(sites))


def _validate_elements(name: str, elements: np.ndarray, require_complete: bool = True) -> None:
    if elements.ndim != 3 or elements.shape[1:] != (2, 2) or elements.shape[0] < 4:
        raise QtomoError(
            f"POVM {name!r} must have elements of shape (K, 2, 2) with K >= 4; "
            f"got {elements.shape}"
        )
    if not np.all(np.isfinite(elements)):
        raise QtomoError(f"POVM {name!r} has non-finite elements")
    for k, element in enumerate(elements):
        if not np.allclose(element, element.conj().T, atol=_TOL):
            raise QtomoError(f"POVM {name!r} element {k} is not Hermitian")
        if np.linalg.eigvalsh(element).min() < -_TOL:
            raise QtomoError(f"POVM {name!r} element {k} is not positive semidefinite")
    if not np.allclose(elements.sum(axis=0), np.eye(2), atol=1e-9):
        raise QtomoError(f"POVM {name!r} elements do not sum to the identity")
    overlap = np.einsum("aij,bji->ab", elements, elements).real
    if require_complete and np.linalg.matrix_rank(overlap, tol=1e-9) != 4:
        raise QtomoError(
            f"POVM {name!r} is not informationally complete: its overlap matrix has rank "
            f"{np.linalg.matrix_rank(overlap, tol=1e-9)}, expected 4"
        )


def _projector(vector: list[complex]) -> np.ndarray:
    v = np.asarray(vector, dtype=np.complex128)
    v = v / np.linalg.norm(v)
    return np.outer(v, v.conj())


def _pauli4() -> np.ndarray:
    s = 1 / np.sqrt(2)
    first = [_projector(v) / 3 for v in ([1, 0], [s, s], [s, 1j * s])]
    return np.array([*first, np.eye(2) - sum(first)])


def _pauli6() -> np.ndarray:
    s = 1 / np.sqrt(2)
    states = ([1, 0], [0, 1], [s, s], [s, -s], [s, 1j * s], [s, -1j * s])
    return np.array([_projector(v) / 3 for v in states])


def _tetra() -> np.ndarray:
    bloch = np.array(
        [
            [0.0, 0.0, 1.0],
            [2 * np.sqrt(2) / 3, 0.0, -1 / 3],
            [-np.sqrt(2) / 3, np.sqrt(2 / 3), -1 / 3],
            [-np.sqrt(2) / 3, -np.sqrt(2 / 3), -1 / 3],
        ]
    )
    sigma = np.array([PAULI["X"], PAULI["Y"], PAULI["Z"]])
    return np.array([(np.eye(2) + np.einsum("c,cij->ij", s, sigma)) / 4 for s in bloch])


_BUILDERS = {"pauli4": _pauli4, "pauli6": _pauli6, "tetra": _tetra}
POVM_NAMES: tuple[str, ...] = tuple(_BUILDERS)
_REGISTRY: dict[str, POVM] = {}


def get_povm(name: str) -> POVM:
    """The registered POVM called ``name`` (one of :data:`POVM_NAMES`).

    Raises:
        QtomoError: for an unknown name.

    Example:
        >>> get_povm("pauli6").K, get_povm("tetra").K
        (6, 4)
    """
    if name not in _BUILDERS:
        raise QtomoError(f"unknown POVM {name!r}; expected one of {', '.join(POVM_NAMES)}")
    if name not in _REGISTRY:
        _REGISTRY[name] = POVM(name, _BUILDERS[name]())
    return _REGISTRY[name]


def check_outcomes(a, L: int | None, K: int, povm: str | None = None, *,
                   first_row: int = 0) -> None:
    """Check that ``a`` is an integer array of records (B, L) with every outcome in 0..K−1.

    The one check of records shared by the dataset writer and reader, the MPS sampler and every
    model's ``log_prob``.

    Args:
        a: numpy array or torch tensor (B, L) of an integer dtype (not bool, not float).
        L: the record length expected, or None to accept any.
        K: outcomes per qubit.
        povm: POVM name for the message, if known.
        first_row: row number of ``a[0]`` in a larger table, for the message.

    Raises:
        QtomoError: naming the dtype, the shape, or the first value out of range and its row.

    Example:
        >>> check_outcomes(np.array([[0, 3], [7, 1]]), 2, 4, "pauli4", first_row=10)
        Traceback (most recent call last):
        ...
        qtomo.errors.QtomoError: outcomes must lie in 0..3 for POVM 'pauli4'; got 7 in row 11
    """
    shape = tuple(getattr(a, "shape", ()))
    if _dtype_kind(a) not in "iu" or len(shape) != 2 or (L is not None and shape[1] != L):
        expected = f"(B, {L})" if L is not None else "(B, L)"
        dtype = str(getattr(a, "dtype", type(a).__name__)).removeprefix("torch.")
        raise QtomoError(f"outcomes must be an integer array of shape {expected}; got {dtype} "
                         f"{shape}")
    if 0 in shape:
        return
    low, high = int(a.min()), int(a.max())
    if low < 0 or high >= K:
        bad = (a < 0) | (a >= K)
        row, column = (int(index) for index in (np.argwhere(bad)[0] if isinstance(a, np.ndarray)
                                                else bad.nonzero()[0]))
        where = f" for POVM {povm!r}" if povm else ""
        raise QtomoError(f"outcomes must lie in 0..{K - 1}{where}; got {int(a[row, column])} in "
                         f"row {first_row + row}")


def _dtype_kind(a) -> str:
    """numpy's dtype kind ('i', 'u', 'f', 'b', …) of a numpy array or a torch tensor."""
    dtype = getattr(a, "dtype", None)
    try:
        return np.dtype(str(dtype).removeprefix("torch.")).kind  # torch.int64 -> int64
    except TypeError:  # no dtype, or one numpy lacks (bfloat16)
        return "O" if dtype is None else "f"


def enumerate_outcomes(L: int, K: int) -> np.ndarray:
    """All K^L records in index order, index = Σ_i a_i K^(L-1-i) (qubit 0 most significant).

    Returns:
        (K^L, L) int64.

    Example:
        >>> enumerate_outcomes(2, 3)[[0, 1, 3, 8]].tolist()
        [[0, 0], [0, 1], [1, 0], [2, 2]]
    """
    powers = K ** np.arange(L - 1, -1, -1, dtype=np.int64)  # (L,)
    return (np.arange(K**L, dtype=np.int64)[:, None] // powers) % K


def born_probabilities(rho: np.ndarray, povm: POVM | PerQubitPOVM) -> np.ndarray:
    """P(a) = Tr(M_a ρ) for all K^L records, contracting one qubit at a time.

    Never builds a 2^L × 2^L matrix per outcome: after i qubits the work tensor has shape
    (K^i, 2^(L-i), 2^(L-i)), so memory stays at max(K, 4)^L numbers.

    Args:
        rho: (D, D) complex density matrix, D = 2^L.
        povm: single-qubit POVM (or one per qubit); M_a = ⊗_i M_{a_i}.

    Returns:
        (K^L,) float64 in the order of :func:`enumerate_outcomes`.

    Example:
        >>> rho = np.full((4, 4), 0.25)                     # |++⟩⟨++|
        >>> P = born_probabilities(rho, get_povm("pauli6"))
        >>> round(float(P.sum()), 12), round(float(P[2 * 6 + 2]), 6)   # a = (|+⟩, |+⟩)
        (1.0, 0.111111)
    """
    rho = np.asarray(rho, dtype=np.complex128)
    L = sites_from_size(rho.shape[0], 2, "rows of a density matrix")
    work = rho.reshape(1, rho.shape[0], rho.shape[0])
    for elements in povm.site_elements(L):
        p, r = work.shape[0], work.shape[1] // 2
        work = work.reshape(p, 2, r, 2, r)
        # Tr(M ρ) = Σ_{s,t} M[t, s] ρ[s, t] on the leading qubit
        work = np.einsum("kts,psrtq->pkrq", elements, work).reshape(p * povm.K, r, r)
    return work.reshape(-1).real.copy()


def invert_probabilities(probabilities: np.ndarray, povm: POVM | PerQubitPOVM) -> np.ndarray:
    """ρ = Σ_a P(a) ⊗_i Q_{a_i}, the dual-frame inversion of Born's rule, one qubit at a time.

    Args:
        probabilities: (K^L,) real, in the order of :func:`enumerate_outcomes`.
        povm: the POVM (or one per qubit) whose duals Q_k invert it.

    Returns:
        (D, D) complex128, D = 2^L; Hermitian with unit trace when Σ P = 1, but positive only
        when P is a Born distribution.

    Example:
        >>> povm = get_povm("tetra")
        >>> rho = np.array([[0.75, 0.25j], [-0.25j, 0.25]])
        >>> bool(np.allclose(invert_probabilities(born_probabilities(rho, povm), povm), rho))
        True
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    L = sites_from_size(probabilities.size, povm.K, f"probabilities for POVM {povm.name!r}")
    work = probabilities.astype(np.complex128).reshape(-1, 1, 1)
    for duals in povm.site_duals(L)[::-1]:
        # peel the last remaining outcome digit, prepend its qubit to the built operator
        p, r = work.shape[0] // povm.K, work.shape[1]
        work = work.reshape(p, povm.K, r, r)
        work = np.einsum("kst,pkrq->psrtq", duals, work).reshape(p, 2 * r, 2 * r)
    return work[0]


def sites_from_size(size: int, base: int, what: str = "entries") -> int:
    """L ≥ 1 with base^L = size: the qubits of a 2^L vector, or the sites of a K^L table.

    Raises:
        QtomoError: if ``size`` is not a power base^L with L ≥ 1.

    Example:
        >>> sites_from_size(4**5, 4), sites_from_size(8, 2)
        (5, 3)
        >>> sites_from_size(12, 2, "amplitudes")
        Traceback (most recent call last):
        ...
        qtomo.errors.QtomoError: expected 2^L amplitudes with L >= 1; got 12
    """
    size, L = int(size), 0
    while base ** (L + 1) <= size:
        L += 1
    if L < 1 or base**L != size:
        raise QtomoError(f"expected {base}^L {what} with L >= 1; got {size}")
    return L
