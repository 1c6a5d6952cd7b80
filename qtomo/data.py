"""The one reader and the one writer of qtomo's dataset file (HDF5, version 1).

Layout::

    /                    attrs: format="qtomo.povm-dataset", version=1, qtomo_version, source, L,
                         povm, and for simulated records state, seed, method and the state's
                         parameters (J, h, boundary, …)
    /outcomes            uint8 (N, L), chunked, gzip-compressed; row = one record a_0 … a_{L-1}
    /log_prob            float64 (N,), ln P(a) under the generating state (simulated records)
    /povm/elements       complex128 (K, 2, 2)
    /reference/energy    float64 ()        /reference/X, /reference/Z    float64 (L,)
    /reference/ZZ, /XX   float64 (L, L)    /reference/entropy            float64 (L-1,)
    /reference/psi       complex128 (2^L,) (exact path)
    /reference/rho       complex128 (2^L, 2^L), /reference/purity float64 () (exact path, noise)
    /reference/mps/B_i   complex128 (χ_l, 2, χ_r), right-canonical (MPS path and GHZ)

Measured data (``source = "imported:<format>"``, README "Measured data") has no generating state:
``/log_prob``, ``/reference`` and the attributes ``state``, ``seed``, ``method`` may be absent.
A file without ``source`` is a simulated file of an earlier qtomo.

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

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

import qtomo
from qtomo.atomic import atomic_output
from qtomo.errors import DataFormatError, QtomoError
from qtomo.povm import POVM, POVM_NAMES, get_povm
from qtomo.progress import progress_bar

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


def write_dataset(
    path: str | os.PathLike,
    *,
    povm: POVM,
    attrs: dict,
    n_records: int,
    chunks: Iterable[tuple[np.ndarray, np.ndarray]],
    reference: dict,
    quiet: bool = True,
) -> Path:
    """Stream records into a new dataset file at ``path``, atomically.

    Args:
        path: target file; its folder is created if needed.
        povm: the POVM the records were measured with; stored in ``/povm/elements``.
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
        QtomoError: on a chunk of the wrong shape, outcomes out of range, non-finite ln P, a row
            count different from ``n_records``, or a folder that cannot be written.
    """
    L = int(attrs["L"])
    attrs = {**attrs, "source": check_source(attrs)}
    if n_records < 1:
        raise QtomoError(f"a dataset needs at least one record; got n_records = {n_records}")
    target = Path(path)
    with atomic_output(target) as temporary, h5py.File(temporary, "w") as file:
        file.attrs.update(
            {"format": FORMAT, "version": VERSION, "qtomo_version": qtomo.__version__,
             "povm": povm.name}
        )
        file.attrs.update({key: value for key, value in attrs.items() if value is not None})
        chunk_rows = int(min(n_records, max(1, 2**20 // L)))
        outcomes = file.create_dataset(
            "outcomes", (n_records, L), dtype=np.uint8, chunks=(chunk_rows, L),
            compression="gzip", compression_opts=1,
        )
        log_prob = None
        row = 0
        with progress_bar(n_records, f"writing {target.name}", quiet=quiet, unit="rec") as bar:
            for chunk_outcomes, chunk_log_prob in chunks:
                chunk_outcomes = np.asarray(chunk_outcomes)
                if row == 0 and chunk_log_prob is not None:
                    log_prob = file.create_dataset("log_prob", (n_records,), dtype=np.float64,
                                                   chunks=(min(n_records, 2**16),))
                if (chunk_log_prob is None) != (log_prob is None):
                    found = "lacks" if log_prob is not None else "has"
                    raise QtomoError(f"chunk at row {row} {found} ln P; expected ln P in every "
                                     f"chunk or in none")
                if chunk_log_prob is None:
                    chunk_log_prob = np.zeros(len(chunk_outcomes))  # shape check only
                chunk_log_prob = np.asarray(chunk_log_prob, dtype=np.float64)
                rows = _check_chunk(chunk_outcomes, chunk_log_prob, L, povm, row)
                if row + rows > n_records:
                    raise QtomoError(f"more than the announced {n_records} records were written")
                outcomes[row : row + rows] = chunk_outcomes
                if log_prob is not None:
                    log_prob[row : row + rows] = chunk_log_prob
                row += rows
                bar.update(rows)
        if row != n_records:
            raise QtomoError(f"{row} records were written; expected n_records = {n_records}")
        file.create_dataset("povm/elements", data=povm.elements)
        for name, value in reference.items():
            if name == "mps":
                for site, tensor in enumerate(value):
                    file.create_dataset(f"reference/mps/B_{site}",
                                        data=np.asarray(tensor, dtype=np.complex128))
            else:
                value = np.asarray(value)
                dtype = np.complex128 if np.iscomplexobj(value) else np.float64
                file.create_dataset(f"reference/{name}", data=value.astype(dtype))
    return target


def _check_chunk(outcomes: np.ndarray, log_prob: np.ndarray, L: int, povm: POVM, row: int) -> int:
    if outcomes.ndim != 2 or outcomes.shape[1] != L or log_prob.shape != outcomes.shape[:1]:
        raise QtomoError(
            f"expected outcomes (b, {L}) with log_prob (b,); got {outcomes.shape} and "
            f"{log_prob.shape}"
        )
    if outcomes.size and (outcomes.min() < 0 or outcomes.max() >= povm.K):
        bad = int(np.argwhere((outcomes < 0) | (outcomes >= povm.K))[0, 0])
        raise QtomoError(
            f"outcomes must lie in 0..{povm.K - 1} for POVM {povm.name!r}; got "
            f"{outcomes[bad].max()} in row {row + bad}"
        )
    if not np.all(np.isfinite(log_prob)):
        raise QtomoError(f"non-finite ln P near row {row}; records must have P(a) > 0")
    return outcomes.shape[0]


@dataclass(frozen=True)
class Dataset:
    """A validated dataset file; rows are read from disk on demand.

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
    povm: POVM
    n_records: int
    has_log_prob: bool
    attrs: dict
    reference: dict

    @property
    def noise(self):
        """The channel on every qubit, a :class:`qtomo.states.noise.LocalNoise`."""
        from qtomo.states.noise import LocalNoise  # torch is imported only when asked

        return LocalNoise.from_attrs(self.attrs)

    def outcomes(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Records ``start:stop``; uint8 (n, L)."""
        with h5py.File(self.path, "r") as file:
            return file["outcomes"][start:stop]

    def log_prob(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """ln P of records ``start:stop`` under the generating state; float64 (n,)."""
        if not self.has_log_prob:
            raise DataFormatError(f"{self.path}: has no /log_prob (exact ln P of each record)")
        with h5py.File(self.path, "r") as file:
            return file["log_prob"][start:stop]

    def iter_chunks(
        self, size: int = READ_CHUNK, start: int = 0, stop: int | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """Yield (outcomes uint8 (b, L), log_prob float64 (b,) or None) over rows start:stop."""
        stop = self.n_records if stop is None else min(stop, self.n_records)
        with h5py.File(self.path, "r") as file:
            for begin in range(start, stop, size):
                end = min(begin + size, stop)
                log_prob = file["log_prob"][begin:end] if self.has_log_prob else None
                yield file["outcomes"][begin:end], log_prob


def read_dataset(path: str | os.PathLike) -> Dataset:
    """Open and validate a dataset file (format, version, shapes, dtypes, outcome range, ln P).

    Raises:
        DataFormatError: one line naming the file and the problem.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"{path}: no such dataset file")
    try:
        file = h5py.File(path, "r")
    except OSError:
        raise DataFormatError(f"{path}: not a readable HDF5 file (truncated or foreign)") from None
    try:
        with file:
            return _validated(path, file)
    except (KeyError, OSError, ValueError, TypeError) as error:
        raise DataFormatError(f"{path}: unreadable dataset ({error})") from None


def _validated(path: Path, file: h5py.File) -> Dataset:
    def fail(problem: str) -> DataFormatError:
        return DataFormatError(f"{path}: {problem}")

    attrs = {key: _plain(value) for key, value in file.attrs.items()}
    if attrs.get("format") != FORMAT:
        raise fail(f"not a qtomo dataset (format attribute {attrs.get('format')!r}, "
                   f"expected {FORMAT!r})")
    if attrs.get("version") != VERSION:
        raise fail(f"unsupported format version {attrs.get('version')!r}; expected {VERSION}")
    missing = [key for key in _REQUIRED_ATTRS if key not in attrs]
    if missing:
        raise fail(f"missing root attribute(s) {', '.join(missing)}")
    try:
        attrs["source"] = check_source(attrs)
    except QtomoError as error:
        raise fail(str(error)) from None
    L = attrs["L"]
    if not isinstance(L, int) or L < 1:
        raise fail(f"attribute L must be a positive integer; got {L!r}")

    if any(name in attrs for name in _CHANNELS):
        from qtomo.states.noise import LocalNoise

        try:
            LocalNoise.from_attrs(attrs)
        except QtomoError as error:
            raise fail(f"root attribute {error}") from None

    if "povm/elements" not in file:
        raise fail("missing /povm/elements")
    elements = file["povm/elements"]
    if elements.dtype != np.complex128 or elements.ndim != 3 or elements.shape[1:] != (2, 2):
        raise fail(f"/povm/elements must be complex128 (K, 2, 2); got {elements.dtype} "
                   f"{elements.shape}")
    try:
        povm = POVM(attrs["povm"], elements[()])
    except QtomoError as error:
        raise fail(str(error)) from None
    if povm.name in POVM_NAMES and povm != get_povm(povm.name):
        raise fail(f"/povm/elements do not match the registered POVM {povm.name!r}")

    if "outcomes" not in file:
        raise fail("missing /outcomes")
    outcomes = file["outcomes"]
    if outcomes.dtype != np.uint8 or outcomes.ndim != 2 or outcomes.shape[1] != L:
        raise fail(f"/outcomes must be uint8 (N, {L}); got {outcomes.dtype} {outcomes.shape}")
    n_records = outcomes.shape[0]
    if n_records < 1:
        raise fail("holds no records")
    has_log_prob = "log_prob" in file
    if has_log_prob and (file["log_prob"].dtype != np.float64
                         or file["log_prob"].shape != (n_records,)):
        raise fail(f"/log_prob must be float64 ({n_records},); got {file['log_prob'].dtype} "
                   f"{file['log_prob'].shape}")
    for begin in range(0, n_records, READ_CHUNK):
        block = outcomes[begin : begin + READ_CHUNK]
        if block.max() >= povm.K:
            bad = int(np.argwhere(block >= povm.K)[0, 0])
            raise fail(f"outcomes must lie in 0..{povm.K - 1} for POVM {povm.name!r}; got "
                       f"{int(block[bad].max())} in row {begin + bad}")
        if has_log_prob and not np.all(np.isfinite(file["log_prob"][begin : begin + READ_CHUNK])):
            raise fail(f"/log_prob holds non-finite values in rows {begin}..")

    return Dataset(path, L, povm.K, povm, n_records, has_log_prob, attrs,
                   _read_reference(file, L, fail))


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
    for name, item in group.items():
        if name == "mps":
            reference["mps"] = _read_mps(item, L, fail)
        elif name in _REFERENCE_SHAPES:
            if item.shape != _REFERENCE_SHAPES[name](L):
                raise fail(f"/reference/{name} must have shape {_REFERENCE_SHAPES[name](L)}; "
                           f"got {item.shape}")
            reference[name] = item[()]
    return reference


def _read_mps(group: h5py.Group, L: int, fail) -> list[np.ndarray]:
    names = [f"B_{i}" for i in range(L)]
    if sorted(group.keys()) != sorted(names):
        raise fail(f"/reference/mps must hold B_0 … B_{L - 1}")
    tensors = [group[name][()] for name in names]
    from qtomo.states.mps import check_mps_shapes  # torch is imported only for MPS references

    try:
        check_mps_shapes(tensors, L)
    except QtomoError as error:
        raise fail(f"/reference/mps: {error}") from None
    return [np.asarray(t, dtype=np.complex128) for t in tensors]


def _plain(value):
    """HDF5 attribute → Python value (bytes → str, numpy scalars → int/float/bool)."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value
