"""Readout errors: the POVM a Pauli-basis experiment with bit flips on readout actually measures,
and the files that give the flip probabilities per qubit (docs/measured-data.md "Formats")."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from qtomo.errors import QtomoError
from qtomo.guards import missing_file, unique_keys
from qtomo.povm import POVM, PerQubitPOVM, get_povm, per_qubit

__all__ = ["READOUT_SUFFIX", "read_readout_errors", "readout_povm", "readout_povms"]

READOUT_SUFFIX = "+readout"


def readout_povm(e0: float, e1: float, base: str = "pauli6") -> POVM:
    """The POVM a Pauli-basis experiment with readout errors actually measures.

    Outcome 2b + r means "basis b, bit r read" (docs/measured-data.md "Measured data"). A bit flips
    on readout with P(read 1 | 0) = e0, P(read 0 | 1) = e1, so per basis b

        M'_{2b+r} = Σ_{r'} A_{r r'} M_{2b+r'},   A = [[1 − e0, e1], [e0, 1 − e1]],

    still a POVM (A is column-stochastic) and informationally complete for e0 + e1 < 1; its
    canonical duals undo the readout error in every dual-frame estimate.

    Args:
        e0, e1: flip probabilities, each in [0, 0.5).
        base: the ideal POVM, ``"pauli6"`` (the one whose outcomes are basis and bit).

    Returns:
        A :class:`POVM` named ``"pauli6+readout"``.

    Raises:
        QtomoError: for an error outside [0, 0.5) or another base.

    Example:
        >>> povm = readout_povm(0.1, 0.0)
        >>> rho = np.array([[1, 0], [0, 0]], dtype=complex)       # |0⟩: Z read as 1 w.p. 0.1
        >>> np.round(povm.probabilities(rho)[:2], 6).tolist()
        [0.3, 0.033333]
        >>> from qtomo.povm import PAULI
        >>> round(float(povm.probabilities(rho) @ povm.dual_traces(PAULI["Z"]).real), 12)
        1.0
    """
    if base != "pauli6":
        raise QtomoError(f"readout errors act on the bits of Pauli-basis records; expected base "
                         f"'pauli6', got {base!r}")
    for name, value in (("e0 = P(read 1 | 0)", e0), ("e1 = P(read 0 | 1)", e1)):
        if not (isinstance(value, (int, float, np.floating)) and 0 <= value < 0.5):
            raise QtomoError(f"readout error {name} must lie in [0, 0.5); got {value!r}")
    flips = np.array([[1 - e0, e1], [e0, 1 - e1]])  # A[read, true]
    ideal = get_povm(base).elements.reshape(3, 2, 2, 2)  # (basis, bit, 2, 2)
    elements = np.einsum("rt,btij->brij", flips, ideal).reshape(6, 2, 2)
    return POVM(base + READOUT_SUFFIX, elements)


def readout_povms(errors: Sequence[float] | Sequence[Sequence[float]] | np.ndarray,
                  L: int | None = None) -> POVM | PerQubitPOVM:
    """The POVM measured with readout errors, the same on every qubit or one pair per qubit.

    Args:
        errors: (e0, e1) for every qubit, or an (L, 2) table whose row i is qubit i's (e0, e1)
            (see :func:`readout_povm`).
        L: the number of qubits the records have, checked against a table's rows; None skips
            the check.

    Returns:
        :func:`readout_povm` for one pair (or a table whose rows are all equal), else a
        :class:`PerQubitPOVM` of them.

    Raises:
        QtomoError: for another shape, a table of the wrong length, or an error outside
            [0, 0.5) (naming the qubit).

    Example:
        >>> readout_povms([[0.1, 0.0], [0.1, 0.0]]) == readout_povm(0.1, 0.0)
        True
        >>> readout_povms([[0.1, 0.0], [0.0, 0.2]], L=3)
        Traceback (most recent call last):
        ...
        qtomo.errors.QtomoError: readout errors are given for 2 qubits; the records have L = 3
    """
    table = np.asarray(errors, dtype=np.float64) if _is_numeric(errors) else None
    if table is not None and table.shape == (2,):
        table = table[None]
    elif table is None or table.ndim != 2 or table.shape[1] != 2 or table.shape[0] < 1:
        raise QtomoError(f"readout errors must be (e0, e1) or an (L, 2) table of them, qubit 0 "
                         f"first; got {np.shape(errors) if table is not None else errors!r}")
    elif L is not None and table.shape[0] != L:
        raise QtomoError(f"readout errors are given for {table.shape[0]} qubits; the records "
                         f"have L = {L}")
    if np.all(table == table[0]):
        return readout_povm(*(float(e) for e in table[0]))
    return per_qubit(lambda row: readout_povm(float(row[0]), float(row[1])), table)


def _is_numeric(values) -> bool:
    try:
        return np.asarray(values).dtype.kind in "iuf"
    except ValueError:  # ragged rows
        return False


def read_readout_errors(path: str | os.PathLike) -> np.ndarray:
    r"""Per-qubit readout errors from a file (docs/measured-data.md "Measured data").

    One row per qubit, qubit 0 first: e0 = P(read 1 | 0), e1 = P(read 0 | 1). The file is text
    (one line ``e0 e1`` per qubit, separated by whitespace or a comma, ``#`` starting a
    comment), a ``.json`` array of [e0, e1] pairs, or a ``.npy`` array (L, 2).

    Returns:
        (L, 2) float64, for ``import_records(…, readout_error=…)`` or ``simulate``.

    Raises:
        QtomoError: a missing, unreadable or empty file, an entry that is not a number, rows of
            other than two entries, or an error outside [0, 0.5) (naming the qubit).

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "readout.txt"
        >>> _ = path.write_text("# e0 e1\n0.01 0.03\n0.02, 0.05\n")
        >>> read_readout_errors(path).tolist()
        [[0.01, 0.03], [0.02, 0.05]]
    """
    path = Path(path)
    if not path.is_file():
        raise QtomoError(missing_file(path))
    try:
        if path.suffix.lower() == ".npy":
            rows = np.load(path, allow_pickle=False)
        elif path.suffix.lower() == ".json":
            rows = json.loads(path.read_text(), object_pairs_hook=unique_keys(path))
        else:
            rows = [line.split("#")[0].replace(",", " ").split()
                    for line in path.read_text().splitlines()]
            rows = [row for row in rows if row]
    except (OSError, ValueError, UnicodeDecodeError) as error:
        raise QtomoError(f"{path}: cannot read readout errors from it ({error})") from None
    if not isinstance(rows, list) and not (isinstance(rows, np.ndarray) and rows.ndim > 0):
        raise QtomoError(f"{path}: expected a list of [e0, e1] rows, one per qubit; got "
                         f"{type(rows).__name__} {rows!r}"[:200])
    if len(rows) == 0:
        raise QtomoError(f"{path}: empty; expected one row e0 e1 per qubit")
    table = np.empty((len(rows), 2))
    for qubit, row in enumerate(rows):
        if np.ndim(row) != 1 or len(row) != 2:
            raise QtomoError(f"{path}: expected two entries per qubit, e0 = P(read 1 | 0) and "
                             f"e1 = P(read 0 | 1); qubit {qubit} has {np.size(row)}")
        for column, value in enumerate(row):
            if isinstance(value, complex | np.complexfloating):
                raise QtomoError(f"{path}: entries must be real numbers; got {value!r} for "
                                 f"qubit {qubit}")
            try:
                table[qubit, column] = float(value)
            except (TypeError, ValueError):
                raise QtomoError(f"{path}: entries must be numbers; got {value!r} for qubit "
                                 f"{qubit}") from None
    try:
        readout_povms(table)
    except QtomoError as error:
        raise QtomoError(f"{path}: {error}") from None
    return table
