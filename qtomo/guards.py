"""Checks of inputs that would otherwise be lost, changed, over-allocated or turned into a
number that is not what it says (docs/errors.md, docs/measured-data.md "Measured data").

Import readers: a count of 10^13 shots or a genmodel bond of 10^5 is a refusal that states the
size, not an attempt to allocate hundreds of GiB; duplicate JSON keys and repeated or wrapping
tensor indices are refused. States given to the fidelities: a target must be normalised (a
vector ψ with ‖ψ‖ = 1, or a density matrix: Hermitian, trace 1, positive) and no matrix may
hold NaN. Each raises :class:`qtomo.errors.QtomoError` with one line naming what is wrong and
what was expected.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from qtomo.errors import QtomoError

__all__ = ["IMPORT_MAX_ENTRIES", "IMPORT_MAX_L", "STATE_TOL", "TENSOR_MAX_ENTRIES",
           "check_array_header", "check_finite", "check_import_size", "check_sparse_positions",
           "check_target", "check_tensor_shape", "check_text_width", "file_kind",
           "integer_records", "missing_file", "unique_keys"]

#: most qubits of imported records: the uniform-bases test holds a (3L)² table of pair counts
#: (L = 1024: 72 MiB)
IMPORT_MAX_L = 1024
#: most outcomes (records × qubits) of one import: 2^31 uint8 outcomes are 2 GiB
IMPORT_MAX_ENTRIES = 2**31
#: most entries of one genmodel MPS tensor (χ_l · 2 · χ_r): 2^24 complex128 are 256 MiB
TENSOR_MAX_ENTRIES = 2**24


def check_import_size(path: str | os.PathLike, n_records: int, L: int) -> None:
    """Raise QtomoError if ``n_records`` records of ``L`` qubits exceed :data:`IMPORT_MAX_L` or
    :data:`IMPORT_MAX_ENTRIES`.

    Example:
        >>> check_import_size("counts.json", 10**13, 4)
        Traceback (most recent call last):
        ...
        qtomo.errors.QtomoError: counts.json: 10000000000000 records of 4 qubits are ...
    """
    if L > IMPORT_MAX_L:
        raise QtomoError(f"{path}: records of {L} qubits; an import takes at most "
                         f"{IMPORT_MAX_L} qubits")
    if n_records * L > IMPORT_MAX_ENTRIES:
        raise QtomoError(f"{path}: {n_records} records of {L} qubits are {n_records * L} "
                         f"outcomes; an import takes at most {IMPORT_MAX_ENTRIES} (2 GiB); "
                         f"split the file")


def check_array_header(path: str | os.PathLike, handle: Any, name: str = "the array") -> None:
    """Raise QtomoError if the .npy header read from ``handle`` (a binary file positioned at
    the magic string) announces more than :data:`IMPORT_MAX_ENTRIES` entries: numpy would
    allocate them before reading a byte. A header numpy cannot parse is left to np.load."""
    from numpy.lib import format as npy

    try:
        version = npy.read_magic(handle)
        read_header = {(1, 0): npy.read_array_header_1_0,
                       (2, 0): npy.read_array_header_2_0}.get(version)
        if read_header is None:
            return
        shape = read_header(handle)[0]
    except (ValueError, OSError, EOFError):
        return
    entries = int(np.prod(shape, dtype=object))
    if entries > IMPORT_MAX_ENTRIES:
        raise QtomoError(f"{path}: {name} has shape {shape} = {entries} entries; an import "
                         f"takes at most {IMPORT_MAX_ENTRIES} (2 GiB); split the file")


def check_text_width(path: str | os.PathLike) -> None:
    """Raise QtomoError if the first non-empty line of a text table holds more than
    :data:`IMPORT_MAX_L` entries: numpy's reader would reserve room for 50 000 such rows
    before it reads the second line. An unreadable file is left to the reader to report."""
    try:
        with open(path, "rb") as handle:
            first = next((line for line in handle if line.strip()), b"")
    except OSError:
        return
    check_import_size(path, 1, len(first.split()))


def unique_keys(path: str | os.PathLike) -> Callable[[list[tuple[str, Any]]], dict]:
    """A ``json.loads(..., object_pairs_hook=...)`` hook that refuses a key given twice in one
    object (plain ``json`` keeps the last and drops the others' shots).

    Example:
        >>> import json
        >>> json.loads('{"ZZ": {"00": 5, "00": 7}}', object_pairs_hook=unique_keys("c.json"))
        Traceback (most recent call last):
        ...
        qtomo.errors.QtomoError: c.json: key '00' appears twice in one JSON object; ...
    """
    def hook(pairs: list[tuple[str, Any]]) -> dict:
        table: dict = {}
        for key, value in pairs:
            if key in table:
                raise QtomoError(f"{path}: key {key!r} appears twice in one JSON object; "
                                 f"expected each key once (merge the counts)")
            table[key] = value
        return table

    return hook


def check_tensor_shape(path: str | os.PathLike, site: int, shape: list[int]) -> None:
    """Raise QtomoError unless every dimension is ≥ 1 and the tensor has at most
    :data:`TENSOR_MAX_ENTRIES` entries."""
    if any(dimension < 1 for dimension in shape):
        raise QtomoError(f"{path}: tensor {site} has dimensions {shape}; expected each >= 1")
    entries = int(np.prod(shape, dtype=object))
    if entries > TENSOR_MAX_ENTRIES:
        raise QtomoError(f"{path}: tensor {site} has dimensions {shape} = {entries} entries; "
                         f"at most {TENSOR_MAX_ENTRIES} are read")


def check_sparse_positions(path: str | os.PathLike, site: int, positions: np.ndarray,
                           shape: list[int]) -> None:
    """Raise QtomoError unless each row of 0-based ``positions`` (n, rank) lies inside
    ``shape`` (a 1-based index 0 would wrap to the last entry) and no position repeats (the
    later value would overwrite the earlier)."""
    inside = (positions >= 0) & (positions < np.asarray(shape))
    if not inside.all():
        row = int(np.argmin(inside.all(axis=1)))
        raise QtomoError(f"{path}: tensor {site} has the entry {(positions[row] + 1).tolist()} "
                         f"outside its dimensions {shape}; indices are 1-based")
    unique, counts = np.unique(positions, axis=0, return_counts=True)
    if np.any(counts > 1):
        twice = (unique[int(np.argmax(counts > 1))] + 1).tolist()
        raise QtomoError(f"{path}: tensor {site} lists the entry {twice} more than once; "
                         f"expected each non-zero entry once")



#: tolerance of a target state's norm, trace, Hermiticity and smallest eigenvalue
STATE_TOL = 1e-6


def check_finite(matrix: np.ndarray, what: str) -> None:
    """Raise QtomoError if ``matrix`` holds NaN or ±inf."""
    if not np.all(np.isfinite(matrix)):
        raise QtomoError(f"{what} holds NaN or infinite entries; expected finite numbers")


def check_target(target: np.ndarray, dimension: int, what: str = "the target") -> None:
    """Raise QtomoError unless ``target`` is a state of ``dimension`` D: a vector (D,) with
    ‖ψ‖ = 1, or a density matrix (D, D) that is Hermitian, of trace 1 and positive, each within
    :data:`STATE_TOL` (a target 2ψ would report a fidelity of 4). ``what`` names it in the
    message.

    Example:
        >>> check_target(np.array([2.0, 0.0]), 2)
        Traceback (most recent call last):
        ...
        qtomo.errors.QtomoError: the target is not normalised: ‖ψ‖ = 2; expected 1 (within 1e-06)
    """
    if target.shape not in ((dimension,), (dimension, dimension)):
        raise QtomoError(f"{what} of shape {target.shape} does not match the state's "
                         f"dimension {dimension}; expected ({dimension},) or "
                         f"({dimension}, {dimension})")
    check_finite(target, what)
    if target.ndim == 1:
        norm = float(np.linalg.norm(target))
        if abs(norm - 1) > STATE_TOL:
            raise QtomoError(f"{what} is not normalised: ‖ψ‖ = {norm:.8g}; expected 1 (within "
                             f"{STATE_TOL:g})")
        return
    if np.abs(target - target.conj().T).max() > STATE_TOL:
        raise QtomoError(f"{what} is not a Hermitian matrix; a density matrix is")
    trace = float(np.trace(target).real)
    if abs(trace - 1) > STATE_TOL:
        raise QtomoError(f"{what} has trace {trace:.8g}; a density matrix has trace 1")
    smallest = float(np.linalg.eigvalsh(0.5 * (target + target.conj().T))[0])
    if smallest < -STATE_TOL:
        raise QtomoError(f"{what} is not positive: smallest eigenvalue {smallest:.3g}; a "
                         f"density matrix has none below 0")


def integer_records(values: np.ndarray, K: int, what: str = "records") -> np.ndarray:
    """Records (N, L) as int64 if every entry is a whole number in 0..K−1; whole-valued floats
    (1.0) are accepted, others (0.5) refused rather than truncated.

    Example:
        >>> integer_records(np.array([[0.0, 2.0]]), 4).tolist()
        [[0, 2]]
        >>> integer_records(np.array([[0.5, 2.0]]), 4)
        Traceback (most recent call last):
        ...
        qtomo.errors.QtomoError: records must be whole numbers; got 0.5 in row 0
    """
    from qtomo.povm import check_outcomes

    array = np.asarray(values)
    if array.dtype.kind == "f":
        whole = np.isfinite(array) & (array == np.round(array))
        if not whole.all():
            row, column = (int(index) for index in np.argwhere(~whole)[0])
            raise QtomoError(f"{what} must be whole numbers; got {array[row, column]:.6g} in "
                             f"row {row}")
        array = array.astype(np.int64)
    check_outcomes(array, None, K)
    return array.astype(np.int64, copy=False)


_MAGIC = ((b"\x89HDF\r\n\x1a\n", "an HDF5 file"), (b"PK\x03\x04", "a zip archive (.npz)"),
          (b"\x93NUMPY", "a .npy array"))


def file_kind(path: str | os.PathLike) -> str:
    """What a file is by its first bytes: "an HDF5 file", "a zip archive (.npz)", "a .npy
    array", "a text file", "binary data" or why it cannot be read, for messages that say what
    was given instead.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "x.npz"
        >>> _ = path.write_text("0 1\\n")
        >>> file_kind(path)
        'a text file'
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(512)
    except OSError as error:
        return f"a file that cannot be read ({error.strerror or error})"
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "binary data"
    return "a text file"


def missing_file(path: str | os.PathLike, what: str = "file") -> str:
    """The message for an input that is not a file: "<path>: a folder; expected a <what>" or
    "<path>: no such <what>"."""
    if os.path.isdir(path):
        return f"{path}: a folder; expected a {what}"
    return f"{path}: no such {what}"
