"""Pauli-basis records as settings and bits: what they determine, and estimators that use only
the records measuring an operator (docs/measured-data.md "Measured data", docs/measured-data.md).

A ``pauli6`` record a_i = 2·b_i + r_i holds, per qubit, the measured basis b_i ∈ {Z: 0, X: 1,
Y: 2} and the bit r_i (0 = eigenvalue +1). The dual-frame estimator of :mod:`qtomo.observables`
assumes every qubit's basis uniform and independent; on measured data (Z-only shots, 5 of 9
two-qubit settings) it returns values outside the physical range. Here a Pauli string
O = ⊗_{i∈S} σ_i is estimated from the records whose setting measures it, b_i = basis(σ_i) for
every i ∈ S::

    ⟨O⟩ ≈ μ_O = Σ_n m_O(n) s_O(n) / Σ_n m_O(n),     s_O(n) = Π_{i∈S} (−1)^{r_i^(n)}

with m_O(n) = 1 where record n measures O. Given the settings, the bits are drawn from the
state, so μ_O is unbiased for any distribution of the settings, and |μ_O| ≤ 1 always. Its
standard error is √((1 − μ_O²) / n_O) over the n_O measuring records. A Pauli sum
H = Σ_t c_t O_t is Σ_t c_t μ_t with the delta-method error of the ratio estimators,
Var = Σ_{t,u} c_t c_u Σ_n m_t m_u (s_t − μ_t)(s_u − μ_u) / (n_t n_u), covariances included.
An operator measured by fewer than :data:`MIN_RECORDS` records is refused (value NaN) with a
note naming it and the reason ("⟨X_4⟩ is not measured: no X outcomes on site 4").

With readout errors (``pauli6+readout``: P(read 1 | 0) = e0, P(read 0 | 1) = e1 on qubit i) the
read sign has E[s_i] = g_i ⟨σ_i⟩ + o_i, g_i = 1 − e0 − e1, o_i = e1 − e0, and the flips are
independent across qubits, so each sign is replaced by its unbiased correction
(s_i − o_i) / g_i (:func:`sign_calibration` reads g and o from the POVM elements); the errors
then come from the second moments of the corrected values.

Example (Z-only records of |00⟩: ⟨Z_0 Z_1⟩ = 1 exactly, ⟨X_0⟩ not measured):
    >>> records = np.zeros((20, 2), dtype=np.uint8)
    >>> obs, notes = basis_observables(records, L=2)
    >>> float(obs.ZZ.value[0, 1]), bool(np.isnan(obs.X.value[0])), notes[0]
    (1.0, True, '⟨X_0⟩, ⟨X_1⟩ not measured: no X outcomes on site 0, 1')
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from functools import reduce

import numpy as np
import torch

from qtomo.data import Dataset
from qtomo.distribution import records_numpy
from qtomo.errors import QtomoError
from qtomo.estimate import Estimate
from qtomo.observables import Observables, parse_pauli_string
from qtomo.povm import PAULI, POVM, PerQubitPOVM
from qtomo.states.hamiltonians import TFIM

__all__ = ["BASIS_CODES", "MIN_RECORDS", "BasisCoverage", "BasisWeightedLogProb",
           "basis_observables", "training_basis_frequencies",
           "dataset_warnings", "has_settings", "phases_undetermined", "records_incomplete",
           "sample_shots", "sign_calibration"]

#: basis code of each Pauli letter in a ``pauli6`` record (a = 2·code + bit)
BASIS_CODES = {"Z": 0, "X": 1, "Y": 2}
_LETTERS = "ZXY"
#: fewest measuring records behind an estimate; fewer: the operator is refused as not measured
MIN_RECORDS = 10
#: the 3^L settings are listed by name up to this L (9 settings of two qubits, 27 of three)
_LIST_SETTINGS_MAX_L = 3
_CHUNK = 2**16


def sign_calibration(povm: POVM | PerQubitPOVM, L: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(g, o), each (L, 3) float64, with M^(i)_{2b} − M^(i)_{2b+1} = g_ib σ_b + o_ib 1 on every
    qubit i and basis b ∈ {Z, X, Y}, so that the read sign has E[s] = g ⟨σ_b⟩ + o; None where
    the records of ``povm`` are not Pauli-basis shots of this form. The ideal ``pauli6`` gives
    g = 1, o = 0; readout errors g = 1 − e0 − e1, o = e1 − e0 (module docstring).

    Example:
        >>> from qtomo.readout import readout_povm
        >>> g, o = sign_calibration(readout_povm(0.1, 0.2), L=1)
        >>> np.round(g, 12).tolist(), np.round(o, 12).tolist()
        ([[0.7, 0.7, 0.7]], [[0.1, 0.1, 0.1]])
    """
    if not has_settings(povm):
        return None
    elements = povm.site_elements(L)  # (L, 6, 2, 2)
    setting = elements[:, 0::2] + elements[:, 1::2]  # (L, 3, 2, 2): w_ib 1, w_ib = P(b) = 1/3
    weight = np.einsum("lbii->lb", setting).real[..., None, None] / 2
    difference = (elements[:, 0::2] - elements[:, 1::2]) / weight  # given the setting
    paulis = np.stack([PAULI[letter] for letter in "ZXY"])  # (3, 2, 2)
    gain = np.einsum("lbij,bji->lb", difference, paulis).real / 2
    offset = np.einsum("lbii->lb", difference).real / 2
    rebuilt = gain[..., None, None] * paulis + offset[..., None, None] * np.eye(2)
    if not (np.allclose(setting, weight * np.eye(2), atol=1e-10)
            and np.allclose(rebuilt, difference, atol=1e-10)) or np.any(np.abs(gain) < 1e-6):
        return None
    return gain, offset


def has_settings(povm: POVM | PerQubitPOVM) -> bool:
    """Whether each record holds its setting as a_i // 2 (``pauli6``, also with readout
    errors): the coverage and the phase check apply; the bit estimators need
    :func:`sign_calibration`."""
    return povm.name.startswith("pauli6")


def dataset_warnings(dataset: Dataset) -> tuple[str, ...]:
    """The warnings a dataset carries from its import, repeated by ``fit``, ``evaluate`` and
    ``compare``: its ``warning`` attribute (biased bases kept with ``--allow-biased-bases``, an
    unresolved DMRG parity gap) and ``undetermined`` (:meth:`BasisCoverage.undetermined`)."""
    attrs = dataset.attrs
    lines = [str(attrs["warning"])] if attrs.get("warning") else []
    lines += [f"the records do not determine everything: {line}"
              for line in np.atleast_1d(attrs.get("undetermined", [])).tolist()]
    return tuple(lines)


def records_incomplete(dataset: Dataset) -> str | None:
    """Why the records are not complete, uniform tomography, or None: bases kept biased at import
    (``biased_bases``) or operators no record measures (``undetermined``). The dual-frame ρ of
    such records (a network's Q, the data-only blocks) is not the measured state's."""
    attrs = dataset.attrs
    if attrs.get("biased_bases"):
        return "the bases of the records are biased"
    undetermined = np.atleast_1d(attrs.get("undetermined", [])).tolist()
    if undetermined:
        return f"the records do not determine everything ({undetermined[0]})"
    return None


def phases_undetermined(dataset: Dataset) -> str | None:
    """Why the records cannot determine the phases of the amplitudes, or None: Pauli-basis
    records with no X or Y outcome at all (Z-only shots measure |ψ(s)|² only).

    Example:
        >>> from types import SimpleNamespace
        >>> from qtomo.povm import get_povm
        >>> chunks = lambda size: iter([(np.zeros((4, 3), np.uint8), None)])
        >>> data = SimpleNamespace(povm=get_povm("pauli6"), L=3, iter_chunks=chunks)
        >>> phases_undetermined(data)
        'the records have no X or Y outcomes (Z basis only): they fix |ψ(s)|², not the phases'
    """
    if not has_settings(dataset.povm):
        return None
    for outcomes, _ in dataset.iter_chunks(_CHUNK):
        if np.any(records_numpy(outcomes).astype(np.intp) >= 2):
            return None
    return ("the records have no X or Y outcomes (Z basis only): they fix |ψ(s)|², not the "
            "phases")


class BasisCoverage:
    """Counts of the measured bases of Pauli-basis records, fed chunk by chunk.

    Attributes:
        n: records seen.
        site: (L, 3) int64, records measuring site i in basis Z, X, Y.
        pair: (L, L, 3, 3) int64, records measuring sites i, j in bases (b, b').
        settings: the distinct settings seen (tuples of L basis codes), kept for
            L ≤ 3 only (None above).
    """

    def __init__(self, L: int) -> None:
        self.L, self.n = L, 0
        self.site = np.zeros((L, 3), dtype=np.int64)
        self.pair = np.zeros((L, L, 3, 3), dtype=np.int64)
        self.settings: set[tuple[int, ...]] | None = set() if L <= _LIST_SETTINGS_MAX_L else None

    def add(self, records: np.ndarray | torch.Tensor) -> None:
        """Add (B, L) ``pauli6`` records (in slices of 2^16 rows: memory O(2^16 · L))."""
        records = records_numpy(records)
        for start in range(0, records.shape[0], _CHUNK):
            bases = records[start:start + _CHUNK].astype(np.intp) // 2  # (b, L)
            onehot = np.zeros((bases.shape[0], 3 * self.L))  # (b, 3L)
            onehot[np.arange(bases.shape[0])[:, None], 3 * np.arange(self.L) + bases] = 1.0
            joint = (onehot.T @ onehot).round().astype(np.int64)  # (3L, 3L)
            joint = joint.reshape(self.L, 3, self.L, 3).transpose(0, 2, 1, 3)  # (L, L, 3, 3)
            self.pair += joint
            self.site += np.einsum("iiaa->ia", joint)
            self.n += bases.shape[0]
            if self.settings is not None:
                self.settings.update(map(tuple, np.unique(bases, axis=0).tolist()))

    def undetermined(self) -> list[str]:
        """What the records cannot determine, one line each (empty when the settings are
        informationally complete): bases never measured on a site, pairs of sites missing
        some of the 9 two-qubit settings, and for L ≤ 3 the settings never measured."""
        lines = []
        for code, letter in enumerate(_LETTERS):
            sites = [i for i in range(self.L) if self.site[i, code] == 0]
            if sites:
                lines.append(f"no {letter} outcomes on site {_names(sites)}: no expectation "
                             f"with {letter} there is determined")
        missing_pairs = [(i, j) for i in range(self.L) for j in range(i + 1, self.L)
                         if np.any(self.pair[i, j] == 0)]
        if missing_pairs and not lines:
            i, j = missing_pairs[0]
            absent = [_LETTERS[b] + _LETTERS[c] for b in range(3) for c in range(3)
                      if self.pair[i, j, b, c] == 0]
            lines.append(f"{len(missing_pairs)} pair(s) of sites lack some of the 9 two-qubit "
                         f"settings, e.g. ({i}, {j}) never measured in {', '.join(absent)}: "
                         f"their correlations there are not determined")
        if self.settings is not None and len(self.settings) < 3**self.L:
            absent = sorted(set(itertools.product(range(3), repeat=self.L)) - self.settings)
            lines.append(f"{len(self.settings)} of the 3^{self.L} = {3**self.L} settings "
                         f"measured; never measured: "
                         + ", ".join("".join(_LETTERS[b] for b in s) for s in absent))
        return lines


def training_basis_frequencies(dataset: Dataset, test_rows: tuple[int, int]) -> np.ndarray:
    """p̂_i(b) = (c_ib + 1) / (N + 3): each site's basis frequencies over the rows outside
    ``test_rows`` (all rows where none are outside), add-one smoothed, so that a basis unseen
    in training keeps a finite ln p̂.

    Returns:
        (L, 3) float64, rows summing to 1 (Z, X, Y).
    """
    counts, n = np.zeros((dataset.L, 3)), 0
    outside = ((0, test_rows[0]), (test_rows[1], dataset.n_records))
    if all(stop <= start for start, stop in outside):  # a model not trained on this file
        outside = ((0, dataset.n_records),)
    for start, stop in outside:
        for outcomes, _ in dataset.iter_chunks(_CHUNK, start, stop) if stop > start else ():
            bases = records_numpy(outcomes).astype(np.intp) // 2  # (B, L)
            counts += np.stack([(bases == code).sum(axis=0) for code in range(3)], axis=1)
            n += bases.shape[0]
    return (counts + 1.0) / (n + 3.0)


class BasisWeightedLogProb:
    """ln Q'(a) = ln p̂(b) + ln Q(r | b) of a Born-rule model Q of ``pauli6`` records, whose own
    Q(a) = Q(r | b) / 3^L assumes uniform bases: Q' models the basis choice as the networks do
    (from the data), with p̂(b) = Π_i p̂_i(b_i) (:func:`training_basis_frequencies`), so that
    NLLs of both kinds of family on biased bases compare (docs/measured-data.md "Fair
    likelihoods"). Only ``log_prob`` (for the NLL); Q' is normalised over all 6^L records.

    Args:
        model: the physical model (``log_prob`` of LongTensor (B, L) → (B,)).
        frequencies: (L, 3) p̂_i(b) > 0.
    """

    def __init__(self, model, frequencies: np.ndarray) -> None:
        self.model, self.L, self.K = model, model.L, model.K
        self.family, self.povm = model.family, model.povm
        self.exact_log_prob, self.has_log_prob = model.exact_log_prob, True
        self.log_weights = torch.as_tensor(np.log(3.0 * np.asarray(frequencies)))  # (L, 3)

    @property
    def device(self) -> torch.device:
        return self.model.device

    def log_prob(self, a: torch.Tensor) -> torch.Tensor:
        """ln Q(a) + Σ_i ln(3 p̂_i(b_i)) for LongTensor a (B, L): (B,) float64."""
        weights = self.log_weights.to(a.device)[torch.arange(self.L, device=a.device), a // 2]
        return self.model.log_prob(a).to(torch.float64) + weights.sum(dim=-1)


def _names(sites: Sequence[int]) -> str:
    return ", ".join(map(str, sites))


def _mean_estimate(count: np.ndarray, total: np.ndarray, squares: np.ndarray) -> Estimate:
    """μ = total / count ± √((squares / count − μ²) / count); NaN where count < MIN_RECORDS."""
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = total / count
        stderr = np.sqrt(np.clip(squares / count - mean**2, 0.0, None) / count)
    refused = count < MIN_RECORDS
    return Estimate.of(np.where(refused, np.nan, mean), np.where(refused, np.nan, stderr))


class _PauliSums:
    """Moments of the per-record values m_t, m_t s_t of the terms of several Pauli sums."""

    def __init__(self, sums: dict[str, list[tuple[float, dict[int, str]]]]) -> None:
        self.sums = sums
        self.terms = [string for terms in sums.values() for _, string in terms]
        T = len(self.terms)
        self.A, self.B, self.C = np.zeros((T, T)), np.zeros((T, T)), np.zeros((T, T))

    def add(self, bases: np.ndarray, signs: np.ndarray) -> None:
        """bases, signs: (B, L) basis codes and (corrected) signs of a chunk."""
        if not self.terms:
            return
        measured = np.ones((bases.shape[0], len(self.terms)))  # (B, T)
        values = np.ones_like(measured)
        for t, string in enumerate(self.terms):
            for site, letter in string.items():
                measured[:, t] *= bases[:, site] == BASIS_CODES[letter]
                values[:, t] *= signs[:, site]
        weighted = measured * values
        self.A += weighted.T @ weighted
        self.B += weighted.T @ measured
        self.C += measured.T @ measured

    def estimates(self) -> tuple[dict[str, Estimate], list[str]]:
        """{name: Estimate} of every sum, NaN with a note where a term is measured too rarely."""
        count = np.diag(self.C)
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = np.diag(self.B) / count
        mean = np.nan_to_num(mean)
        covariance = (self.A - self.B * mean[None, :] - self.B.T * mean[:, None]
                      + self.C * np.outer(mean, mean))
        out, notes, start = {}, [], 0
        for name, terms in self.sums.items():
            index = np.arange(start, start + len(terms))
            start += len(terms)
            rare = [t for t in index if count[t] < MIN_RECORDS]
            if rare:
                term = " ".join(f"{letter}{site}" for site, letter in self.terms[rare[0]].items())
                notes.append(f"{name} not measured: its term {term} is measured by "
                             f"{int(count[rare[0]])} record(s), fewer than {MIN_RECORDS}")
                out[name] = Estimate(float("nan"), float("nan"))
                continue
            weights = np.array([c for c, _ in terms]) / count[index]
            variance = weights @ covariance[np.ix_(index, index)] @ weights
            out[name] = Estimate(float(np.array([c for c, _ in terms]) @ mean[index]),
                                 float(np.sqrt(max(variance, 0.0))))
        return out, notes


def basis_observables(records: np.ndarray | torch.Tensor | Iterable, L: int, *,
                      hamiltonian: TFIM | None = None, pauli_strings: Sequence[str] = (),
                      calibration: tuple[np.ndarray, np.ndarray] | None = None,
                      ) -> tuple[Observables, list[str]]:
    """Data-only ⟨X_i⟩, ⟨Z_i⟩, ⟨X_iX_j⟩, ⟨Z_iZ_j⟩, the energy and Pauli strings from the records
    that measure each operator (module docstring), unbiased for any basis distribution.

    Args:
        records: (N, L) ``pauli6`` records, or an iterable of (b, L) chunks.
        L: qubits.
        hamiltonian: optional Pauli sum (``terms()`` → [(c, {site: letter})]) for the energy.
        pauli_strings: texts like ``"X0 Z3 Z4"``.
        calibration: (g, o) of :func:`sign_calibration` for records with readout errors; None:
            ideal readout.

    Returns:
        (:class:`~qtomo.observables.Observables` with ``n_samples`` = N, the values NaN for
        operators measured by fewer than :data:`MIN_RECORDS` records; notes naming each such
        operator and why).

    Raises:
        QtomoError: for no records, or records of another shape or outside 0..5.
    """
    chunks = [records] if isinstance(records, np.ndarray | torch.Tensor) else records
    sums = {f"⟨{text}⟩": [(1.0, parse_pauli_string(text, L))] for text in pauli_strings}
    if hamiltonian is not None:
        sums["the energy"] = list(hamiltonian.terms())
    pauli_sums = _PauliSums(sums)
    count = {letter: np.zeros((L, L)) for letter in "XZ"}  # diagonal: single sites
    total = {letter: np.zeros((L, L)) for letter in "XZ"}
    squares = {letter: np.zeros((L, L)) for letter in "XZ"}  # off-diagonal: of products
    single_total = {letter: np.zeros(L) for letter in "XZ"}
    gain, offset = calibration if calibration is not None else (np.ones((L, 3)),
                                                                np.zeros((L, 3)))
    n = 0
    for chunk in chunks:
        chunk = records_numpy(chunk).astype(np.intp)
        if chunk.ndim != 2 or chunk.shape[1] != L or chunk.min(initial=0) < 0 \
                or chunk.max(initial=0) > 5:
            raise QtomoError(f"pauli6 records must be (N, {L}) integers in 0..5; got shape "
                             f"{chunk.shape}")
        bases, sites = chunk // 2, np.arange(L)
        signs = (1.0 - 2.0 * (chunk % 2) - offset[sites, bases]) / gain[sites, bases]  # (B, L)
        for letter in "XZ":
            measured = (bases == BASIS_CODES[letter]).astype(float)  # (B, L)
            count[letter] += measured.T @ measured
            total[letter] += (measured * signs).T @ (measured * signs)
            squares[letter] += (measured * signs**2).T @ (measured * signs**2)
            single_total[letter] += (measured * signs).sum(axis=0)
        pauli_sums.add(bases, signs)
        n += chunk.shape[0]
    if n == 0:
        raise QtomoError("no records to estimate observables from")
    singles, pairs, notes = {}, {}, []
    for letter in "XZ":
        single_count = np.diag(count[letter])
        singles[letter] = _mean_estimate(single_count, single_total[letter],
                                         np.diag(total[letter]))
        pair = _mean_estimate(count[letter], total[letter], squares[letter])
        np.fill_diagonal(pair.value, 1.0)
        np.fill_diagonal(pair.stderr, 0.0)
        pairs[letter] = pair
        notes += _refusals(letter, np.diag(count[letter]), count[letter])
    estimates, sum_notes = pauli_sums.estimates()
    return Observables(
        X=singles["X"], Z=singles["Z"], XX=pairs["X"], ZZ=pairs["Z"],
        energy=estimates.get("the energy"),
        strings={text: estimates[f"⟨{text}⟩"] for text in pauli_strings},
        n_samples=n), notes + sum_notes


def _refusals(letter: str, single: np.ndarray, pair: np.ndarray) -> list[str]:
    """Notes naming the ⟨σ_i⟩ and ⟨σ_i σ_j⟩ refused for too few measuring records."""
    notes = []
    rare = [i for i in range(single.size) if single[i] < MIN_RECORDS]
    if rare:
        unseen = [i for i in rare if single[i] == 0]
        reason = (f"no {letter} outcomes on site {_names(unseen)}" if len(unseen) == len(rare)
                  else f"fewer than {MIN_RECORDS} {letter} outcomes on site {_names(rare)}")
        notes.append(", ".join(f"⟨{letter}_{i}⟩" for i in rare) + f" not measured: {reason}")
    rare_pairs = [(i, j) for i in range(single.size) for j in range(i + 1, single.size)
                  if pair[i, j] < MIN_RECORDS and i not in rare and j not in rare]
    if rare_pairs:
        i, j = rare_pairs[0]
        notes.append(f"{len(rare_pairs)} correlation(s) ⟨{letter}_i {letter}_j⟩ not measured, "
                     f"e.g. ⟨{letter}_{i} {letter}_{j}⟩: {int(pair[i, j])} record(s) measure "
                     f"both sites in {letter}, fewer than {MIN_RECORDS}")
    return notes


_S = 1 / np.sqrt(2)
#: rows ⟨b_0|, ⟨b_1| of the eigenbasis of each Pauli (bit 0: eigenvalue +1), so that
#: |U ψ|² are the bit probabilities of a measurement in that basis
_ROTATIONS = {"Z": np.eye(2), "X": np.array([[_S, _S], [_S, -_S]]),
              "Y": np.array([[_S, -1j * _S], [_S, 1j * _S]])}


def sample_shots(psi: np.ndarray, bases: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Pauli-basis shots of a pure state, one per row of ``bases``: bits (N, L) int drawn from
    |U_b ψ|² with U_b = ⊗_i U_{b_i} the setting's rotation (bit 0: eigenvalue +1; qubit 0
    most significant), as an experiment with settings ``bases`` would record them.

    Args:
        psi: (2^L,) normalised state vector.
        bases: (N, L) letters ``"X"``, ``"Y"``, ``"Z"``, any distribution over settings.
        rng: numpy generator.

    Example (|0⟩ read in Z is always 0, |0⟩ read in X is 0 or 1):
        >>> bits = sample_shots(np.array([1, 0]), np.array([["Z"]] * 4), np.random.default_rng(0))
        >>> bits.ravel().tolist()
        [0, 0, 0, 0]
    """
    L = bases.shape[1]
    bits = np.zeros(bases.shape, dtype=int)
    settings, inverse = np.unique(bases, axis=0, return_inverse=True)
    for s, setting in enumerate(settings):
        rows = np.flatnonzero(inverse.reshape(-1) == s)
        amplitudes = reduce(np.kron, [_ROTATIONS[b] for b in setting]) @ psi
        index = rng.choice(2**L, size=rows.size, p=np.abs(amplitudes) ** 2)
        bits[rows] = (index[:, None] >> np.arange(L - 1, -1, -1)) & 1
    return bits
