"""From a distribution over POVM records to quantum states and observables (SPEC §1, §5).

A model Q(a) over records a ∈ {0..K-1}^L (or the true P, or the measured data) defines the
operator ρ = Σ_a Q(a) Q_a with Q_a = ⊗_i Q_{a_i} the dual frame of the POVM. Everything here is
an expectation over records of a per-record estimator value.

**Product observables** O = ⊗_i O_i (Pauli strings)::

    ⟨O⟩ = Σ_a Q(a) f_O(a),     f_O(a) = Π_i Tr(O_i Q_{a_i})

- Monte Carlo over n records a^(k) ~ Q: ⟨O⟩ ≈ mean_k f_O(a^(k)) ± std_k f_O / √n.
- Exact (small L): the sum over all K^L records with weights Q(a); stderr = 0.
- Model-free: the same mean over the measured records (a classical-shadow-style estimate).

A Pauli sum H = Σ_t c_t O_t (the TFIM energy) uses the per-record value e(a) = Σ_t c_t f_t(a),
so its standard error includes every covariance between the terms. ⟨Z_i Z_i⟩ = ⟨X_i X_i⟩ = 1
exactly (the diagonal of the correlation matrices).

**Quantum fidelity to a pure target** |ψ⟩::

    F = ⟨ψ|ρ|ψ⟩ = E_Q[g(a)],   g(a) = ⟨ψ|⊗_i Q_{a_i}|ψ⟩

- small L: ρ is built explicitly (:func:`density_matrix`) and F = ⟨ψ|ρ|ψ⟩; a mixed target σ uses
  Uhlmann's F = (Tr √(√σ ρ √σ))² (qutip; about 1e-8 absolute for rank-deficient σ, ρ, from the
  square roots of their zero eigenvalues). ρ need not be positive; a fidelity of a ρ with a negative
  eigenvalue is reported with ``physical = False`` (it may then exceed 1), next to the fidelity
  of the nearest physical state (negative eigenvalues clipped, trace renormalised).
- any L: g(a) is contracted per sample through the target's MPS (:func:`pure_state_overlaps`);
  its variance can grow like 3^L, so a large relative error triggers a warning.

Limits: the exact paths enumerate K^L records and hold a 2^L × 2^L matrix, L ≤
:data:`RECONSTRUCT_MAX_L` (= 10, 4^10 ≈ 10^6 records); Monte Carlo has no limit on L.

Example:
    >>> from qtomo.povm import get_povm
    >>> from qtomo.states.exact import ghz_state
    >>> povm, state = get_povm("pauli4"), ghz_state(3)
    >>> P = state.distribution(povm).probabilities
    >>> rec = density_matrix(P, povm)
    >>> round(rec.trace, 12), round(rec.fidelity(state.psi).value, 12)
    (1.0, 1.0)
    >>> obs = exact_observables(P, povm, pauli_strings=["X0 X1 X2"])
    >>> round(obs.strings["X0 X1 X2"].value, 12), round(float(obs.ZZ.value[0, 2]), 12)
    (1.0, 1.0)
"""

from __future__ import annotations

import itertools
import re
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from qtomo.errors import QtomoError
from qtomo.metrics import Estimate, log_prob_batched, model_device
from qtomo.povm import POVM, enumerate_outcomes, invert_probabilities
from qtomo.progress import progress_bar
from qtomo.states.mps import check_mps_shapes

__all__ = [
    "RECONSTRUCT_MAX_L",
    "FidelityWarning",
    "Observables",
    "QuantumFidelity",
    "Reconstruction",
    "density_matrix",
    "estimate_observables",
    "exact_observables",
    "model_observables",
    "model_probabilities",
    "mps_fidelity",
    "mps_to_vector",
    "outcome_blocks",
    "parse_pauli_string",
    "project_to_physical",
    "pure_state_overlaps",
    "quantum_fidelity",
    "vector_to_mps",
]

#: largest L of the exact paths (enumeration of K^L records, dense 2^L × 2^L ρ)
RECONSTRUCT_MAX_L = 10
#: eigenvalues above −PHYSICAL_TOL count as non-negative
PHYSICAL_TOL = 1e-10
#: relative standard error of a Monte Carlo fidelity above which a warning is issued
FIDELITY_WARN_RELATIVE = 0.1
_BLOCK = 2**16


class FidelityWarning(UserWarning):
    """A Monte Carlo fidelity whose standard error is too large to trust."""


# --------------------------------------------------------------------------- exact enumeration


def _check_exact_size(L: int, what: str) -> None:
    if L > RECONSTRUCT_MAX_L:
        raise QtomoError(
            f"{what} enumerates all K^L records and needs L <= {RECONSTRUCT_MAX_L}; got L = {L} "
            f"(use the Monte Carlo estimators instead)"
        )


def outcome_blocks(L: int, K: int, rows: int = _BLOCK) -> Iterator[tuple[int, np.ndarray]]:
    """All K^L records in :func:`qtomo.povm.enumerate_outcomes` order, in blocks.

    Each block fixes a prefix of the leading qubits and runs over all suffixes, so no more than
    max(rows, K) records are in memory at once.

    Yields:
        ``(start, outcomes)``: the index of the block's first record and an int64 (b, L) array.

    Example:
        >>> [(start, block.tolist()) for start, block in outcome_blocks(2, 2, rows=2)]
        [(0, [[0, 0], [0, 1]]), (2, [[1, 0], [1, 1]])]
    """
    suffix_len = min(L, max(1, int(np.floor(np.log(rows) / np.log(K) + 1e-9))))
    suffixes = enumerate_outcomes(suffix_len, K)  # (K^s, s)
    for index, prefix in enumerate(enumerate_outcomes(L - suffix_len, K)):
        head = np.broadcast_to(prefix, (suffixes.shape[0], prefix.size))
        yield index * suffixes.shape[0], np.hstack([head, suffixes])


def model_probabilities(model, *, batch_size: int = _BLOCK, quiet: bool = True) -> np.ndarray:
    """Q(a) for all K^L records, evaluated in batches without gradients.

    An autoregressive model (one with ``enumerate_log_probs``, see
    :meth:`qtomo.models.autoregressive.AutoregressiveModel.enumerate_log_probs`) is walked down
    its tree of prefixes, one cached step per prefix: Σ_i K^i ≈ K^L / (K − 1) one-site steps
    instead of L K^L site evaluations for ``log_prob`` of every record, which is used for any
    other model.

    Args:
        model: anything with the model interface (``L``, ``K``, ``log_prob``).
        batch_size: records per forward pass (per step of an autoregressive model, at most
            batch_size / K prefixes, each completed by K outcomes).
        quiet: no progress bar.

    Returns:
        (K^L,) float64 in :func:`qtomo.povm.enumerate_outcomes` order. Σ Q = 1 up to the
        model's float precision (flows: an estimate).

    Raises:
        QtomoError: for L > :data:`RECONSTRUCT_MAX_L`.
    """
    _check_exact_size(model.L, "the exact model distribution")
    L, K = model.L, model.K
    probabilities = np.empty(K**L)
    with progress_bar(probabilities.size, "enumerate", quiet=quiet, unit="rec") as bar:
        if hasattr(model, "enumerate_log_probs"):
            start = 0
            for log_q in model.enumerate_log_probs(block=max(1, batch_size // K)):  # (b,)
                probabilities[start:start + log_q.numel()] = log_q.exp().cpu().numpy()
                start += log_q.numel()
                bar.update(log_q.numel())
        else:
            for start, block in outcome_blocks(L, K, batch_size):
                log_q = log_prob_batched(model, block, batch_size=batch_size)
                probabilities[start:start + block.shape[0]] = np.exp(log_q)
                bar.update(block.shape[0])
    return probabilities


# --------------------------------------------------------------------------- density matrix


@dataclass(frozen=True)
class QuantumFidelity:
    """Quantum fidelity of an explicitly built ρ to a target state (exact, no sampling error).

    Attributes:
        value: ⟨ψ|ρ|ψ⟩ (pure target) or (Tr √(√σ ρ √σ))² (mixed target σ), for ρ as built.
        physical: whether ρ is positive semidefinite (smallest eigenvalue ≥ −1e-10); if not,
            ``value`` is not a fidelity of any state and may exceed 1.
        min_eigenvalue: smallest eigenvalue of the Hermitian part of ρ.
        projected: the fidelity of the nearest physical state (see
            :func:`project_to_physical`), always in [0, 1].
    """

    value: float
    physical: bool
    min_eigenvalue: float
    projected: float

    def as_dict(self) -> dict:
        """JSON-ready: ``{"value", "stderr": 0.0, "method": "exact", "physical", …}``."""
        return {"value": self.value, "stderr": 0.0, "method": "exact", "physical": self.physical,
                "min_eigenvalue": self.min_eigenvalue, "projected": self.projected}


def _hermitian_part(rho: np.ndarray) -> np.ndarray:
    return 0.5 * (rho + rho.conj().T)


def _fidelity_value(rho: np.ndarray, target: np.ndarray) -> float:
    if target.ndim == 1:
        return float(np.vdot(target, rho @ target).real)
    import qutip  # heavy import, only for mixed targets

    # qutip returns Tr √(√σ ρ √σ) with σ's square root taken (σ is the positive one)
    return float(qutip.fidelity(qutip.Qobj(target), qutip.Qobj(_hermitian_part(rho)))) ** 2


@dataclass(frozen=True, eq=False)
class Reconstruction:
    """An explicitly built ρ = Σ_a Q(a) ⊗_i Q_{a_i} with its diagnostics.

    The spectrum of the Hermitian part is computed once, on first use, and shared by
    ``min_eigenvalue``, ``projected`` and ``fidelity``.

    Attributes:
        rho: (D, D) complex128, D = 2^L, qubit 0 the most significant factor.
    """

    rho: np.ndarray

    @property
    def L(self) -> int:
        return int(self.rho.shape[0]).bit_length() - 1

    @property
    def trace(self) -> float:
        """Re Tr ρ (1 for a normalised Q)."""
        return float(np.trace(self.rho).real)

    @property
    def hermiticity_error(self) -> float:
        """max |ρ − ρ†| (0 up to rounding for real Q)."""
        return float(np.abs(self.rho - self.rho.conj().T).max())

    @cached_property
    def _spectrum(self) -> tuple[np.ndarray, np.ndarray]:
        return np.linalg.eigh(_hermitian_part(self.rho))

    @property
    def eigenvalues(self) -> np.ndarray:
        """(D,) float64 eigenvalues of the Hermitian part, ascending."""
        return self._spectrum[0]

    @property
    def min_eigenvalue(self) -> float:
        return float(self.eigenvalues[0])

    @property
    def is_physical(self) -> bool:
        """Positive semidefinite within 1e-10."""
        return self.min_eigenvalue >= -PHYSICAL_TOL

    def projected(self) -> Reconstruction:
        """The nearest physical state: negative eigenvalues set to 0, trace renormalised to 1.

        Raises:
            QtomoError: if ρ has no positive eigenvalue.
        """
        eigenvalues, vectors = self._spectrum
        clipped = np.clip(eigenvalues, 0.0, None)
        if clipped.sum() <= 0:
            raise QtomoError("cannot project ρ to a physical state: it has no positive eigenvalue")
        return Reconstruction((vectors * (clipped / clipped.sum())) @ vectors.conj().T)

    def fidelity(self, target: np.ndarray) -> QuantumFidelity:
        """Fidelity to a target vector ψ (⟨ψ|ρ|ψ⟩) or density matrix σ ((Tr √(√σ ρ √σ))²).

        Raises:
            QtomoError: if the dimensions differ.
        """
        target = np.asarray(target, dtype=np.complex128)
        if target.shape[0] != self.rho.shape[0] or target.ndim not in (1, 2):
            raise QtomoError(
                f"target of shape {target.shape} does not match ρ of shape {self.rho.shape}; "
                f"expected ({self.rho.shape[0]},) or {self.rho.shape}"
            )
        value = _fidelity_value(self.rho, target)
        projected = value if self.is_physical else _fidelity_value(self.projected().rho, target)
        return QuantumFidelity(value, self.is_physical, self.min_eigenvalue,
                               min(max(projected, 0.0), 1.0))

    def to_qobj(self):
        """ρ as a ``qutip.Qobj`` with dims [[2]*L, [2]*L]."""
        import qutip

        return qutip.Qobj(self.rho, dims=[[2] * self.L, [2] * self.L])


def project_to_physical(rho: np.ndarray) -> np.ndarray:
    """The physical state nearest ρ: Hermitian part, negative eigenvalues set to 0, trace 1.

    Args:
        rho: (D, D) complex.

    Returns:
        (D, D) complex128, positive semidefinite with unit trace.

    Raises:
        QtomoError: if ρ has no positive eigenvalue.

    Example:
        >>> project_to_physical(np.diag([1.2, -0.2])).real
        array([[1., 0.],
               [0., 0.]])
    """
    return Reconstruction(np.asarray(rho, dtype=np.complex128)).projected().rho


def quantum_fidelity(rho: np.ndarray, target: np.ndarray) -> QuantumFidelity:
    """Fidelity of ρ to a target: ⟨ψ|ρ|ψ⟩ for a vector ψ, Uhlmann (Tr √(√σ ρ √σ))² for σ.

    Args:
        rho: (D, D) complex, e.g. the inverted model state (possibly not positive).
        target: (D,) normalised state vector or (D, D) density matrix.

    Returns:
        :class:`QuantumFidelity` with the flag ``physical`` and the projected fidelity.

    Raises:
        QtomoError: if the dimensions differ.

    Example:
        >>> psi = np.array([1, 0], dtype=complex)
        >>> fid = quantum_fidelity(np.diag([1.1, -0.1]), psi)
        >>> round(fid.value, 12), fid.physical, round(fid.projected, 12)
        (1.1, False, 1.0)
    """
    return Reconstruction(np.asarray(rho, dtype=np.complex128)).fidelity(target)


def density_matrix(probabilities: np.ndarray, povm: POVM) -> Reconstruction:
    """ρ = Σ_a Q(a) ⊗_i Q_{a_i}, contracted one qubit at a time (:func:`invert_probabilities`).

    Args:
        probabilities: (K^L,) float, Q over all records in enumeration order (see
            :func:`model_probabilities`).
        povm: the POVM of the records.

    Returns:
        :class:`Reconstruction`.

    Raises:
        QtomoError: for a table that is not K^L long or L > :data:`RECONSTRUCT_MAX_L`.

    Example:
        >>> from qtomo.povm import get_povm
        >>> rec = density_matrix(np.full(16, 1 / 16), get_povm("tetra"))   # uniform Q
        >>> bool(np.allclose(rec.rho, np.eye(4) / 4)), rec.is_physical
        (True, True)
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    _check_exact_size(int(round(np.log(max(probabilities.size, 1)) / np.log(povm.K))),
                      "the exact density matrix")
    return Reconstruction(invert_probabilities(probabilities, povm))


# --------------------------------------------------------------------------- observables


_TOKEN = re.compile(r"([A-Za-z]+)(\d+)")


def parse_pauli_string(text: str, L: int) -> dict[int, str]:
    """Parse a Pauli string such as ``"X0 Z3 Z4"`` into ``{site: letter}``.

    Tokens are a letter X, Y or Z (either case) followed by a site 0..L-1, separated by spaces;
    each site at most once; sites not named carry the identity.

    Raises:
        QtomoError: for an empty string, an unknown letter, a site ≥ L or a repeated site.

    Example:
        >>> parse_pauli_string("X0 z3 Z4", L=5)
        {0: 'X', 3: 'Z', 4: 'Z'}
        >>> parse_pauli_string("Z5", L=5)
        Traceback (most recent call last):
        ...
        qtomo.errors.QtomoError: Pauli string 'Z5': site 5 is out of range for L = 5 (sites 0..4)
    """
    string: dict[int, str] = {}
    tokens = text.split()
    if not tokens:
        raise QtomoError(f"Pauli string {text!r} is empty; expected tokens like 'X0 Z3'")
    for token in tokens:
        match = _TOKEN.fullmatch(token)
        if match is None or match.group(1).upper() not in ("X", "Y", "Z"):
            raise QtomoError(
                f"Pauli string {text!r}: cannot read {token!r}; expected a letter X, Y or Z "
                f"followed by a site, like 'Z3'"
            )
        site = int(match.group(2))
        if site >= L:
            raise QtomoError(
                f"Pauli string {text!r}: site {site} is out of range for L = {L} "
                f"(sites 0..{L - 1})"
            )
        if site in string:
            raise QtomoError(f"Pauli string {text!r}: site {site} appears more than once")
        string[site] = match.group(1).upper()
    return string


@dataclass(frozen=True)
class Observables:
    """Pauli expectation values with standard errors (SPEC §5).

    Attributes:
        X, Z: (L,) estimates of ⟨X_i⟩, ⟨Z_i⟩.
        XX, ZZ: (L, L) estimates of ⟨X_i X_j⟩, ⟨Z_i Z_j⟩ (diagonal exactly 1).
        energy: estimate of ⟨H⟩ for the Hamiltonian given, else None.
        strings: the requested Pauli strings, keyed by their text.
        n_samples: records averaged (Monte Carlo), or None for exact sums (stderr = 0).
    """

    X: Estimate
    Z: Estimate
    XX: Estimate
    ZZ: Estimate
    energy: Estimate | None
    strings: dict[str, Estimate]
    n_samples: int | None


def _pauli_sum_values(records: np.ndarray, tables: dict[str, np.ndarray],
                      terms: Sequence[tuple[float, dict[int, str]]]) -> np.ndarray:
    """Per-record estimator e(a) = Σ_t c_t Π_{i∈t} Tr(σ_i Q_{a_i}) for records (B, L)."""
    values = np.zeros(records.shape[0])
    for coefficient, string in terms:
        term = np.full(records.shape[0], float(coefficient))
        for site, letter in string.items():
            term *= tables[letter][records[:, site]]
        values += term
    return values


class _Moments:
    """Weighted sums Σ w f and Σ w f² of per-record estimator values, fed batch by batch."""

    def __init__(self) -> None:
        self.count = 0
        self.first: dict[str, np.ndarray] = {}
        self.second: dict[str, np.ndarray] = {}

    def _add(self, name: str, first: np.ndarray, second: np.ndarray) -> None:
        self.first[name] = self.first.get(name, 0.0) + first
        self.second[name] = self.second.get(name, 0.0) + second

    def add_values(self, name: str, values: np.ndarray, weights: np.ndarray) -> None:
        """values (B,) or (B, L)."""
        self._add(name, weights @ values, weights @ values**2)

    def add_pairs(self, name: str, values: np.ndarray, weights: np.ndarray) -> None:
        """Products f_i f_j of (B, L) single-site values: (L, L) sums."""
        weighted = weights[:, None] * values  # (B, L)
        squares = values**2
        self._add(name, values.T @ weighted, squares.T @ (weights[:, None] * squares))

    def estimate(self, name: str, exact: bool) -> Estimate:
        """Exact: Σ_a Q(a) f(a), stderr 0. Monte Carlo: mean ± √(var / (n − 1))."""
        first, second = np.asarray(self.first[name]), np.asarray(self.second[name])
        if exact:
            return Estimate._wrap(first, np.zeros_like(first))
        mean = first / self.count
        variance = np.clip(second / self.count - mean**2, 0.0, None)
        stderr = np.sqrt(variance / (self.count - 1)) if self.count > 1 else np.full_like(
            mean, np.inf)
        return Estimate._wrap(mean, stderr)


def _accumulate(batches: Iterable[tuple[np.ndarray, np.ndarray | None]], povm: POVM, L: int,
                hamiltonian, pauli_strings: Sequence[str], exact: bool) -> Observables:
    strings = {text: parse_pauli_string(text, L) for text in pauli_strings}
    if hamiltonian is not None and hamiltonian.L != L:
        raise QtomoError(f"the Hamiltonian has L = {hamiltonian.L}, the records L = {L}")
    terms = hamiltonian.terms() if hamiltonian is not None else None
    tables = povm.pauli_dual_traces()  # letter -> (K,) Tr(σ Q_k)
    moments = _Moments()
    for records, weights in batches:
        records = np.asarray(records, dtype=np.intp)
        if records.ndim != 2 or records.shape[1] != L:
            raise QtomoError(f"records must have shape (N, {L}); got {records.shape}")
        weights = np.ones(records.shape[0]) if weights is None else np.asarray(weights, float)
        moments.count += records.shape[0]
        x, z = tables["X"][records], tables["Z"][records]  # (B, L) each
        moments.add_values("X", x, weights)
        moments.add_values("Z", z, weights)
        moments.add_pairs("XX", x, weights)
        moments.add_pairs("ZZ", z, weights)
        if terms is not None:
            moments.add_values("energy", _pauli_sum_values(records, tables, terms), weights)
        for text, string in strings.items():
            moments.add_values(text, _pauli_sum_values(records, tables, [(1.0, string)]), weights)
    if moments.count == 0:
        raise QtomoError("no records to estimate observables from")
    pairs = {}
    for name in ("XX", "ZZ"):
        value, stderr = moments.estimate(name, exact)
        np.fill_diagonal(value, 1.0)  # σ² = 1, not the product of two single-site estimators
        np.fill_diagonal(stderr, 0.0)
        pairs[name] = Estimate(value, stderr)
    return Observables(
        X=moments.estimate("X", exact),
        Z=moments.estimate("Z", exact),
        XX=pairs["XX"],
        ZZ=pairs["ZZ"],
        energy=moments.estimate("energy", exact) if terms is not None else None,
        strings={text: moments.estimate(text, exact) for text in strings},
        n_samples=None if exact else moments.count,
    )


def estimate_observables(records: np.ndarray | Iterable[np.ndarray], povm: POVM, *,
                         hamiltonian=None, pauli_strings: Sequence[str] = ()) -> Observables:
    """Monte Carlo ⟨O⟩ ≈ mean_k f_O(a^(k)) ± stderr over given records (model samples or data).

    Over the measured records this is the model-free (classical-shadow-style) estimate.

    Args:
        records: (N, L) integer array, or an iterable of (b, L) chunks, records in 0..K-1.
        povm: the POVM of the records.
        hamiltonian: optional Pauli sum with ``L`` and ``terms()`` -> [(c, {site: letter})]
            (e.g. :class:`qtomo.states.hamiltonians.TFIM`) whose energy to estimate.
        pauli_strings: texts like ``"X0 Z3 Z4"`` (see :func:`parse_pauli_string`).

    Returns:
        :class:`Observables` with ``n_samples = N``.

    Raises:
        QtomoError: for bad shapes, bad Pauli strings, or no records.

    Example:
        >>> from qtomo.povm import get_povm
        >>> obs = estimate_observables(np.zeros((10, 2), int), get_povm("pauli6"))  # all |0⟩
        >>> np.round(obs.Z.value, 12).tolist(), obs.Z.stderr.tolist()
        ([3.0, 3.0], [0.0, 0.0])
    """
    chunks = iter([records] if isinstance(records, np.ndarray | torch.Tensor) else records)
    first = next(chunks, None)
    if first is None:
        raise QtomoError("no records to estimate observables from")
    first = _to_numpy(first)
    batches = itertools.chain([(first, None)], ((_to_numpy(chunk), None) for chunk in chunks))
    return _accumulate(batches, povm, first.shape[-1], hamiltonian, pauli_strings, exact=False)


def _to_numpy(records: np.ndarray | torch.Tensor) -> np.ndarray:
    return records.cpu().numpy() if torch.is_tensor(records) else np.asarray(records)


def exact_observables(probabilities: np.ndarray, povm: POVM, *, hamiltonian=None,
                      pauli_strings: Sequence[str] = ()) -> Observables:
    """Exact ⟨O⟩ = Σ_a Q(a) f_O(a) over all K^L records (stderr 0).

    Equal to Tr(ρ O) for ρ = :func:`density_matrix` of the same table.

    Args:
        probabilities: (K^L,) float, Q in enumeration order.
        povm, hamiltonian, pauli_strings: as in :func:`estimate_observables`.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    L = int(round(np.log(max(probabilities.size, 1)) / np.log(povm.K)))
    if povm.K**L != probabilities.size:
        raise QtomoError(f"expected K^L = {povm.K}^L probabilities; got {probabilities.size}")
    _check_exact_size(L, "exact observables")
    batches = ((block, probabilities[start:start + block.shape[0]])
               for start, block in outcome_blocks(L, povm.K))
    return _accumulate(batches, povm, L, hamiltonian, pauli_strings, exact=True)


def _sample_batches(model, samples: int, batch_size: int,
                    generator: torch.Generator | None) -> Iterator[torch.Tensor]:
    with torch.no_grad():
        for start in range(0, samples, batch_size):
            yield model.sample(min(batch_size, samples - start), generator=generator)


def model_observables(model, povm: POVM, *, samples: int = 100_000, exact: bool = False,
                      hamiltonian=None, pauli_strings: Sequence[str] = (),
                      batch_size: int = 16384, generator: torch.Generator | None = None,
                      quiet: bool = True) -> Observables:
    """Observables of a model: Monte Carlo over ``samples`` model samples, or exact sums.

    Args:
        model: anything with the model interface.
        povm: the POVM the model's records belong to.
        samples: number of records drawn (Monte Carlo).
        exact: sum over all K^L records instead (L ≤ :data:`RECONSTRUCT_MAX_L`).
        hamiltonian, pauli_strings: as in :func:`estimate_observables`.
        batch_size: records drawn per call of ``model.sample``.
        generator: torch generator for reproducible sampling (on the model's device).
        quiet: no progress bar.
    """
    if exact:
        return exact_observables(model_probabilities(model, quiet=quiet), povm,
                                 hamiltonian=hamiltonian, pauli_strings=pauli_strings)
    if samples < 2:
        raise QtomoError(f"Monte Carlo estimates need at least 2 samples; got {samples}")
    bar = progress_bar(samples, "sample", quiet=quiet, unit="rec")

    def chunks():
        for batch in _sample_batches(model, samples, batch_size, generator):
            bar.update(batch.shape[0])
            yield batch

    with bar:
        return estimate_observables(chunks(), povm, hamiltonian=hamiltonian,
                                    pauli_strings=pauli_strings)


# --------------------------------------------------------------------------- pure-state fidelity


def mps_to_vector(mps: Sequence[np.ndarray]) -> np.ndarray:
    """The dense ψ (2^L,) complex128 of an MPS of tensors (χ_l, 2, χ_r), qubit 0 most significant.

    Example:
        >>> ghz = [np.array([[[1, 0], [0, 1]]]) / 2**0.5, np.array([[[1], [0]], [[0], [1]]])]
        >>> mps_to_vector(ghz).real.round(6).tolist()                 # (|00⟩ + |11⟩)/√2
        [0.707107, 0.0, 0.0, 0.707107]
    """
    psi = np.ones((1, 1), dtype=np.complex128)  # (2^i, χ)
    for tensor in mps:
        psi = (psi @ tensor.reshape(tensor.shape[0], -1)).reshape(-1, tensor.shape[2])
    return psi.reshape(-1)


def vector_to_mps(psi: np.ndarray) -> list[np.ndarray]:
    """An exact MPS of ψ (2^L,) by successive SVDs: left-canonical, only zero weights dropped.

    Returns:
        L tensors (χ_l, 2, χ_r) complex128 with χ_l = 1 first and χ_r = 1 last.

    Example:
        >>> psi = np.random.default_rng(0).normal(size=16).astype(complex)
        >>> bool(np.allclose(mps_to_vector(vector_to_mps(psi)), psi))
        True
    """
    psi = np.asarray(psi, dtype=np.complex128)
    L = int(psi.size).bit_length() - 1
    tensors, rest = [], psi.reshape(1, -1)
    for _ in range(L - 1):
        chi = rest.shape[0]
        u, s, vh = np.linalg.svd(rest.reshape(2 * chi, -1), full_matrices=False)
        keep = s > 1e-14 * s[0]
        tensors.append(u[:, keep].reshape(chi, 2, -1))
        rest = s[keep, None] * vh[keep]
    tensors.append(rest.reshape(-1, 2, 1))
    return tensors


def pure_state_overlaps(records: np.ndarray | torch.Tensor, mps: Sequence[np.ndarray],
                        povm: POVM, *, batch_size: int = 8192,
                        device: str | torch.device = "cpu") -> np.ndarray:
    """g(a) = ⟨ψ|⊗_i Q_{a_i}|ψ⟩ per record, contracted left to right through the MPS of ψ.

    The environment E^(i) (B, χ, χ) after site i is
    E^(i)_{qr} = Σ conj(B_i[x, t, q]) E^(i-1)_{xy} Q_{a_i}[t, s] B_i[y, s, r], with E^(-1) = 1;
    g(a) = E^(L-1) (1 × 1). Cost O(N L χ³).

    Args:
        records: (N, L) integers in 0..K-1.
        mps: L tensors (χ_l, 2, χ_r) complex128 of the normalised ψ (any gauge; χ_l = 1 first,
            χ_r = 1 last), e.g. the dataset's ``/reference/mps``.
        povm: the POVM of the records (its duals Q_k are used).
        batch_size: records contracted at once.
        device: torch device of the contraction.

    Returns:
        (N,) float64 (g is real: ⊗Q_{a_i} is Hermitian).

    Example:
        >>> from qtomo.povm import get_povm
        >>> plus = [np.full((1, 2, 1), 2**-0.5, dtype=complex)] * 2         # |++⟩
        >>> g = pure_state_overlaps(np.array([[2, 2]]), plus, get_povm("pauli6"))  # (+, +)
        >>> round(float(g[0]), 12)                                           # ⟨+|Q_+|+⟩² = 2²
        4.0
    """
    records = torch.as_tensor(np.asarray(records) if not torch.is_tensor(records) else records)
    check_mps_shapes(mps, records.shape[1])
    device = torch.device(device)
    tensors = [torch.as_tensor(np.asarray(B), dtype=torch.complex128, device=device) for B in mps]
    duals = torch.tensor(povm.duals, dtype=torch.complex128, device=device)  # (K, 2, 2)
    values = []
    for start in range(0, records.shape[0], batch_size):
        a = records[start:start + batch_size].to(device=device, dtype=torch.long)  # (B, L)
        env = torch.ones((a.shape[0], 1, 1), dtype=torch.complex128, device=device)  # (B, χ, χ)
        for i, B in enumerate(tensors):
            ket = torch.einsum("bxy,ysr->bxsr", env, B)  # (B, χl, 2, χr)
            ket = torch.einsum("bts,bxsr->bxtr", duals[a[:, i]], ket)  # (B, χl, 2, χr)
            env = torch.einsum("xtq,bxtr->bqr", B.conj(), ket)  # (B, χr, χr)
        values.append(env[:, 0, 0].real.to("cpu", torch.float64).numpy())
    return np.concatenate(values) if values else np.zeros(0)


def mps_fidelity(model, mps: Sequence[np.ndarray], povm: POVM, *, samples: int = 100_000,
                 batch_size: int = 8192, generator: torch.Generator | None = None,
                 quiet: bool = True) -> Estimate:
    """Monte Carlo F = ⟨ψ|ρ_model|ψ⟩ = E_Q[g(a)] over model samples, ± std(g)/√n.

    Warns (:class:`FidelityWarning`) when the relative standard error exceeds
    :data:`FIDELITY_WARN_RELATIVE`: Var g can grow like 3^L, so at large L the estimate may be
    useless with any affordable number of samples.

    Args:
        model: anything with the model interface (samples on its device).
        mps: the target ψ as L tensors (χ_l, 2, χ_r), see :func:`pure_state_overlaps`.
        povm: the POVM of the model's records.
        samples: number of model samples.
        batch_size: records sampled and contracted at once.
        generator: torch generator for reproducible sampling.
        quiet: no progress bar.
    """
    if samples < 2:
        raise QtomoError(f"Monte Carlo estimates need at least 2 samples; got {samples}")
    check_mps_shapes(mps, model.L)
    device = model_device(model)
    values = []
    with progress_bar(samples, "fidelity", quiet=quiet, unit="rec") as bar:
        for batch in _sample_batches(model, samples, batch_size, generator):
            values.append(pure_state_overlaps(batch, mps, povm, batch_size=batch_size,
                                              device=device))
            bar.update(batch.shape[0])
    estimate = Estimate.from_samples(np.concatenate(values))
    if not estimate.relative_error <= FIDELITY_WARN_RELATIVE:
        warnings.warn(
            f"Monte Carlo fidelity {estimate} has a relative error above "
            f"{FIDELITY_WARN_RELATIVE:g} (its variance grows like 3^L); treat it as unreliable",
            FidelityWarning, stacklevel=2,
        )
    return estimate
