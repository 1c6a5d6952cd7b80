"""The one reader and the one writer of qtomo's dataset file (HDF5, version 1).

Layout::

    /                    attrs: format="qtomo.povm-dataset", version=1, qtomo_version, source, L,
                         povm, and for simulated records state, seed, method and the state's
                         parameters (J, h, boundary, …)
    /outcomes            uint8 (N, L), chunked, gzip-compressed; row = one record a_0 … a_{L-1}
    /log_prob            float64 (N,), ln P(a) under the generating state (simulated records)
    /povm/elements       complex128 (K, 2, 2), or (L, K, 2, 2) when each qubit has its own POVM
    /reference/energy    float64 ()        /reference/X, /reference/Z    float64 (L,)
    /reference/ZZ, /XX   float64 (L, L)    /reference/entropy            float64 (L-1,)
    /reference/psi       complex128 (2^L,) (exact path)
    /reference/rho       complex128 (2^L, 2^L), /reference/purity float64 () (exact path, noise)
    /reference/mps/B_i   complex128 (χ_l, 2, χ_r), right-canonical (MPS path and GHZ)

Measured data (``source = "imported:<format>"``, docs/measured-data.md "Measured data") has no
generating state: ``/log_prob``, ``/reference`` and the attributes ``state``, ``seed``, ``method``
may be absent. A file without ``source`` is a simulated file of an earlier qtomo.

Files are written under a temporary name and renamed when complete, and are read and validated in
chunks of rows, so N = 10^7 records at L = 50 never sit in memory twice.

Example:
    >>> import tempfile, pathlib
    >>> from qtomo.povm import get_povm
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "tiny.h5"
    >>> outcomes = np.array([[0, 3], [2, 1]], dtype=np.uint8)
    >>> _ = write_dataset(path, povm=get_povm("pauli4"), attrs={"state": "product", "L": 2,
    ...     "seed": 0, "method": "exact"}, n_records=2,
    ...     chunks=[(outcomes, np.log([0.1, 0.05]))], reference={})
    >>> dataset = read_dataset(path)
    >>> dataset.n_records, dataset.L, dataset.K, dataset.outcomes().tolist()
    (2, 2, 4, [[0, 3], [2, 1]])
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

import qtomo
from qtomo.atomic import atomic_output, describe_leftover
from qtomo.errors import DataFormatError, QtomoError
from qtomo.guards import missing_file
from qtomo.jsontext import plain
from qtomo.povm import (
    POVM,
    POVM_NAMES,
    PerQubitPOVM,
    check_outcomes,
    get_povm,
    povm_elements,
    povm_from_elements,
)
from qtomo.progress import progress_bar
from qtomo.readout import readout_povms

__all__ = ["FORMAT", "VERSION", "Dataset", "check_source", "read_dataset", "write_dataset"]

FORMAT = "qtomo.povm-dataset"
VERSION = 1
READ_CHUNK = 2**18
_REQUIRED_ATTRS = ("L", "povm")
_SIMULATED_ATTRS = ("state", "seed", "method")
SIMULATED = "simulated"
IMPORTED = "imported:"
_CHANNELS = ("amplitude_damping", "dephasing", "depolarizing")  # qtomo.states.noise.CHANNELS


def check_source(attrs: dict) -> str:
    """The records' ``source`` (default ``"simulated"``), checked against the attributes it needs.

    Simulated records carry ``state``, ``seed`` and ``method``; imported ones
    (``"imported:<format>"``) need none of them.

    Raises:
        QtomoError: for another source, or a simulated file missing one of those attributes.

    Example:
        >>> check_source({"source": "imported:qucumber"})
        'imported:qucumber'
    """
    source = attrs.get("source", SIMULATED)
    if not isinstance(source, str) or not (
            source == SIMULATED or (source.startswith(IMPORTED) and len(source) > len(IMPORTED))):
        raise QtomoError(f"attribute source must be {SIMULATED!r} or '{IMPORTED}<format>'; "
                         f"got {source!r}")
    if source == SIMULATED:
        missing = [key for key in _SIMULATED_ATTRS if key not in attrs]
        if missing:
            raise QtomoError(f"simulated records need the attribute(s) {', '.join(missing)}")
    return source
#: ln P(a) ≤ 0 up to rounding
_LOG_PROB_MAX = 1e-9


def write_dataset(
    path: str | os.PathLike,
    *,
    povm: POVM | PerQubitPOVM,
    attrs: dict,
    n_records: int,
    chunks: Iterable[tuple[np.ndarray, np.ndarray]],
    reference: dict,
    quiet: bool = True,
) -> Path:
    """Stream records into a new dataset file at ``path``, atomically.

    Args:
        path: target file; its folder is created if needed.
        povm: the POVM the records were measured with (one per qubit for a
            :class:`~qtomo.povm.PerQubitPOVM`); stored in ``/povm/elements``.
        attrs: root attributes beyond format/version/qtomo_version/povm: ``L``, ``source``
            (default ``"simulated"``, which needs ``state``, ``seed``, ``method``) and the
            state's parameters; None values are skipped.
        n_records: N, the total number of rows the chunks will deliver.
        chunks: iterable of (outcomes (b, L) integer in 0..K-1, log_prob (b,) float64 or None);
            ``/log_prob`` is written when the chunks carry it (all of them, or none).
        reference: name → array for ``/reference``; ``"mps"`` maps to a list of (χl, 2, χr)
            tensors written as ``/reference/mps/B_i``.
        quiet: no progress bar.

    Returns:
        The path written.

    Raises:
        QtomoError: before anything is written, for attributes or references that
            :func:`read_dataset` would refuse (a non-integer L, a TFIM without finite J and h, a
            ψ of the wrong length or norm, …); then for a chunk that is not integer outcomes
            (b, L) in 0..K−1 with real ln P (b,) that are finite and ≤ 0, a row count different
            from ``n_records``, or a file that cannot be written.
    """
    if isinstance(n_records, bool) or not isinstance(n_records, int | np.integer) or n_records < 1:
        raise QtomoError(f"a dataset needs an integer n_records >= 1; got {n_records!r}")
    root = _root_attrs(povm, attrs)
    L = root["L"]
    elements = povm_elements(povm, L)
    reference = {name: check_reference(name, value, L) for name, value in reference.items()}
    target = Path(path)
    # No chunk cache: rows go to disk as whole HDF5 chunks when written, so a full disk fails
    # that write; dirty cached chunks that cannot be flushed make h5py crash at exit instead.
    with atomic_output(target) as temporary, h5py.File(temporary, "w", rdcc_nbytes=0) as file:
        file.attrs.update(root)
        with progress_bar(n_records, f"writing {target.name}", quiet=quiet, unit="rec") as bar:
            _write_records(file, chunks, n_records, povm, L, bar)
        file.create_dataset("povm/elements", data=elements)
        _write_reference(file, reference)
    return target


def _root_attrs(povm: POVM | PerQubitPOVM, attrs: dict) -> dict:
    """The file's root attributes: ``attrs`` (None values dropped) with qtomo_version, format,
    version, povm and source set, checked by :func:`check_attrs`.

    Raises:
        QtomoError: ``attrs`` sets format, version or povm to another value, or fails
            :func:`check_attrs` / :func:`check_source`.
    """
    own = {"format": FORMAT, "version": VERSION, "povm": povm.name}  # the writer's to set
    given = {str(key): plain(value) for key, value in attrs.items() if value is not None}
    for key, value in own.items():
        if key in given and given[key] != value:
            raise QtomoError(f"attribute {key} is {value!r} for this file; got {given[key]!r}")
    root = {"qtomo_version": qtomo.__version__, **given, **own}
    check_attrs(root)
    root["source"] = check_source(root)
    return root


def _write_records(file: h5py.File, chunks: Iterable[tuple[np.ndarray, np.ndarray]],
                   n_records: int, povm: POVM | PerQubitPOVM, L: int, bar) -> None:
    """Check the chunks (as :func:`write_dataset`) and write them to ``/outcomes`` (N, L) uint8
    and, when they carry ln P, ``/log_prob`` (N,) float64, in whole HDF5 chunks of
    ≈ 2^20 / L rows; ``bar`` counts the rows received.

    Raises:
        QtomoError: a bad chunk, ln P in some chunks only, or a row count other than N.
    """
    chunk_rows = int(min(n_records, max(1, 2**20 // L)))
    outcomes = file.create_dataset(
        "outcomes", (n_records, L), dtype=np.uint8, chunks=(chunk_rows, L),
        compression="gzip", compression_opts=1,
    )
    log_prob = None
    row, written, pending = 0, 0, []  # rows received, rows on disk, rows not yet on disk
    for chunk_outcomes, chunk_log_prob in chunks:
        chunk_outcomes = np.asarray(chunk_outcomes)
        if row == 0 and chunk_log_prob is not None:
            log_prob = file.create_dataset("log_prob", (n_records,), dtype=np.float64,
                                           chunks=(chunk_rows,))
        if (chunk_log_prob is None) != (log_prob is None):
            found = "lacks" if log_prob is not None else "has"
            raise QtomoError(f"chunk at row {row} {found} ln P; expected ln P in every "
                             f"chunk or in none")
        chunk_log_prob = (np.zeros(chunk_outcomes.shape[:1]) if chunk_log_prob is None
                          else np.asarray(chunk_log_prob))  # zeros: shape check only
        rows = _check_chunk(chunk_outcomes, chunk_log_prob, L, povm, row)
        if row + rows > n_records:
            raise QtomoError(f"more than the announced {n_records} records were written")
        pending.append((chunk_outcomes, chunk_log_prob))
        row += rows
        if row - written >= chunk_rows or row == n_records:
            block = np.concatenate([p[0] for p in pending])  # (b, L)
            block_log_prob = np.concatenate([p[1] for p in pending])  # (b,)
            size = len(block) if row == n_records else len(block) // chunk_rows * chunk_rows
            outcomes[written : written + size] = block[:size]
            if log_prob is not None:
                log_prob[written : written + size] = block_log_prob[:size]
            written += size
            pending = [(block[size:], block_log_prob[size:])]
        bar.update(rows)
    if row != n_records:
        raise QtomoError(f"{row} records were written; expected n_records = {n_records}")


def _write_reference(file: h5py.File, reference: dict) -> None:
    """``/reference/<name>`` for each checked reference; the MPS as ``/reference/mps/B_i``."""
    for name, value in reference.items():
        if name == "mps":
            for site, tensor in enumerate(value):
                file.create_dataset(f"reference/mps/B_{site}",
                                    data=np.asarray(tensor, dtype=np.complex128))
        else:
            file.create_dataset(f"reference/{name}", data=value)


def _check_chunk(outcomes: np.ndarray, log_prob: np.ndarray, L: int, povm: POVM | PerQubitPOVM,
                 row: int) -> int:
    check_outcomes(outcomes, L, povm.K, povm.name, first_row=row)
    if log_prob.dtype.kind not in "fiu" or log_prob.shape != outcomes.shape[:1]:
        raise QtomoError(f"expected real log_prob of shape ({outcomes.shape[0]},) beside outcomes "
                         f"{outcomes.shape}; got {log_prob.dtype} {log_prob.shape}")
    check_log_prob(log_prob, first_row=row)
    return outcomes.shape[0]


def check_log_prob(log_prob: np.ndarray, first_row: int = 0) -> None:
    """Raise QtomoError unless every ln P(a) is finite and ≤ 0 (P(a) in (0, 1], to 1e-9).

    Example:
        >>> check_log_prob(np.array([-1.0, 0.5]), first_row=4)
        Traceback (most recent call last):
        ...
        qtomo.errors.QtomoError: ln P must be finite and <= 0 (0 < P <= 1); got 0.5 in row 5
    """
    bad = ~(np.isfinite(log_prob) & (log_prob <= _LOG_PROB_MAX))
    if bad.any():
        row = int(np.argmax(bad))
        raise QtomoError(f"ln P must be finite and <= 0 (0 < P <= 1); got {log_prob[row]} in row "
                         f"{first_row + row}")


def _is_integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_attrs(attrs: dict) -> None:
    """Raise QtomoError unless the root attributes a dataset uses have their types and values.

    Required: ``L`` (integer ≥ 1), ``povm`` (text) and :data:`_REQUIRED_ATTRS`. Optional, checked
    when present: ``state``, ``product_state``, ``qtomo_version``, ``warning``, ``source``
    (text); ``seed`` (integer); ``method`` (``exact`` or ``mps``); ``J``, ``h`` (finite numbers);
    ``boundary`` (``open`` or ``periodic``); ``readout_error`` ((e0, e1) or L rows of them, each
    in [0, 0.5)); ``chi_max`` (integer ≥ 1); ``delta`` (finite), ``depth`` (integer ≥ 1),
    ``circuit`` (text); ``truncation_error``,
    ``svd_min``, ``energy_tol`` (finite, ≥ 0). A TFIM (``state = "tfim"``) needs ``J``, ``h`` and
    ``boundary`` that make a valid :class:`~qtomo.states.hamiltonians.TFIM` of L qubits, an
    XXZ chain (``state = "xxz"``) ``J`` and ``delta``.

    Args:
        attrs: attribute name → Python value (as :func:`read_dataset` returns them).

    Example:
        >>> check_attrs({"L": 4, "povm": "pauli4", "state": "tfim", "seed": 0,
        ...              "method": "exact", "J": 1.0, "h": "strong", "boundary": "open"})
        Traceback (most recent call last):
        ...
        qtomo.errors.QtomoError: attribute h must be a finite number; got 'strong'
    """
    from qtomo.states.hamiltonians import BOUNDARIES
    from qtomo.states.registry import dataset_hamiltonian

    missing = [key for key in ("L", "povm", *_REQUIRED_ATTRS) if key not in attrs]
    if missing:
        raise QtomoError(f"missing root attribute(s) {', '.join(dict.fromkeys(missing))}")
    L = attrs["L"]
    if not _is_integer(L) or L < 1:
        raise QtomoError(f"attribute L must be a positive integer; got {L!r}")
    checks = {
        **dict.fromkeys(("povm", "state", "product_state", "qtomo_version", "warning", "source"),
                        (lambda v: isinstance(v, str), "text")),
        "seed": (_is_integer, "an integer"),
        "method": (lambda v: v in ("exact", "mps"), "'exact' or 'mps'"),
        "J": (_is_real, "a finite number"),
        "delta": (_is_real, "a finite number"),
        "depth": (lambda v: _is_integer(v) and v >= 1, "an integer >= 1"),
        "circuit": (lambda v: isinstance(v, str), "text"),
        "h": (_is_real, "a finite number"),
        "boundary": (lambda v: v in BOUNDARIES, f"one of {', '.join(BOUNDARIES)}"),
        "chi_max": (lambda v: _is_integer(v) and v >= 1, "an integer >= 1"),
        **dict.fromkeys(("truncation_error", "svd_min", "energy_tol"),
                        (lambda v: _is_real(v) and v >= 0, "a finite number >= 0")),
    }
    for key, (ok, expected) in checks.items():
        if key in attrs and not ok(attrs[key]):
            raise QtomoError(f"attribute {key} must be {expected}; got {attrs[key]!r}")
    if "readout_error" in attrs:
        try:
            readout_povms(attrs["readout_error"], L)
        except QtomoError as error:
            raise QtomoError(f"attribute readout_error: {error}") from None
    dataset_hamiltonian(attrs, L)  # its attributes make a valid Hamiltonian


_PAULI_BOUND = 1 + 1e-8
_NORM_TOL = 1e-8
#: the dense ψ (16 · 2^L bytes) is read for L ≤ 24 only, the dense ρ for L ≤ 12; larger states
#: are stored as MPS
_DENSE_MAX_L = {"psi": 24, "rho": 12}


def check_reference(name: str, value, L: int):
    """A reference value checked and converted as stored: float64 or complex128 arrays, or for
    ``"mps"`` a list of complex128 tensors; other names pass unchanged.

    Checks: the shape of the table in the module docstring; real values for everything but ψ, ρ
    and the MPS; finite entries; |⟨X_i⟩|, |⟨Z_i⟩|, |⟨Z_iZ_j⟩|, |⟨X_iX_j⟩| ≤ 1, bond entropies
    ≥ 0 and the purity in [0, 1] (to 1e-8); ‖ψ‖ = 1 (to 1e-8); ρ Hermitian with unit trace (to
    1e-8); MPS tensors that chain and are right-canonical, so that ⟨ψ|ψ⟩ = 1
    (:class:`~qtomo.states.mps.MPSState`).

    Raises:
        QtomoError: naming the reference and the problem.

    Example:
        >>> check_reference("psi", np.array([1.0, 1.0, 0.0, 0.0]), 2)
        Traceback (most recent call last):
        ...
        qtomo.errors.QtomoError: /reference/psi must have norm 1; got 1.41421
    """
    if name == "mps":
        if isinstance(value, str) or not isinstance(value, list | tuple):
            raise QtomoError(f"/reference/mps must be a list of L = {L} tensors")
        if len(value) != L:
            raise QtomoError(f"/reference/mps must hold L = {L} tensors; got {len(value)}")
        tensors = [_numeric(f"mps/B_{i}", tensor, "fc") for i, tensor in enumerate(value)]
        from qtomo.states.mps import MPSState  # torch is imported only for MPS references

        try:
            return MPSState(tensors).mps
        except QtomoError as error:
            raise QtomoError(f"/reference/mps: {error}") from None
    if name not in _REFERENCE_SHAPES:
        return value
    if L > _DENSE_MAX_L.get(name, L):
        raise QtomoError(f"/reference/{name} is kept for L <= {_DENSE_MAX_L[name]}; got L = {L}")
    array = _numeric(name, value, "fc" if name in _DENSE_MAX_L else "fiu")
    shape = _REFERENCE_SHAPES[name](L)
    if array.shape != shape:
        raise QtomoError(f"/reference/{name} must have shape {shape}; got {array.shape}")
    if name == "psi":
        norm = float(np.linalg.norm(array))
        if abs(norm - 1) > _NORM_TOL:
            raise QtomoError(f"/reference/psi must have norm 1; got {norm:.6g}")
        return array.astype(np.complex128)
    if name == "rho":
        trace = complex(np.trace(array))
        if abs(trace - 1) > _NORM_TOL or not np.allclose(array, array.conj().T, rtol=0,
                                                          atol=_NORM_TOL):
            raise QtomoError(f"/reference/rho must be Hermitian with trace 1; got trace "
                             f"{trace:.6g}")
        return array.astype(np.complex128)
    if name == "purity" and not -_NORM_TOL <= float(array) <= 1 + _NORM_TOL:
        raise QtomoError(f"/reference/purity must lie in [0, 1]; got {float(array):.6g}")
    if name == "entropy" and array.size and array.min() < -_NORM_TOL:
        raise QtomoError(f"/reference/entropy must be >= 0; got {array.min():.6g}")
    if name in ("X", "Z", "XX", "ZZ") and array.size and np.abs(array).max() > _PAULI_BOUND:
        raise QtomoError(f"/reference/{name} holds a Pauli expectation outside [-1, 1]: "
                         f"{array.flat[np.abs(array).argmax()]:.6g}")
    return array.astype(np.float64)


def _numeric(name: str, value, kinds: str) -> np.ndarray:
    """``value`` as a numpy array of one of the dtype ``kinds`` with finite entries."""
    array = np.asarray(value)
    if array.dtype.kind not in kinds:
        expected = "complex or real" if "c" in kinds else "real"
        raise QtomoError(f"/reference/{name} must hold {expected} numbers; got {array.dtype}")
    if not np.all(np.isfinite(array)):
        raise QtomoError(f"/reference/{name} holds non-finite values")
    return array


@dataclass(frozen=True)
class Dataset:
    """A validated dataset file; rows are read from disk on demand.

    The file stays open from :func:`read_dataset` until :meth:`close` (or the end of a ``with``
    block, or garbage collection), so every row read comes from the file that was checked even
    if its path is replaced meanwhile.

    Attributes:
        path: the file.
        L: qubits per record.  K: outcomes per qubit.  povm: the stored POVM.
        n_records: N.  has_log_prob: whether ``/log_prob`` is present.
        attrs: the root attributes as Python values (``source`` filled in for older files).
        reference: ``/reference`` arrays; ``"mps"`` is a list of (χl, 2, χr) tensors.
        noise: the local channel of the root attributes (``noise.active`` is False without one).
    """

    path: Path
    L: int
    K: int
    povm: POVM | PerQubitPOVM
    n_records: int
    has_log_prob: bool
    attrs: dict
    reference: dict
    file: h5py.File = field(repr=False, compare=False)

    def __enter__(self) -> Dataset:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Close the file; rows can no longer be read."""
        self.file.close()

    @property
    def noise(self):
        """The channel on every qubit, a :class:`qtomo.states.noise.LocalNoise`."""
        from qtomo.states.noise import LocalNoise  # torch is imported only when asked

        return LocalNoise.from_attrs(self.attrs)

    def outcomes(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Records ``start:stop``; uint8 (n, L)."""
        return self.file["outcomes"][start:stop]

    def log_prob(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """ln P of records ``start:stop`` under the generating state; float64 (n,)."""
        if not self.has_log_prob:
            raise DataFormatError(f"{self.path}: has no /log_prob (exact ln P of each record)")
        return self.file["log_prob"][start:stop]

    def iter_chunks(
        self, size: int = READ_CHUNK, start: int = 0, stop: int | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """Yield (outcomes uint8 (b, L), log_prob float64 (b,) or None) over rows start:stop."""
        stop = self.n_records if stop is None else min(stop, self.n_records)
        for begin in range(start, stop, size):
            end = min(begin + size, stop)
            log_prob = self.file["log_prob"][begin:end] if self.has_log_prob else None
            yield self.file["outcomes"][begin:end], log_prob


def as_dataset(dataset: Dataset | str | os.PathLike) -> Dataset:
    """``dataset`` itself, or the dataset file it names opened with :func:`read_dataset`: the
    API's functions take either."""
    return dataset if isinstance(dataset, Dataset) else read_dataset(dataset)


def read_dataset(path: str | os.PathLike) -> Dataset:
    """Open and validate a dataset file; the returned :class:`Dataset` keeps it open.

    Checked: format and version; the root attributes (:func:`check_attrs`); shapes and dtypes
    of ``/outcomes``, ``/log_prob`` and ``/povm/elements``; the POVM itself; every outcome in
    0..K−1 and every ln P finite and ≤ 0 (read in chunks); each reference
    (:func:`check_reference`).

    Raises:
        DataFormatError: one line naming the file and the problem.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(missing_file(path, "dataset file"))
    leftover = describe_leftover(path)
    if leftover is not None:
        raise DataFormatError(f"{path}: {leftover}")
    try:
        file = h5py.File(path, "r")
    except OSError:
        raise DataFormatError(f"{path}: not a readable HDF5 file (truncated or foreign)") from None
    try:
        return _validated(path, file)
    except DataFormatError:
        file.close()
        raise
    except QtomoError as error:
        file.close()
        raise DataFormatError(f"{path}: {error}") from None
    except (KeyError, OSError, ValueError, TypeError, AttributeError, RuntimeError) as error:
        # h5py's errors for a damaged file (RuntimeError: "ran off end of input buffer", …)
        file.close()
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DataFormatError(f"{path}: unreadable dataset ({reason})") from None


def _validated(path: Path, file: h5py.File) -> Dataset:
    def fail(problem: str) -> DataFormatError:
        return DataFormatError(f"{path}: {problem}")

    attrs = {key: plain(value) for key, value in file.attrs.items()}
    if attrs.get("format") != FORMAT:
        raise fail(f"not a qtomo dataset (format attribute {attrs.get('format')!r}, "
                   f"expected {FORMAT!r})")
    if attrs.get("version") != VERSION:
        raise fail(f"unsupported format version {attrs.get('version')!r}; expected {VERSION}")
    check_attrs(attrs)
    attrs["source"] = check_source(attrs)
    if any(name in attrs for name in _CHANNELS):
        from qtomo.states.noise import LocalNoise

        try:
            LocalNoise.from_attrs(attrs)
        except QtomoError as error:
            raise fail(f"root attribute {error}") from None
    L = attrs["L"]

    elements = _dataset(file, "povm/elements", fail)
    if elements.dtype != np.complex128 or elements.shape[-2:] != (2, 2) or not (
            elements.ndim == 3 or (elements.ndim == 4 and elements.shape[0] == L)):
        raise fail(f"/povm/elements must be complex128 (K, 2, 2), or ({L}, K, 2, 2) per qubit; "
                   f"got {elements.dtype} {elements.shape}")
    try:
        povm = povm_from_elements(attrs["povm"], elements[()])
    except QtomoError as error:
        raise fail(str(error)) from None
    if povm.name in POVM_NAMES and povm != get_povm(povm.name):
        raise fail(f"/povm/elements do not match the registered POVM {povm.name!r}")

    outcomes = _dataset(file, "outcomes", fail)
    if outcomes.dtype != np.uint8 or outcomes.ndim != 2 or outcomes.shape[1] != L:
        raise fail(f"/outcomes must be uint8 (N, {L}); got {outcomes.dtype} {outcomes.shape}")
    n_records = outcomes.shape[0]
    if n_records < 1:
        raise fail("holds no records")
    has_log_prob = "log_prob" in file
    log_prob = _dataset(file, "log_prob", fail) if has_log_prob else None
    if has_log_prob and (log_prob.dtype != np.float64 or log_prob.shape != (n_records,)):
        raise fail(f"/log_prob must be float64 ({n_records},); got {log_prob.dtype} "
                   f"{log_prob.shape}")
    for begin in range(0, n_records, READ_CHUNK):
        check_outcomes(outcomes[begin : begin + READ_CHUNK], L, povm.K, povm.name,
                       first_row=begin)
        if has_log_prob:
            check_log_prob(log_prob[begin : begin + READ_CHUNK], first_row=begin)

    return Dataset(path, L, povm.K, povm, n_records, has_log_prob, attrs,
                   _read_reference(file, L, fail), file)


def _dataset(file: h5py.File, name: str, fail) -> h5py.Dataset:
    item = file.get(name)
    if not isinstance(item, h5py.Dataset):
        raise fail(f"missing /{name}" if item is None else f"/{name} is not an HDF5 dataset")
    return item


_REFERENCE_SHAPES = {
    "energy": lambda L: (),
    "X": lambda L: (L,),
    "Z": lambda L: (L,),
    "ZZ": lambda L: (L, L),
    "XX": lambda L: (L, L),
    "entropy": lambda L: (L - 1,),
    "psi": lambda L: (2**L,),
    "rho": lambda L: (2**L, 2**L),
    "purity": lambda L: (),
}


def _read_reference(file: h5py.File, L: int, fail) -> dict:
    reference: dict = {}
    group = file.get("reference")
    if group is None:
        return reference
    if not isinstance(group, h5py.Group):
        raise fail("/reference is not an HDF5 group")
    for name, item in group.items():
        if name == "mps":
            reference["mps"] = check_reference("mps", _read_mps(item, L, fail), L)
        elif name in _REFERENCE_SHAPES:
            shape = _REFERENCE_SHAPES[name](L)
            if L > _DENSE_MAX_L.get(name, L):
                raise fail(f"/reference/{name} is kept for L <= {_DENSE_MAX_L[name]}; got L = {L}")
            if not isinstance(item, h5py.Dataset) or item.shape != shape:
                found = item.shape if isinstance(item, h5py.Dataset) else "a group"
                raise fail(f"/reference/{name} must have shape {shape}; got {found}")
            reference[name] = check_reference(name, item[()], L)
    return reference


def _read_mps(group: h5py.Group, L: int, fail) -> list[np.ndarray]:
    names = [f"B_{i}" for i in range(L)]
    if not isinstance(group, h5py.Group) or sorted(group.keys()) != sorted(names):
        raise fail(f"/reference/mps must be a group holding B_0 … B_{L - 1}")
    items = [group[name] for name in names]
    if not all(isinstance(item, h5py.Dataset) for item in items):
        raise fail(f"/reference/mps must hold the arrays B_0 … B_{L - 1}")
    from qtomo.states.mps import check_mps_shapes  # torch is imported only for MPS references

    try:
        check_mps_shapes(items, L)  # from the shapes alone, before reading anything
    except QtomoError as error:
        raise fail(f"/reference/mps: {error}") from None
    return [item[()] for item in items]


