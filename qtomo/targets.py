"""Target states: what a measured state is compared with (docs/targets-and-baselines.md).

A target is the state the experimenter meant to prepare. ``qtomo evaluate --target SPEC`` (and
``evaluate(..., target=SPEC)``) names it; without one the dataset's ``/reference`` is the target.
A :class:`Target` holds a pure state as MPS tensors (χ_l, 2, χ_r), right-canonical, at any L
(and its dense vector ψ (2^L,) where L is small), or a mixed state as its density matrix
ρ (2^L, 2^L). Conventions as everywhere in qtomo: qubit 0 is the most significant factor,
index = Σ s_i 2^(L-1-i).

Specifications (:func:`parse_target`):

- ``ghz``: (|0…0⟩ + |1…1⟩)/√2;  ``w``: Σ_i |0…1_i…0⟩/√L;  ``cluster``: Π_i CZ_{i,i+1} |+⟩^L
  (open chain), ψ(s) = 2^(-L/2) (-1)^(Σ_i s_i s_{i+1});
- ``product:<labels>``: one of ``0 1 + - +i -i`` per site, e.g. ``product:+-0`` (a single label
  is repeated on every site);
- ``tfim:h=H[,J=J]``: ground state of H = -J Σ Z_i Z_{i+1} - h Σ X_i (open), exact
  diagonalisation for L ≤ 12, DMRG above;
- ``xxz:delta=D[,J=J]``: ground state of H = J Σ (X_i X_{i+1} + Y_i Y_{i+1} + D Z_i Z_{i+1})
  (open), the lowest state with Σ Z_i = 0 (exact diagonalisation for L ≤ 12, DMRG above);
- a file: ``.npy`` state vector (2^L,) or density matrix (2^L, 2^L); QuCumber psi text (two
  columns, re and im, one row per amplitude); ``.npz`` of MPS tensors (keys in the order of
  ``np.savez`` positional arrays, or ``B_0``, ``B_1``, …); a qtomo dataset ``.h5`` whose
  ``/reference`` (psi, mps or rho) is used.

Example:
    >>> target = parse_target("ghz", 3)
    >>> target.pure, target.is_ghz, target.vector().real.round(3).tolist()
    (True, True, [0.707, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.707])
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qtomo.errors import QtomoError
from qtomo.guards import check_target
from qtomo.povm import sites_from_size
from qtomo.states.exact import EXACT_MAX_L, single_qubit_state
from qtomo.states.mps import (
    check_mps_shapes,
    ghz_mps,
    mps_to_vector,
    pure_state_fidelity,
    right_canonical,
    vector_to_mps,
)
from qtomo.states.registry import TARGETS, NamedState, StateParameters, named_state_entry

__all__ = ["DENSE_MAX_L", "NAMES", "Target", "dataset_target", "parse_target"]

#: largest L whose dense ψ or ρ a target builds (a 2^10 × 2^10 ρ is 16 MiB)
DENSE_MAX_L = 10
#: built-in target names: the named states a target may be (:mod:`qtomo.states.registry`)
NAMES = TARGETS


@dataclass(frozen=True)
class Target:
    """A target state of L qubits: pure (``mps``) or mixed (``rho``).

    Attributes:
        spec: how it was named (for reports).
        L: qubits.
        mps: the pure state as L right-canonical complex128 tensors (χ_l, 2, χ_r), else None.
        rho: the mixed state's density matrix, complex128 (2^L, 2^L), else None.
    """

    spec: str
    L: int
    mps: tuple[np.ndarray, ...] | None = None
    rho: np.ndarray | None = None

    @property
    def pure(self) -> bool:
        """Whether the target is a pure state |ψ⟩."""
        return self.mps is not None

    @property
    def is_ghz(self) -> bool:
        """Whether the target is the GHZ state (|⟨GHZ|ψ⟩|² > 1 − 1e-9, an MPS contraction)."""
        return self.pure and self.L >= 2 and pure_state_fidelity(
            list(ghz_mps(self.L).tensors), list(self.mps)) > 1 - 1e-9

    def vector(self) -> np.ndarray:
        """ψ (2^L,) complex128 of a pure target; QtomoError above :data:`DENSE_MAX_L`."""
        if not self.pure:
            raise QtomoError(f"target {self.spec!r} is a mixed state; it has no state vector")
        _check_dense(self.L, self.spec)
        return mps_to_vector(list(self.mps))

    def dense(self) -> np.ndarray:
        """ψ (2^L,) of a pure target, ρ (2^L, 2^L) of a mixed one (the form
        :meth:`qtomo.reconstruct.Reconstruction.fidelity` takes)."""
        return self.vector() if self.pure else self.rho

    def as_dict(self) -> dict:
        """The JSON ``target`` field: ``{"spec", "L", "pure"}``."""
        return {"spec": self.spec, "L": self.L, "pure": self.pure}


def _check_dense(L: int, spec: str) -> None:
    if L > DENSE_MAX_L:
        raise QtomoError(f"target {spec!r}: a dense state of L = {L} qubits is too large; the "
                         f"limit is L <= {DENSE_MAX_L}")


def pure_target(spec: str, L: int, tensors) -> Target:
    """A pure :class:`Target` from MPS tensors (any gauge, normalised or not but not zero)."""
    tensors = [np.array(B, dtype=np.complex128) for B in tensors]
    check_mps_shapes(tensors, L)
    return Target(spec, L, mps=tuple(right_canonical(tensors)))


def vector_target(spec: str, psi: np.ndarray, L: int) -> Target:
    """A pure :class:`Target` from ψ (2^L,); QtomoError unless ‖ψ‖ = 1 within 1e-6
    (:func:`qtomo.guards.check_target`)."""
    psi = np.asarray(psi, dtype=np.complex128).reshape(-1)
    if psi.size != 2**L:
        raise QtomoError(f"target {spec!r} has {psi.size} amplitudes; L = {L} needs 2^{L} = "
                         f"{2**L}")
    check_target(psi, psi.size, f"target {spec!r}")
    return pure_target(spec, L, vector_to_mps(psi / np.linalg.norm(psi)))


def density_target(spec: str, rho: np.ndarray, L: int) -> Target:
    """A mixed :class:`Target` from ρ (2^L, 2^L); QtomoError unless ρ is Hermitian, Tr ρ = 1
    and ρ ≥ 0 (within 1e-6; :func:`qtomo.guards.check_target`)."""
    rho = np.asarray(rho, dtype=np.complex128)
    if rho.shape != (2**L, 2**L):
        raise QtomoError(f"target {spec!r} is a matrix of shape {rho.shape}; L = {L} needs "
                         f"({2**L}, {2**L})")
    _check_dense(L, spec)
    check_target(rho, 2**L, f"target {spec!r}")
    return Target(spec, L, rho=(rho + rho.conj().T) / 2)


def _parameters(entry: NamedState, text: str, spec: str) -> dict[str, float]:
    """``h=0.5,J=1`` → {"h": 0.5, "J": 1.0}; defaults from the state's registry entry."""
    name, values = entry.name, dict(entry.target_parameters)
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        if key.strip() not in values:
            raise QtomoError(f"target {spec!r}: unknown parameter {key.strip()!r}; {name} takes "
                             f"{', '.join(values)}")
        try:
            values[key.strip()] = float(value)
        except ValueError:
            raise QtomoError(f"target {spec!r}: parameter {key.strip()} = {value!r} is not a "
                             f"number") from None
    return values


def _product_tensors(labels: str, L: int, spec: str) -> list[np.ndarray]:
    sites = re.findall(r"[+-]i|[01+-]", labels)
    if "".join(sites) != labels or not sites:
        raise QtomoError(f"target {spec!r}: product states are written with 0 1 + - +i -i per "
                         f"site, e.g. product:+-0")
    sites = sites * L if len(sites) == 1 else sites
    if len(sites) != L:
        raise QtomoError(f"target {spec!r} names {len(sites)} sites; the data have L = {L}")
    return [single_qubit_state(label).reshape(1, 2, 1) for label in sites]


def _named_target(spec: str, L: int) -> Target:
    """A named state (``name[:arguments]``) as its registry entry builds it: its MPS where that
    is exact at every L, else the dense state up to EXACT_MAX_L and DMRG above."""
    name, _, arguments = spec.partition(":")
    entry = named_state_entry(name)
    if entry.site_labels:
        return pure_target(spec, L, _product_tensors(arguments, L, spec))
    if arguments and not entry.target_parameters:
        raise QtomoError(f"target {spec!r}: {name} takes no parameters")
    parameters = StateParameters(**_parameters(entry, arguments, spec))
    if entry.exact_mps:
        return pure_target(spec, L, entry.mps(L, parameters).tensors)
    if L <= EXACT_MAX_L:
        return vector_target(spec, entry.build(L, parameters, "exact").psi, L)
    return Target(spec, L, mps=tuple(entry.build(L, parameters, "mps").tensors))


def parse_target(spec: str, L: int) -> Target:
    """The target named by ``spec`` (module docstring) for L qubits.

    Raises:
        QtomoError: unknown name or parameter, a file that cannot be read, a state of another
            L, a non-normalised vector, a non-Hermitian / non-positive / trace ≠ 1 matrix.
    """
    name = spec.partition(":")[0]
    if name in NAMES:
        return _named_target(spec, L)
    path = Path(spec)
    if not path.is_file():
        raise QtomoError(f"unknown target {spec!r}; expected one of {', '.join(NAMES)} or a "
                         f"file (.npy, .npz, .h5, QuCumber psi text)")
    return _file_target(path, L)


def _file_target(path: Path, L: int) -> Target:
    spec = str(path)
    try:
        if path.suffix == ".h5":
            from qtomo.data import read_dataset

            with read_dataset(path) as dataset:
                found = dataset_target(dataset, spec)
                if found is None:
                    raise QtomoError(f"target {spec!r}: the dataset has no /reference state "
                                     f"(psi, mps or rho)")
            if found.L != L:
                raise QtomoError(f"target {spec!r} has L = {found.L}; the data have L = {L}")
            return found
        if path.suffix == ".npz":
            with np.load(path) as archive:
                keys = sorted(archive.files, key=lambda key: int(re.sub(r"\D", "", key) or 0))
                return pure_target(spec, L, [archive[key] for key in keys])
        array = np.load(path) if path.suffix == ".npy" else _psi_text(path)
    except (OSError, ValueError) as error:
        raise QtomoError(f"target {spec!r} cannot be read: {error}") from None
    if array.ndim == 2 and array.shape[0] == array.shape[1] and array.shape[0] > 1:
        return density_target(spec, array, _sites(array.shape[0], spec, L))
    return vector_target(spec, array, _sites(array.size, spec, L))


def _sites(size: int, spec: str, L: int) -> int:
    found = sites_from_size(size, 2, f"entries of target {spec!r}")
    if found != L:
        raise QtomoError(f"target {spec!r} has L = {found} qubits; the data have L = {L}")
    return found


def _psi_text(path: Path) -> np.ndarray:
    """QuCumber's psi text: one row per amplitude, columns re and im."""
    table = np.loadtxt(path, ndmin=2)
    if table.shape[1] != 2:
        raise ValueError(f"expected two columns (re, im); got {table.shape[1]}")
    return table[:, 0] + 1j * table[:, 1]


def dataset_target(dataset, spec: str = "reference") -> Target | None:
    """The target a dataset's ``/reference`` defines, or None without one.

    Pure: ``/reference/mps`` or ``/reference/psi``. With a noise channel the measured state is
    mixed: ``/reference/rho``, or the channel applied to the noiseless reference for
    L ≤ :data:`DENSE_MAX_L`; None above (no mixed target there).
    """
    reference, noise = dataset.reference, dataset.noise
    if noise.active:
        if "rho" in reference:
            return Target(spec, dataset.L, rho=np.asarray(reference["rho"], dtype=np.complex128))
        if dataset.L > DENSE_MAX_L or not ("psi" in reference or "mps" in reference):
            return None
        psi = reference["psi"] if "psi" in reference else mps_to_vector(reference["mps"])
        return Target(spec, dataset.L, rho=noise.apply(np.outer(psi, psi.conj())))
    if "mps" in reference:
        return pure_target(spec, dataset.L, reference["mps"])
    if "psi" in reference:
        return pure_target(spec, dataset.L, vector_to_mps(reference["psi"]))
    return None
