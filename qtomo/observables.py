"""Observables from a distribution over POVM records: Pauli strings, correlations, energies.

A distribution Q(a) over records a ∈ {0..K-1}^L (a model, the truth, or the measured records
themselves) defines ρ = Σ_a Q(a) ⊗_i Q_{a_i} with Q_k the dual frame of the POVM (README
"Conventions"). A product observable O = ⊗_i O_i (a Pauli string) is an expectation over records
of a per-record estimator value::

    ⟨O⟩ = Σ_a Q(a) f_O(a),     f_O(a) = Π_i Tr(O_i Q_{a_i})

- Monte Carlo over n records a^(k) ~ Q: ⟨O⟩ ≈ mean_k f_O(a^(k)) ± std_k f_O / √n.
- Exact (small L): the sum over all K^L records with weights Q(a); stderr = 0.
- Model-free: the same mean over the measured records (a classical-shadow-style estimate).

A Pauli sum H = Σ_t c_t O_t (the TFIM energy) uses the per-record value e(a) = Σ_t c_t f_t(a),
so its standard error includes every covariance between the terms. ⟨Z_i Z_i⟩ = ⟨X_i X_i⟩ = 1
exactly (the diagonal of the correlation matrices).

Example:
    >>> from qtomo.povm import get_povm
    >>> from qtomo.states.exact import ghz_state
    >>> povm, state = get_povm("pauli4"), ghz_state(3)
    >>> obs = exact_observables(state.distribution(povm).probabilities, povm,
    ...                         pauli_strings=["X0 X1 X2"])
    >>> round(obs.strings["X0 X1 X2"].value, 12), round(float(obs.ZZ.value[0, 2]), 12)
    (1.0, 1.0)
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from qtomo.distribution import (
    Distribution,
    check_enumerable,
    enumerate_probabilities,
    outcome_blocks,
    records_numpy,
    sample_batches,
)
from qtomo.errors import QtomoError
from qtomo.estimate import Estimate
from qtomo.guards import integer_records
from qtomo.povm import PAULI, POVM, PerQubitPOVM, sites_from_size
from qtomo.progress import progress_bar
from qtomo.states.hamiltonians import TFIM

__all__ = [
    "Observables",
    "estimate_observables",
    "exact_observables",
    "model_observables",
    "parse_pauli_string",
]

_TOKEN = re.compile(r"([A-Za-z]+)(\d+)")
_DENSE = re.compile(r"[IXYZixyz]+")


def parse_pauli_string(text: str, L: int) -> dict[int, str]:
    """Parse a Pauli string such as ``"X0 Z3 Z4"`` or ``"XIIZZ"`` into ``{site: letter}``.

    Sparse form: tokens of a letter X, Y or Z (either case) followed by a site 0..L-1, separated
    by spaces; each site at most once; sites not named carry the identity. Dense form: one
    letter I, X, Y or Z per qubit, qubit 0 first, exactly L of them.

    Raises:
        QtomoError: for an empty string, an unknown letter, a site ≥ L, a repeated site, or a
            dense string of other than L letters.

    Example:
        >>> parse_pauli_string("X0 z3 Z4", L=5), parse_pauli_string("XIIZZ", L=5)
        ({0: 'X', 3: 'Z', 4: 'Z'}, {0: 'X', 3: 'Z', 4: 'Z'})
        >>> parse_pauli_string("Z5", L=5)
        Traceback (most recent call last):
        ...
        qtomo.errors.QtomoError: Pauli string 'Z5': site 5 is out of range for L = 5 (sites 0..4)
    """
    if _DENSE.fullmatch(text.strip()):
        letters = text.strip().upper()
        if len(letters) != L:
            raise QtomoError(f"Pauli string {text!r} has {len(letters)} letters; a dense string "
                             f"needs one per qubit, L = {L}")
        if set(letters) == {"I"}:
            raise QtomoError(f"Pauli string {text!r} is the identity; expected at least one X, "
                             f"Y or Z")
        return {site: letter for site, letter in enumerate(letters) if letter != "I"}
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
    """Pauli expectation values with standard errors (docs/evaluate.md "Evaluation and
    reconstruction").

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


def _pauli_tables(povm: POVM | PerQubitPOVM, L: int) -> dict[str, np.ndarray]:
    """Tr(σ Q^(i)_k) for σ in I, X, Y, Z: letter -> (L, K) float64, row i for qubit i."""
    per_site = [povm.at(site).pauli_dual_traces() for site in range(L)]
    return {letter: np.stack([tables[letter] for tables in per_site]) for letter in PAULI}


def _pauli_sum_values(records: np.ndarray, tables: dict[str, np.ndarray],
                      terms: Sequence[tuple[float, dict[int, str]]]) -> np.ndarray:
    """Per-record estimator e(a) = Σ_t c_t Π_{i∈t} Tr(σ_i Q_{a_i}) for records (B, L)."""
    values = np.zeros(records.shape[0])
    for coefficient, string in terms:
        term = np.full(records.shape[0], float(coefficient))
        for site, letter in string.items():
            term *= tables[letter][site, records[:, site]]
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
            return Estimate.exact(first)
        mean = first / self.count
        variance = np.clip(second / self.count - mean**2, 0.0, None)
        stderr = np.sqrt(variance / (self.count - 1)) if self.count > 1 else np.full_like(
            mean, np.inf)
        return Estimate.of(mean, stderr)


def _accumulate(batches: Iterable[tuple[np.ndarray, np.ndarray | None]],
                povm: POVM | PerQubitPOVM, L: int, hamiltonian: TFIM | None,
                pauli_strings: Sequence[str], exact: bool) -> Observables:
    strings = {text: parse_pauli_string(text, L) for text in pauli_strings}
    if hamiltonian is not None and hamiltonian.L != L:
        raise QtomoError(f"the Hamiltonian has L = {hamiltonian.L}, the records L = {L}")
    terms = hamiltonian.terms() if hamiltonian is not None else None
    tables = _pauli_tables(povm, L)  # letter -> (L, K) Tr(σ Q^(i)_k)
    sites = np.arange(L)
    moments = _Moments()
    for records, weights in batches:
        records = np.asarray(records, dtype=np.intp)
        if records.ndim != 2 or records.shape[1] != L:
            raise QtomoError(f"records must have shape (N, {L}); got {records.shape}")
        weights = np.ones(records.shape[0]) if weights is None else np.asarray(weights, float)
        moments.count += records.shape[0]
        x, z = tables["X"][sites, records], tables["Z"][sites, records]  # (B, L) each
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


def estimate_observables(records: np.ndarray | Iterable[np.ndarray], povm: POVM | PerQubitPOVM, *,
                         hamiltonian: TFIM | None = None,
                         pauli_strings: Sequence[str] = ()) -> Observables:
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
        QtomoError: for bad shapes, records that are not whole numbers in 0..K−1
            (:func:`qtomo.guards.integer_records`), bad Pauli strings, or no records.

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
    first = integer_records(records_numpy(first), povm.K)
    rest = ((integer_records(records_numpy(chunk), povm.K), None) for chunk in chunks)
    batches = itertools.chain([(first, None)], rest)
    return _accumulate(batches, povm, first.shape[-1], hamiltonian, pauli_strings, exact=False)



def exact_observables(probabilities: np.ndarray, povm: POVM | PerQubitPOVM, *,
                      hamiltonian: TFIM | None = None,
                      pauli_strings: Sequence[str] = ()) -> Observables:
    """Exact ⟨O⟩ = Σ_a Q(a) f_O(a) over all K^L records (stderr 0).

    Equal to Tr(ρ O) for ρ = :func:`qtomo.reconstruct.density_matrix` of the same table.

    Args:
        probabilities: (K^L,) float, Q in enumeration order.
        povm, hamiltonian, pauli_strings: as in :func:`estimate_observables`.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    L = sites_from_size(probabilities.size, povm.K, "probabilities")
    check_enumerable(L, "exact observables")
    batches = ((block, probabilities[start:start + block.shape[0]])
               for start, block in outcome_blocks(L, povm.K))
    return _accumulate(batches, povm, L, hamiltonian, pauli_strings, exact=True)


def model_observables(model: Distribution, povm: POVM | PerQubitPOVM, *, samples: int = 100_000,
                      exact: bool = False,
                      hamiltonian: TFIM | None = None, pauli_strings: Sequence[str] = (),
                      batch_size: int = 16384, generator: torch.Generator | None = None,
                      quiet: bool = True,
                      on_batch: Callable[[torch.Tensor], None] | None = None) -> Observables:
    """Observables of a model: Monte Carlo over ``samples`` model samples, or exact sums.

    Args:
        model: anything with the model interface.
        povm: the POVM the model's records belong to.
        samples: number of records drawn (Monte Carlo).
        exact: sum over all K^L records instead (L ≤ :data:`qtomo.distribution.ENUMERATE_MAX_L`).
        hamiltonian, pauli_strings: as in :func:`estimate_observables`.
        batch_size: records drawn per call of ``model.sample``.
        generator: torch generator for reproducible sampling (on the model's device).
        quiet: no progress bar.
        on_batch: called with every batch of samples (b, L) as well, so that other estimators
            (the reduced states of blocks) share the draws.
    """
    if exact:
        return exact_observables(enumerate_probabilities(model, quiet=quiet), povm,
                                 hamiltonian=hamiltonian, pauli_strings=pauli_strings)
    if samples < 2:
        raise QtomoError(f"Monte Carlo estimates need at least 2 samples; got {samples}")
    bar = progress_bar(samples, "sample", quiet=quiet, unit="rec")

    def chunks():
        for batch in sample_batches(model, samples, batch_size, generator):
            bar.update(batch.shape[0])
            if on_batch is not None:
                on_batch(batch)
            yield batch

    with bar:
        return estimate_observables(chunks(), povm, hamiltonian=hamiltonian,
                                    pauli_strings=pauli_strings)


