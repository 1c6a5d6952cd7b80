"""Other tools' measured data: import into ``pauli6`` records, export back (docs/measured-data.md
"Measured data").

A Pauli-basis shot measures qubit i in basis b_i ∈ {X, Y, Z} and reads bit r_i, with r = 0 the
eigenvalue +1 of the measured Pauli. It is the ``pauli6`` record

    a_i = 2·{Z: 0, X: 1, Y: 2}[b_i] + r_i        (0, 1, +, −, +i, −i: docs/conventions.md
    "Conventions")

when every qubit's basis is drawn uniformly and independently; :func:`bases_uniformity` tests
that. Formats (one reader and, where it exists, one writer each; qubit 0 first unless stated):

==================  ==========================================================================
``pauli-shots``     ``.npz`` with ``bases`` (N, L) letters X/Y/Z or integers 0/1/2 = X/Y/Z and
                    ``bits`` (N, L) 0/1
``qucumber``        two whitespace text files, samples (N rows of L bits 0/1) and bases
                    (N rows of L letters), as QuCumber's ``load_data`` reads them
``qiskit-counts``   JSON ``{basis label: {bitstring: count}}``, label and bitstring both
                    little-endian (rightmost character = qubit 0) as ``Result.get_counts()``
``netket``          ``.npz`` with ``sigma`` (N, L) in ±1 (σ = +1: eigenvalue +1) and ``bases``
                    (N,) strings such as ``"XZY"``
``aqt``             ``.npy`` integers (N, L), Cha et al.'s Pauli-6 order |0⟩,|+⟩,|+i⟩,|1⟩,|−⟩,|−i⟩
``genmodel``        POVM_GENMODEL's ``data.txt`` (N rows of L integers) for their POVM
                    ``4Pauli``, ``Tetra`` or ``Pauli`` (|+⟩,|−⟩,|+i⟩,|−i⟩,|0⟩,|1⟩), and
                    optionally their MPS files ``index.txt``, ``tensor.txt``
==================  ==========================================================================

Example:
    >>> shots_to_outcomes(np.array([["Z", "X", "Y"]]), np.array([[1, 0, 1]])).tolist()
    [[1, 2, 5]]
    >>> outcomes_to_shots(np.array([[1, 2, 5]]))[0].tolist()
    [['Z', 'X', 'Y']]
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qtomo.atomic import atomic_output, check_outputs
from qtomo.data import IMPORTED, Dataset, read_dataset, write_dataset
from qtomo.errors import QtomoError
from qtomo.guards import (
    check_array_header,
    check_import_size,
    check_sparse_positions,
    check_tensor_shape,
    check_text_width,
    file_kind,
    missing_file,
    unique_keys,
)
from qtomo.pauli_records import BasisCoverage, has_settings
from qtomo.povm import POVM, get_povm
from qtomo.readout import readout_povms

__all__ = [
    "EXPORT_FORMATS",
    "FORMATS",
    "GENMODEL_POVMS",
    "BiasedBasesWarning",
    "IncompleteBasesWarning",
    "Records",
    "bases_uniformity",
    "export_records",
    "genmodel_tfim_sign_map",
    "import_records",
    "outcomes_to_shots",
    "read_genmodel_mps",
    "shots_to_outcomes",
]

LETTERS = "ZXY"  # basis code c ↔ letter; outcome = 2c + bit
_CODE = {letter: code for code, letter in enumerate(LETTERS)}
BASES_ALPHA = 1e-3  # family-wise false-refusal rate of the uniform-bases test
_CHUNK = 2**16


class BiasedBasesWarning(UserWarning):
    """Imported bases are not uniform and independent; kept on request (the file says so)."""


class IncompleteBasesWarning(UserWarning):
    """Imported Pauli-basis records miss settings: some expectations are not determined (the
    file's ``undetermined`` attribute names them)."""


@dataclass(frozen=True)
class Records:
    """What a reader returns: records in qtomo's outcome convention and what goes beside them.

    Attributes:
        outcomes: uint8 (N, L), records of ``povm``.
        povm: the ideal POVM of the records (``pauli6`` for Pauli-basis shots).
        reference: ``/reference`` entries the source provides (``"mps"`` for genmodel).
        attrs: extra root attributes.
    """

    outcomes: np.ndarray
    povm: POVM
    reference: dict = field(default_factory=dict)
    attrs: dict = field(default_factory=dict)


# --- the one outcome convention -------------------------------------------------------------

def shots_to_outcomes(bases: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """``pauli6`` records a = 2·{Z: 0, X: 1, Y: 2}[basis] + bit.

    Args:
        bases: (N, L) letters ``"X"``, ``"Y"``, ``"Z"`` (str array).
        bits: (N, L) integers 0/1, 0 = eigenvalue +1.

    Returns:
        uint8 (N, L).

    Raises:
        QtomoError: for another letter, another bit, or shapes that differ.
    """
    bases, bits = np.asarray(bases), np.asarray(bits)
    if bases.shape != bits.shape or bases.ndim != 2:
        raise QtomoError(f"bases and bits must be two (N, L) arrays of one shape; got "
                         f"{bases.shape} and {bits.shape}")
    codes = np.full(bases.shape, 255, dtype=np.uint8)
    for letter, code in _CODE.items():
        codes[bases == letter] = code
    if np.any(codes == 255):
        row, column = np.argwhere(codes == 255)[0]
        raise QtomoError(f"basis letters must be X, Y or Z; got {str(bases[row, column])!r} in "
                         f"row {row}, qubit {column}")
    if not (np.issubdtype(bits.dtype, np.integer) or bits.dtype == bool):
        raise QtomoError(f"bits must be integers 0/1; got dtype {bits.dtype}")
    bad = (bits != 0) & (bits != 1)
    if np.any(bad):
        row, column = np.argwhere(bad)[0]
        raise QtomoError(f"bits must be 0 or 1; got {bits[row, column]} in row {row}, "
                         f"qubit {column}")
    return (2 * codes + bits.astype(np.uint8)).astype(np.uint8)


def outcomes_to_shots(outcomes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The inverse of :func:`shots_to_outcomes`: (bases ``<U1`` (N, L), bits uint8 (N, L))."""
    outcomes = np.asarray(outcomes)
    return np.array(list(LETTERS))[outcomes // 2], (outcomes % 2).astype(np.uint8)


def bases_uniformity(codes: np.ndarray) -> dict:
    """χ² tests that every qubit's basis is uniform and independent of every other's.

    Per site, the counts of X, Y, Z against N/3 (2 degrees of freedom); per pair (i, j), the
    3×3 joint counts against N/9 (8 degrees of freedom). With Bonferroni's correction over the
    L + L(L−1)/2 tests the records are refused when the smallest p-value is below
    :data:`BASES_ALPHA` / (number of tests), so uniform bases are refused with probability at
    most 10⁻³. Equal shots in every one of the 3^L settings give χ² = 0.

    Args:
        codes: (N, L) integer basis codes 0, 1, 2.

    Returns:
        ``{"uniform": bool, "worst": "site i" | "pair (i, j)", "chi2", "dof", "p_value",
        "threshold"}`` for the test with the smallest p-value.

    Example:
        >>> codes = np.array([[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2], [2, 0], [2, 1],
        ...                   [2, 2]])
        >>> bases_uniformity(codes)["uniform"], bases_uniformity(codes[:, [0, 0]])["worst"]
        (True, 'pair (0, 1)')
    """
    from scipy.stats import chi2

    codes = np.asarray(codes)
    N, L = codes.shape
    joint = np.zeros((3 * L, 3 * L))
    for start in range(0, N, _CHUNK):  # one-hot rows in chunks: memory O(chunk · L)
        block = codes[start : start + _CHUNK]
        onehot = np.zeros((len(block), 3 * L), dtype=np.float32)  # (b, 3L); counts < 2^24
        onehot[np.arange(len(block))[:, None], 3 * np.arange(L) + block] = 1.0
        joint += (onehot.T @ onehot).astype(np.float64)
    joint = joint.reshape(L, 3, L, 3).transpose(0, 2, 1, 3)  # (L, L, 3, 3)
    site = np.einsum("iiaa->ia", joint)  # (L, 3)
    tests = [(f"site {i}", float(((site[i] - N / 3) ** 2).sum() / (N / 3)), 2) for i in range(L)]
    tests += [(f"pair ({i}, {j})", float(((joint[i, j] - N / 9) ** 2).sum() / (N / 9)), 8)
              for i in range(L) for j in range(i + 1, L)]
    p_values = [chi2.sf(value, dof) for _, value, dof in tests]
    worst = int(np.argmin(p_values))
    threshold = BASES_ALPHA / len(tests)
    name, value, dof = tests[worst]
    return {"uniform": bool(p_values[worst] >= threshold), "worst": name, "chi2": value,
            "dof": dof, "p_value": float(p_values[worst]), "threshold": threshold}


# --- text and array helpers -----------------------------------------------------------------

def _rows_ragged(path: Path) -> list[list[str]]:
    """Whitespace-separated tokens per non-empty line; refuses an empty file."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise QtomoError(f"{path}: cannot read it as text ({error})") from None
    rows = [line.split() for line in text.splitlines() if line.strip()]
    if not rows:
        raise QtomoError(f"{path}: empty file; expected one entry per line")
    return rows


def _table(path: Path, numbers: bool) -> np.ndarray:
    """A whitespace text table (one row per non-empty line) as float64 or str (n, L).

    numpy's C reader takes large files (a whole 10^6 × 50 import: 38 s, docs/measured-data.md
    "Measured data"); a file it refuses is re-read line by line to name the first bad row.
    """
    check_text_width(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data"
            table = np.loadtxt(path, dtype=np.float64 if numbers else str, ndmin=2)
    except (ValueError, OSError, UnicodeDecodeError):
        table = None
    if table is not None and table.size:
        return table
    rows = _rows_ragged(path)  # an empty or unreadable file fails here
    width = len(rows[0])
    for number, row in enumerate(rows):
        if len(row) != width:
            raise QtomoError(f"{path}: rows of different lengths: row 0 has {width} entries, "
                             f"row {number} has {len(row)}")
    for number, row in enumerate(rows):
        for column, token in enumerate(row):
            try:
                float(token)
            except ValueError:
                raise QtomoError(f"{path}: entries must be numbers; got {token!r} in row "
                                 f"{number}, column {column}") from None
    raise QtomoError(f"{path}: not a table of {'numbers' if numbers else 'letters'}")


def _integers(path: Path, values: np.ndarray, what: str) -> np.ndarray:
    """Numbers as integers; floats such as 1.0 or 0.000e+00 (np.savetxt) are accepted."""
    values = np.asarray(values, dtype=np.float64)
    bad = ~(np.isfinite(values) & (values == np.round(values)))
    if np.any(bad):
        row, column = np.argwhere(bad)[0]
        raise QtomoError(f"{path}: {what} must be integers; got {values[row, column]} in row "
                         f"{row}, column {column}")
    return values.astype(np.int64)


def _load_arrays(path: Path, keys: Sequence[str]) -> list[np.ndarray]:
    if file_kind(path) != "a zip archive (.npz)":
        raise QtomoError(f"{path}: not a .npz archive (it is {file_kind(path)}); expected one "
                         f"with the arrays {', '.join(keys)}")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise QtomoError(f"{path}: not a readable .npz archive ({error})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise QtomoError(f"{path}: not a readable .npz archive (a single array)")
    with archive:
        missing = [key for key in keys if key not in archive.files]
        if missing:
            raise QtomoError(f"{path}: missing array(s) {', '.join(missing)}; found "
                             f"{', '.join(archive.files) or 'none'}")
        try:
            for key in keys:  # np.savez stores the array "key" as the member "key.npy"
                member = f"{key}.npy" if f"{key}.npy" in archive.zip.namelist() else key
                with archive.zip.open(member) as handle:
                    check_array_header(path, handle, key)
            return [archive[key] for key in keys]
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as error:
            raise QtomoError(f"{path}: not a readable .npz archive ({error})") from None


def _nonempty(array: np.ndarray, path: Path) -> np.ndarray:
    if array.size == 0:
        raise QtomoError(f"{path}: empty; expected at least one record")
    return array


@contextlib.contextmanager
def _written(path: Path, mode: str = "w"):
    with atomic_output(path) as temporary, open(temporary, mode) as handle:
        yield handle


# --- the formats ----------------------------------------------------------------------------

def _read_pauli_shots(files: Sequence[Path]) -> Records:
    path = files[0]
    bases, bits = _load_arrays(path, ("bases", "bits"))
    if bases.ndim != 2 or bits.shape != bases.shape:
        raise QtomoError(f"{path}: bases and bits must be (N, L) arrays of one shape; got "
                         f"{bases.shape} and {bits.shape}")
    _nonempty(bases, path)
    if np.issubdtype(bases.dtype, np.integer):
        if bases.min() < 0 or bases.max() > 2:
            raise QtomoError(f"{path}: integer bases must be 0, 1, 2 (= X, Y, Z); got "
                             f"{bases.min() if bases.min() < 0 else bases.max()}")
        bases = np.array(list("XYZ"))[bases]
    return Records(shots_to_outcomes(bases.astype(str), bits), get_povm("pauli6"))


def _write_pauli_shots(outcomes: np.ndarray, out: Path) -> list[Path]:
    bases, bits = outcomes_to_shots(outcomes)
    with _written(out, "wb") as handle:
        np.savez_compressed(handle, bases=bases, bits=bits)
    return [out]


def _read_qucumber(files: Sequence[Path]) -> Records:
    samples_path, bases_path = files
    bits = _integers(samples_path, _table(samples_path, numbers=True), "samples")
    bases = _table(bases_path, numbers=False)
    if bases.shape != bits.shape:
        raise QtomoError(f"{bases_path}: {bases.shape[0]} rows of {bases.shape[1]} bases; the "
                         f"samples file has {bits.shape[0]} rows of {bits.shape[1]} bits")
    return Records(shots_to_outcomes(bases, bits), get_povm("pauli6"))


def _qucumber_bases_path(out: Path) -> Path:
    return out.with_name(f"{out.stem}_bases{out.suffix}")


def _write_qucumber(outcomes: np.ndarray, out: Path) -> list[Path]:
    bases, bits = outcomes_to_shots(outcomes)
    bases_out = _qucumber_bases_path(out)
    with _written(out) as samples_file, _written(bases_out) as bases_file:
        np.savetxt(samples_file, bits, fmt="%d")
        np.savetxt(bases_file, bases, fmt="%s")
    return [out, bases_out]


def _read_qiskit_counts(files: Sequence[Path]) -> Records:
    path = files[0]
    try:
        counts = json.loads(path.read_text(), object_pairs_hook=unique_keys(path))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise QtomoError(f"{path}: not a readable JSON file ({error})") from None
    if not isinstance(counts, dict) or not counts:
        raise QtomoError(f"{path}: expected a non-empty JSON object {{basis label: "
                         f"{{bitstring: count}}}}")
    blocks, L, total = [], None, 0
    for label, table in counts.items():
        if not isinstance(table, dict):
            raise QtomoError(f"{path}: counts of basis label {label!r} must be an object "
                             f"{{bitstring: count}}")
        L = len(label) if L is None else L
        if len(label) != L:
            raise QtomoError(f"{path}: basis label {label!r} has {len(label)} qubits; the first "
                             f"label has {L}")
        for key, count in table.items():
            bitstring = key.replace(" ", "")  # qiskit separates classical registers by spaces
            if len(bitstring) != L:
                raise QtomoError(f"{path}: bitstring {key!r} has {len(bitstring)} bits; its "
                                 f"basis label {label!r} has {L}")
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise QtomoError(f"{path}: count of {key!r} in {label!r} must be a "
                                 f"non-negative integer; got {count!r}")
            if set(bitstring) - {"0", "1"}:
                raise QtomoError(f"{path}: bitstring {key!r} must hold only 0 and 1")
            total += count
            check_import_size(path, total, L)
            # little-endian: the rightmost character is qubit 0
            row = shots_to_outcomes(np.array([list(label[::-1])]),
                                    np.array([[int(bit) for bit in bitstring[::-1]]]))
            blocks.append(np.repeat(row, count, axis=0))
    outcomes = np.concatenate(blocks) if blocks else np.zeros((0, L), np.uint8)
    return Records(_nonempty(outcomes, path), get_povm("pauli6"))


def _write_qiskit_counts(outcomes: np.ndarray, out: Path) -> list[Path]:
    bases, bits = outcomes_to_shots(outcomes)
    rows, counts = np.unique(np.concatenate([bases, bits.astype(str)], axis=1), axis=0,
                             return_counts=True)
    L = outcomes.shape[1]
    table: dict[str, dict[str, int]] = {}
    for row, count in zip(rows, counts, strict=True):
        label, bitstring = "".join(row[:L][::-1]), "".join(row[L:][::-1])
        table.setdefault(label, {})[bitstring] = int(count)
    with _written(out) as handle:
        json.dump(table, handle, indent=1, sort_keys=True)
    return [out]


def _read_netket(files: Sequence[Path]) -> Records:
    path = files[0]
    sigma, bases = _load_arrays(path, ("sigma", "bases"))
    if sigma.ndim != 2 or bases.shape != sigma.shape[:1]:
        raise QtomoError(f"{path}: expected sigma (N, L) and bases (N,); got {sigma.shape} and "
                         f"{bases.shape}")
    _nonempty(sigma, path)
    bases = bases.astype(str)
    lengths = np.char.str_len(bases)
    if np.any(lengths != sigma.shape[1]):
        row = int(np.argmax(lengths != sigma.shape[1]))
        raise QtomoError(f"{path}: basis string {str(bases[row])!r} in row {row} has "
                         f"{lengths[row]} letters; sigma has L = {sigma.shape[1]}")
    if np.any((sigma != 1) & (sigma != -1)):
        row, column = np.argwhere((sigma != 1) & (sigma != -1))[0]
        raise QtomoError(f"{path}: sigma must be +1 or -1; got {sigma[row, column]} in row "
                         f"{row}, qubit {column}")
    # strings of length L in a wider dtype (<U5 for L = 3) are cast to exactly L letters first
    letters = bases.astype(f"<U{sigma.shape[1]}").view("<U1").reshape(sigma.shape)
    return Records(shots_to_outcomes(letters, ((1 - sigma.astype(np.int64)) // 2)),
                   get_povm("pauli6"))


def _write_netket(outcomes: np.ndarray, out: Path) -> list[Path]:
    bases, bits = outcomes_to_shots(outcomes)
    strings = np.array(["".join(row) for row in bases])
    with _written(out, "wb") as handle:
        np.savez_compressed(handle, sigma=(1 - 2 * bits.astype(np.int8)), bases=strings)
    return [out]


# Cha et al.'s Pauli-6 order |0⟩,|+⟩,|+i⟩,|1⟩,|−⟩,|−i⟩ → ours |0⟩,|1⟩,|+⟩,|−⟩,|+i⟩,|−i⟩
_AQT_TO_OURS = np.array([0, 2, 4, 1, 3, 5], dtype=np.uint8)


def _read_aqt(files: Sequence[Path]) -> Records:
    path = files[0]
    if file_kind(path) != "a .npy array":
        raise QtomoError(f"{path}: not a .npy array (it is {file_kind(path)}); expected integer "
                         f"records (N, L)")
    with open(path, "rb") as handle:
        check_array_header(path, handle)
    try:
        records = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise QtomoError(f"{path}: not a readable .npy array ({error})") from None
    if not isinstance(records, np.ndarray):
        records.close()
        raise QtomoError(f"{path}: expected a .npy array of records; got an .npz archive")
    return Records(_relabel(_nonempty(records, path), _AQT_TO_OURS, path, "aqt"),
                   get_povm("pauli6"))


def _write_aqt(outcomes: np.ndarray, out: Path) -> list[Path]:
    with _written(out, "wb") as handle:
        np.save(handle, np.argsort(_AQT_TO_OURS)[outcomes].astype(np.int64))
    return [out]


def _relabel(records: np.ndarray, mapping: np.ndarray, path: Path, name: str) -> np.ndarray:
    if records.ndim != 2 or not np.issubdtype(records.dtype, np.integer):
        raise QtomoError(f"{path}: expected an integer (N, L) array; got {records.dtype} "
                         f"{records.shape}")
    if records.min() < 0 or records.max() >= len(mapping):
        bad = records.min() if records.min() < 0 else records.max()
        raise QtomoError(f"{path}: {name} outcomes must lie in 0..{len(mapping) - 1}; got {bad}")
    return mapping[records]


# POVM_GENMODEL's POVM names → (ours, map from their outcome index to ours)
GENMODEL_POVMS: dict[str, tuple[str, np.ndarray]] = {
    "4Pauli": ("pauli4", np.arange(4, dtype=np.uint8)),
    "Tetra": ("tetra", np.arange(4, dtype=np.uint8)),
    "Pauli": ("pauli6", np.array([2, 3, 4, 5, 0, 1], dtype=np.uint8)),
}


def _read_genmodel(files: Sequence[Path], povm: str | None = None,
                   tfim_sign_map: bool = False) -> Records:
    if povm not in GENMODEL_POVMS:
        raise QtomoError(f"genmodel records need --povm, one of {', '.join(GENMODEL_POVMS)} "
                         f"(their POVM names); got {povm!r}")
    if len(files) not in (1, 3):
        raise QtomoError(f"genmodel takes data.txt, optionally followed by index.txt and "
                         f"tensor.txt; got {len(files)} files")
    ours, mapping = GENMODEL_POVMS[povm]
    path = files[0]
    outcomes = _relabel(_integers(path, _table(path, numbers=True), "outcomes"), mapping, path,
                        povm)
    reference = {}
    if len(files) == 3:
        tensors = read_genmodel_mps(files[1], files[2])
        if len(tensors) != outcomes.shape[1]:
            raise QtomoError(f"{files[1]}: the MPS has {len(tensors)} sites; the records have "
                             f"L = {outcomes.shape[1]}")
        if tfim_sign_map:
            tensors, outcomes = genmodel_tfim_sign_map(tensors, outcomes, ours)
        reference["mps"] = tensors
    elif tfim_sign_map:
        raise QtomoError("--tfim-sign-map maps their MPS; give index.txt and tensor.txt too")
    return Records(outcomes, get_povm(ours), reference,
                   {"genmodel_povm": povm, "tfim_sign_map": tfim_sign_map or None})


def read_genmodel_mps(index: str | os.PathLike, tensor: str | os.PathLike) -> list[np.ndarray]:
    """POVM_GENMODEL's MPS files as right-canonical tensors (χ_l, 2, χ_r), unit norm.

    ``index.txt`` has one line per tensor: rank, number of non-zero entries, dimensions;
    ``tensor.txt`` lists each tensor's non-zero entries as 1-based indices and a value, in the
    leg order (right, physical) for the first tensor, (right, physical, left) in the bulk and
    (physical, left) for the last; blank lines between tensors are ignored.

    Args:
        index, tensor: the two files.

    Returns:
        L complex128 arrays (χ_l, 2, χ_r), χ_0 = χ_L = 1, right-canonical.

    Raises:
        QtomoError: for files that do not follow that layout.
    """
    index, tensor = Path(index), Path(tensor)
    lines = _rows_ragged(index)
    try:
        header = [(int(row[0]), int(row[1])) for row in lines]
        dims = [[int(value) for value in row[2:]] for row in lines]
    except (ValueError, IndexError):
        raise QtomoError(f"{index}: each line must hold integers: rank, number of non-zero "
                         f"entries, dimensions") from None
    entries = _rows_ragged(tensor)
    if len(dims) < 2:
        raise QtomoError(f"{index}: an MPS needs at least two tensors; got {len(dims)}")
    tensors, line = [], 0
    for site, ((rank, count), shape) in enumerate(zip(header, dims, strict=True)):
        expected_rank = 2 if site in (0, len(dims) - 1) else 3
        if rank != expected_rank or len(shape) != rank:
            raise QtomoError(f"{index}: tensor {site} must have rank {expected_rank} with its "
                             f"dimensions; got rank {rank} and dimensions {shape}")
        block = entries[line : line + count]
        if len(block) != count or any(len(entry) != rank + 1 for entry in block):
            raise QtomoError(f"{tensor}: tensor {site} needs {count} lines of {rank} indices "
                             f"and a value")
        line += count
        check_tensor_shape(index, site, shape)
        values = np.zeros(shape)
        try:
            positions = np.array([[int(x) - 1 for x in entry[:rank]] for entry in block],
                                 dtype=np.int64).reshape(count, rank)
            check_sparse_positions(tensor, site, positions, shape)
            values[tuple(positions.T)] = [float(entry[rank]) for entry in block]
        except (ValueError, OverflowError):
            raise QtomoError(f"{tensor}: tensor {site} has an index that is not an integer or "
                             f"a value that is not a number") from None
        if site == 0:
            values = values.T[None]  # (right, phys) → (1, phys, right)
        elif site == len(dims) - 1:
            values = values.T[:, :, None]  # (phys, left) → (left, phys, 1)
        else:
            values = values.transpose(2, 1, 0)  # (right, phys, left) → (left, phys, right)
        tensors.append(values.astype(np.complex128))
    if line != len(entries):
        raise QtomoError(f"{tensor}: {len(entries) - line} lines beyond the tensors {index} "
                         f"announces")
    from qtomo.states.mps import check_mps_shapes, right_canonical

    check_mps_shapes(tensors)
    return right_canonical(tensors)


# Their 1D TFIM MPS is the ground state of +ΣZZ + ΣX; U = ⊗_i Z_i ⊗_{i odd} X_i maps it to the
# ground state of −ΣZZ − ΣX. Conjugating the pauli6 elements by Z swaps ± and ±i; by X it swaps
# 0/1 and ±i: records relabel exactly. pauli4 and tetra are not closed under these maps.
_PAULI6_UNDER_Z = np.array([0, 1, 3, 2, 5, 4], dtype=np.uint8)
_PAULI6_UNDER_X = np.array([1, 0, 2, 3, 5, 4], dtype=np.uint8)


def genmodel_tfim_sign_map(tensors: Sequence[np.ndarray], outcomes: np.ndarray | None = None,
                           povm: str = "pauli6") -> tuple[list[np.ndarray], np.ndarray | None]:
    """|ψ⟩ → U|ψ⟩, U = ⊗_i Z_i · ⊗_{i odd} X_i, and the records measured on |ψ⟩ relabeled.

    POVM_GENMODEL's 1D TFIM state is the ground state of +ΣZZ + ΣX (⟨X_i⟩ < 0,
    ⟨Z_iZ_{i+1}⟩ < 0); U maps it to the ground state of our H = −ΣZZ − ΣX with the same energy.
    A record a of |ψ⟩ is the record U a of U|ψ⟩ when U M_a U† is again an element (``pauli6``).

    Args:
        tensors: L arrays (χ_l, 2, χ_r).
        outcomes: (N, L) records of the original state, or None.
        povm: our POVM name of the records.

    Returns:
        (mapped tensors, relabeled uint8 records or None).

    Raises:
        QtomoError: records of a POVM other than ``pauli6``.

    Example:
        >>> plus_minus = [np.array([1, -1], complex).reshape(1, 2, 1) / np.sqrt(2)] * 2
        >>> [B[0, :, 0].real.round(3).tolist() for B in genmodel_tfim_sign_map(plus_minus)[0]]
        [[0.707, 0.707], [0.707, 0.707]]
    """
    mapped = []
    for site, B in enumerate(tensors):
        B = np.asarray(B, dtype=np.complex128) * np.array([1, -1])[None, :, None]  # Z
        mapped.append(B[:, ::-1, :].copy() if site % 2 else B)  # X on odd sites (applied last)
    if outcomes is None:
        return mapped, None
    if povm != "pauli6":
        raise QtomoError(f"the TFIM sign map relabels records of the Pauli (pauli6) POVM only; "
                         f"got {povm}: import without it (the reference then stays their "
                         f"+ΣZZ + ΣX state, consistent with the records)")
    relabeled = _PAULI6_UNDER_Z[np.asarray(outcomes)]
    relabeled[:, 1::2] = _PAULI6_UNDER_X[relabeled[:, 1::2]]
    return mapped, relabeled


@dataclass(frozen=True)
class _Format:
    files: tuple[int, ...]  # accepted numbers of input files
    reader: Callable[..., Records]
    writer: Callable[[np.ndarray, Path], list[Path]] | None
    pauli_shots: bool = True  # records are basis + bit (uniformity test, readout errors)
    outputs: Callable[[Path], list[Path]] = lambda out: [out]  # the files the writer writes


FORMATS: dict[str, _Format] = {
    "pauli-shots": _Format((1,), _read_pauli_shots, _write_pauli_shots),
    "qucumber": _Format((2,), _read_qucumber, _write_qucumber,
                        outputs=lambda out: [out, _qucumber_bases_path(out)]),
    "qiskit-counts": _Format((1,), _read_qiskit_counts, _write_qiskit_counts),
    "netket": _Format((1,), _read_netket, _write_netket),
    "aqt": _Format((1,), _read_aqt, _write_aqt),
    "genmodel": _Format((1, 3), _read_genmodel, None, pauli_shots=False),
}
EXPORT_FORMATS = tuple(name for name, spec in FORMATS.items() if spec.writer is not None)


def _format(name: str, export: bool = False) -> _Format:
    names = EXPORT_FORMATS if export else tuple(FORMATS)
    if name not in names:
        raise QtomoError(f"unknown {'export' if export else 'import'} format {name!r}; expected "
                         f"one of {', '.join(names)}")
    return FORMATS[name]


def import_records(
    fmt: str,
    files: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    povm: str | None = None,
    readout_error: Sequence[float] | Sequence[Sequence[float]] | None = None,
    allow_biased_bases: bool = False,
    tfim_sign_map: bool = False,
    shuffle: bool = True,
    seed: int = 0,
    quiet: bool = True,
) -> Path:
    """Read another tool's measurement files and write a qtomo dataset without exact ln P.

    Args:
        fmt: one of :data:`FORMATS`.
        files: the input files (two for ``qucumber``: samples, bases; one or three for
            ``genmodel``: data, index, tensor).
        out: the dataset to write (atomically).
        povm: genmodel's POVM name (``4Pauli``, ``Tetra``, ``Pauli``); only for genmodel.
        readout_error: (e0, e1) = (P(read 1 | 0), P(read 0 | 1)), each in [0, 0.5), of every
            qubit, or an (L, 2) table of them per qubit (:func:`read_readout_errors` reads one
            from a file): the file then stores the POVM actually measured
            (:func:`qtomo.readout.readout_povms`).
        allow_biased_bases: keep bases that fail :func:`bases_uniformity`, with a warning
            stored in the file (attribute ``warning``).
        tfim_sign_map: genmodel only: apply :func:`genmodel_tfim_sign_map`.
        shuffle: permute the rows (seeded), so that the validation split at the end of the file
            is not one group of settings; False keeps the files' order.
        seed: seed of that permutation.
        quiet: no progress bar.

    Returns:
        The path written.

    Raises:
        QtomoError: unknown format, wrong number of files, bad content (one line naming the
            file, row and value), biased bases without ``allow_biased_bases``, a readout error
            outside [0, 0.5) or on records that are not Pauli-basis shots.
    """
    spec = _format(fmt)
    paths = _checked_inputs(fmt, spec, files, out, povm, readout_error, tfim_sign_map)
    records = _read_records(fmt, spec, paths, povm, tfim_sign_map)
    outcomes, measured, attrs = records.outcomes, records.povm, dict(records.attrs)
    check_import_size(paths[0], *outcomes.shape)
    if readout_error is not None:
        if not spec.pauli_shots and measured.name != "pauli6":
            raise QtomoError(f"readout errors apply to Pauli-basis shots (pauli6); these records "
                             f"are {measured.name}")
        measured = readout_povms(readout_error, outcomes.shape[1])
        attrs["readout_error"] = np.asarray(readout_error, dtype=np.float64).tolist()
    if measured.name.startswith("pauli6"):
        attrs.update(_uniform_bases(outcomes, allow_biased_bases))
    if has_settings(measured):
        attrs.update(_basis_coverage(outcomes))
    if shuffle:
        outcomes = outcomes[np.random.default_rng(seed).permutation(len(outcomes))]
        attrs["shuffle_seed"] = seed
    N, L = outcomes.shape
    attrs.update({"L": L, "source": IMPORTED + fmt,
                  "imported_files": [path.name for path in paths]})
    chunks = ((outcomes[start : start + _CHUNK], None) for start in range(0, N, _CHUNK))
    return write_dataset(out, povm=measured, attrs=attrs, n_records=N, chunks=chunks,
                         reference=records.reference, quiet=quiet)


def _checked_inputs(fmt: str, spec: _Format, files: Sequence[str | os.PathLike],
                    out: str | os.PathLike, povm: str | None,
                    readout_error: Sequence[float] | Sequence[Sequence[float]] | None,
                    tfim_sign_map: bool) -> list[Path]:
    """The input paths, once the options of :func:`import_records` and the files are checked
    (before any file is read): the readout error's values, the number of files and that each
    exists, the output, and genmodel's options on genmodel only.

    Raises:
        QtomoError: as :func:`import_records`.
    """
    if readout_error is not None:
        readout_povms(readout_error)  # checked before any file is read; L once the records are
    paths = [Path(file) for file in files]
    if len(paths) not in spec.files:
        raise QtomoError(f"format {fmt} reads {' or '.join(map(str, spec.files))} file(s); got "
                         f"{len(paths)}")
    for path in paths:
        if not path.is_file():
            raise QtomoError(missing_file(path))
    check_outputs([out], inputs=paths)
    if fmt != "genmodel" and (povm is not None or tfim_sign_map):
        raise QtomoError(f"--povm and --tfim-sign-map apply to genmodel files; format {fmt} "
                         f"holds Pauli-basis shots (pauli6)")
    return paths


def _read_records(fmt: str, spec: _Format, paths: list[Path], povm: str | None,
                  tfim_sign_map: bool) -> Records:
    """The records of ``paths`` read by the format's reader; every error names the files."""
    try:
        return (_read_genmodel(paths, povm, tfim_sign_map) if fmt == "genmodel"
                else spec.reader(paths))
    except QtomoError as error:  # every message names the file it is about
        if any(str(path) in str(error) for path in paths):
            raise
        raise QtomoError(f"{', '.join(map(str, paths))}: {error}") from None


def _uniform_bases(outcomes: np.ndarray, allow_biased_bases: bool) -> dict:
    """{} when the bases of pauli6 records (N, L) pass :func:`bases_uniformity`; else, with
    ``allow_biased_bases``, the attributes ``biased_bases`` and ``warning`` (also issued as a
    :class:`BiasedBasesWarning`).

    Raises:
        QtomoError: biased bases without ``allow_biased_bases``.
    """
    test = bases_uniformity(outcomes // 2)
    if test["uniform"]:
        return {}
    message = (f"bases are not uniform and independent: {test['worst']} has χ² = "
               f"{test['chi2']:.4g} ({test['dof']} dof, p = {test['p_value']:.3g} < "
               f"{test['threshold']:.3g})")
    if not allow_biased_bases:
        raise QtomoError(f"{message}; the records are not pauli6 records (keep them "
                         f"with --allow-biased-bases)")
    warning = (f"{message}: kept with --allow-biased-bases, so the pauli6 duals and the "
               f"model's distribution describe a different measurement")
    warnings.warn(warning, BiasedBasesWarning, stacklevel=3)  # the caller of import_records
    return {"biased_bases": 1, "warning": warning}


def _basis_coverage(outcomes: np.ndarray) -> dict:
    """{} when the settings of the records (N, L) determine every reference the reports use;
    else ``undetermined``: one line per gap, each also an :class:`IncompleteBasesWarning`."""
    coverage = BasisCoverage(outcomes.shape[1])
    coverage.add(outcomes)
    undetermined = coverage.undetermined()
    if not undetermined:
        return {}
    for line in undetermined:
        warnings.warn(f"the records do not determine everything: {line}",
                      IncompleteBasesWarning, stacklevel=3)  # the caller of import_records
    return {"undetermined": undetermined}


def export_records(fmt: str, dataset: str | os.PathLike | Dataset,
                   out: str | os.PathLike) -> list[Path]:
    """Write a ``pauli6`` dataset's records in another tool's format (inverse of the import).

    ``qucumber`` writes the samples to ``out`` and the bases beside it, ``<stem>_bases<suffix>``.

    Args:
        fmt: one of :data:`EXPORT_FORMATS`.
        dataset: a dataset file or :class:`qtomo.data.Dataset` of ``pauli6`` records (a readout-
            corrupted ``pauli6+readout`` file exports its raw bits; the readout error is not
            part of these formats).
        out: the output file.

    Returns:
        The files written (atomically).

    Raises:
        QtomoError: unknown format, or records of another POVM.
    """
    spec = _format(fmt, export=True)
    dataset = dataset if isinstance(dataset, Dataset) else read_dataset(dataset)
    if not dataset.povm.name.startswith("pauli6") or dataset.K != 6:
        raise QtomoError(f"{dataset.path}: export needs pauli6 records (Pauli-basis shots); got "
                         f"POVM {dataset.povm.name!r}")
    check_outputs(spec.outputs(Path(out)), inputs=[dataset.path])
    return spec.writer(dataset.outcomes(), Path(out))
