"""From a distribution over POVM records to a density matrix, the closest state, fidelities.

A distribution Q(a) over records a ∈ {0..K-1}^L (a model, or the truth) defines the operator
ρ = Σ_a Q(a) Q_a with Q_a = ⊗_i Q_{a_i} the dual frame of the POVM (docs/conventions.md
"Conventions"). Hermitian with trace Σ Q, it is positive only when Q is a Born distribution, which a
learned network's Q need not be.

**Small L** (:func:`density_matrix`): ρ is built explicitly and diagonalised once
(:class:`Reconstruction`); reported beside every fidelity are λ_min, the purity Tr ρ², the
negativity Σ_{λ<0} |λ|, the fidelity of the closest physical state (the Smolin–Gambetta–Smith
projection, :func:`project_to_physical`) and of the top eigenvector (the pure-state estimate).

**Quantum fidelity to a pure target** |ψ⟩::

    F = ⟨ψ|ρ|ψ⟩ = E_Q[g(a)],   g(a) = ⟨ψ|⊗_i Q_{a_i}|ψ⟩

- small L: F = ⟨ψ|ρ|ψ⟩ from the built ρ; a mixed target σ uses Uhlmann's
  F = (Tr √(√σ ρ √σ))² (:func:`uhlmann_fidelity`, batched; equal to qutip's to about 1e-8
  absolute for rank-deficient σ, ρ). A fidelity of a ρ
  with a negative eigenvalue is reported with ``physical = False`` (it may then exceed 1).
- any L: g(a) is contracted per sample through the target's MPS (:func:`pure_state_overlaps`);
  its variance can grow like 3^L, so a large relative error triggers a warning.
- a physical model (``mps``, ``lpdo``) holds its state: F is contracted exactly at any L
  (:class:`ContractedFidelity`).

Limits: the explicit ρ needs the K^L table and a 2^L × 2^L matrix, L ≤
:data:`qtomo.distribution.ENUMERATE_MAX_L`.

Example:
    >>> from qtomo.povm import get_povm
    >>> from qtomo.states.exact import ghz_state
    >>> povm, state = get_povm("pauli4"), ghz_state(3)
    >>> rec = density_matrix(state.distribution(povm).probabilities, povm)
    >>> round(rec.trace, 12), round(rec.fidelity(state.psi).value, 12), round(rec.purity, 12)
    (1.0, 1.0, 1.0)
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from qtomo.distribution import (
    Distribution,
    check_enumerable,
    distribution_device,
    sample_batches,
)
from qtomo.errors import QtomoError
from qtomo.estimate import Estimate
from qtomo.guards import STATE_TOL, check_finite, check_target
from qtomo.povm import POVM, PerQubitPOVM, invert_probabilities, sites_from_size
from qtomo.progress import progress_bar
from qtomo.states.mps import check_mps_shapes

__all__ = [
    "FidelityWarning",
    "QuantumFidelity",
    "ContractedFidelity",
    "Reconstruction",
    "SampledFidelity",
    "density_matrix",
    "mps_fidelity",
    "project_to_physical",
    "pure_state_overlaps",
    "quantum_fidelity",
    "simplex_projection",
    "uhlmann_fidelity",
]

#: eigenvalues above −PHYSICAL_TOL count as non-negative
PHYSICAL_TOL = 1e-10
#: relative standard error of a Monte Carlo fidelity above which a warning is issued
FIDELITY_WARN_RELATIVE = 0.1


class FidelityWarning(UserWarning):
    """A Monte Carlo fidelity whose standard error is too large to trust."""


# --------------------------------------------------------------------------- closest state


def simplex_projection(values: np.ndarray) -> np.ndarray:
    """The point of the probability simplex {p ≥ 0, Σ p = 1} nearest ``values`` in the 2-norm.

    p_k = max(μ_k − θ, 0) with the one θ that makes Σ p = 1 (found from the sorted values, O(D)
    after the sort). For values that sum to 1 this is the Smolin–Gambetta–Smith rule (PRL 108,
    070502 (2012)): walk up from the most negative value, zero it, and spread its deficit evenly
    over the rest while the smallest one left would turn negative.

    Args:
        values: (..., D) float, e.g. the eigenvalues of a Hermitian ρ (or of a batch of them);
            each row along the last axis is projected on its own.

    Returns:
        (..., D) float64, non-negative, each row summing to 1, in the order of ``values``.

    Example:
        >>> simplex_projection(np.array([0.7, 0.4, -0.1])).round(12).tolist()
        [0.65, 0.35, 0.0]
    """
    values = np.asarray(values, dtype=np.float64)
    descending = -np.sort(-values, axis=-1)
    partial = np.cumsum(descending, axis=-1) - 1.0
    count = np.arange(1, values.shape[-1] + 1)
    positive = descending - partial / count > 0  # True on a leading run: the support
    kept = values.shape[-1] - np.argmax(positive[..., ::-1], axis=-1)  # size of the support
    theta = np.take_along_axis(partial, kept[..., None] - 1, axis=-1) / kept[..., None]
    return np.clip(values - theta, 0.0, None)


def project_to_physical(rho: np.ndarray) -> np.ndarray:
    """The density matrix closest to ρ in the 2-norm (Smolin–Gambetta–Smith).

    Minimises ‖σ − H‖_F over density matrices σ (σ ≥ 0, Tr σ = 1), H = (ρ + ρ†)/2: the
    minimiser has H's eigenvectors and the eigenvalues of :func:`simplex_projection`. Clipping
    the negative eigenvalues and renormalising is *not* this minimiser (it keeps the excess
    weight of the positive part).

    Args:
        rho: (D, D) complex.

    Returns:
        (D, D) complex128, positive semidefinite with unit trace.

    Example:
        >>> project_to_physical(np.diag([0.7, 0.4, -0.1])).real.round(12).diagonal().tolist()
        [0.65, 0.35, 0.0]
    """
    return Reconstruction(np.asarray(rho, dtype=np.complex128)).projected().rho


# --------------------------------------------------------------------------- density matrix


@dataclass(frozen=True)
class QuantumFidelity:
    """Quantum fidelity of an explicitly built ρ to a target state (exact, no sampling error).

    Attributes:
        value: ⟨ψ|ρ|ψ⟩ (pure target) or (Tr √(√σ ρ √σ))² (mixed target σ), for ρ as built.
        physical: whether ρ is positive semidefinite (smallest eigenvalue ≥ −1e-10); if not,
            ``value`` is not a fidelity of any state and may exceed 1.
        min_eigenvalue: smallest eigenvalue of the Hermitian part of ρ.
        projected: the fidelity of the closest physical state (:func:`project_to_physical`).
        top_eigenvector: the fidelity of ρ's eigenvector of largest eigenvalue (the pure-state
            estimate).
        target: ``"pure"`` (a vector ψ) or ``"mixed"`` (a density matrix σ, e.g. a noisy state).
    """

    value: float
    physical: bool
    min_eigenvalue: float
    projected: float
    top_eigenvector: float
    target: str = "pure"

    def as_dict(self) -> dict:
        """JSON-ready: ``{"value", "stderr": 0.0, "method": "exact", "physical", …, "target"}``."""
        return {"value": self.value, "stderr": 0.0, "method": "exact", "physical": self.physical,
                "min_eigenvalue": self.min_eigenvalue, "projected": self.projected,
                "target": self.target}


def _hermitian_part(rho: np.ndarray) -> np.ndarray:
    return 0.5 * (rho + rho.conj().T)


def _fidelity_value(rho: np.ndarray, target: np.ndarray) -> float:
    if target.ndim == 1:
        return float(np.vdot(target, rho @ target).real)
    return float(uhlmann_fidelity(rho, target))


def uhlmann_fidelity(rho: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Uhlmann's F(ρ, σ) = (Tr √(√σ ρ √σ))² for one ρ or a batch of them against one σ.

    √σ is taken from σ's eigendecomposition (negative rounding clipped); the trace is Σ √μ over
    the eigenvalues μ ≥ 0 of the Hermitian √σ ρ √σ. Equal to qutip's ``fidelity`` squared (about
    1e-8 absolute for rank-deficient σ, ρ; tested against it); for a pure σ = |ψ⟩⟨ψ| it is
    ⟨ψ|ρ|ψ⟩. Batched so that the bootstrap replicates of many small reduced states cost one
    call (docs/evaluate.md "Reduced states of blocks").

    Args:
        rho: (..., D, D) complex, finite, Hermitian part used; positive for the value to be a
            fidelity.
        sigma: (D, D) complex density matrix (the positive one: its square root is taken),
            checked to be a state (:func:`qtomo.guards.check_target`).

    Raises:
        QtomoError: σ not a state, ρ with NaN, or shapes that differ.

    Returns:
        (...) float64.

    Example:
        >>> round(float(uhlmann_fidelity(np.diag([0.5, 0.5]), np.diag([1.0, 0.0]))), 12)
        0.5
    """
    sigma = np.asarray(sigma, dtype=np.complex128)
    rho = np.asarray(rho, dtype=np.complex128)
    if sigma.ndim != 2:
        raise QtomoError(f"σ must be a density matrix (D, D); got shape {sigma.shape}")
    check_target(sigma, sigma.shape[0])
    check_finite(rho, "ρ")
    if rho.shape[-2:] != sigma.shape:
        raise QtomoError(f"ρ of shape {rho.shape} does not match σ of shape {sigma.shape}")
    weights, vectors = np.linalg.eigh(_hermitian_part(sigma))
    root = (vectors * np.sqrt(np.clip(weights, 0.0, None))) @ vectors.conj().T  # √σ (D, D)
    hermitian = 0.5 * (rho + np.swapaxes(rho, -1, -2).conj())
    inner = np.linalg.eigvalsh(root @ hermitian @ root)  # (..., D)
    return np.sum(np.sqrt(np.clip(inner, 0.0, None)), axis=-1) ** 2


@dataclass(frozen=True, eq=False)
class Reconstruction:
    """An explicitly built ρ = Σ_a Q(a) ⊗_i Q_{a_i} with its diagnostics.

    The spectrum of the Hermitian part is computed once, on first use, and shared by every
    diagnostic, the projection and the fidelities.

    Attributes:
        rho: (D, D) complex128, D = 2^L, qubit 0 the most significant factor.
    """

    rho: np.ndarray

    @property
    def L(self) -> int:
        return sites_from_size(self.rho.shape[0], 2, "rows of a density matrix")

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

    @property
    def purity(self) -> float:
        """Tr ρ² = Σ λ² of the Hermitian part (> 1 is possible for an unphysical ρ)."""
        return float(np.sum(self.eigenvalues**2))

    @property
    def negativity(self) -> float:
        """Σ_{λ<0} |λ|: the weight of the negative eigenvalues (0 for a physical ρ)."""
        return float(-np.sum(np.clip(self.eigenvalues, None, 0.0)))

    def projected(self) -> Reconstruction:
        """The closest physical state in the 2-norm (see :func:`project_to_physical`)."""
        eigenvalues, vectors = self._spectrum
        return Reconstruction((vectors * simplex_projection(eigenvalues)) @ vectors.conj().T)

    def fidelity(self, target: np.ndarray) -> QuantumFidelity:
        """Fidelity to a target vector ψ (⟨ψ|ρ|ψ⟩) or density matrix σ ((Tr √(√σ ρ √σ))²).

        Raises:
            QtomoError: if the dimensions differ, the target is not a normalised state
                (:func:`qtomo.guards.check_target`) or ρ holds NaN.
        """
        target = np.asarray(target, dtype=np.complex128)
        check_target(target, self.rho.shape[0])
        check_finite(self.rho, "ρ")
        value = _fidelity_value(self.rho, target)
        projected = value if self.is_physical else _fidelity_value(self.projected().rho, target)
        top = self._spectrum[1][:, -1]
        return QuantumFidelity(value, self.is_physical, self.min_eigenvalue,
                               min(max(projected, 0.0), 1.0),
                               min(max(_fidelity_value(np.outer(top, top.conj()), target), 0.0),
                                   1.0),
                               "mixed" if target.ndim == 2 else "pure")

    def diagnostics(self, fidelity: QuantumFidelity | None = None) -> dict:
        """JSON-ready ``{"trace", "hermiticity_error", "min_eigenvalue", "purity", "negativity",
        "top_eigenvector_fidelity"}`` (the last None without a target's fidelity)."""
        return {"trace": self.trace, "hermiticity_error": self.hermiticity_error,
                "min_eigenvalue": self.min_eigenvalue, "purity": self.purity,
                "negativity": self.negativity,
                "top_eigenvector_fidelity": None if fidelity is None else fidelity.top_eigenvector}

    def to_qobj(self):
        """ρ as a ``qutip.Qobj`` with dims [[2]*L, [2]*L]."""
        import qutip

        return qutip.Qobj(self.rho, dims=[[2] * self.L, [2] * self.L])


def quantum_fidelity(rho: np.ndarray, target: np.ndarray) -> QuantumFidelity:
    """Fidelity of ρ to a target: ⟨ψ|ρ|ψ⟩ for a vector ψ, Uhlmann (Tr √(√σ ρ √σ))² for σ.

    Args:
        rho: (D, D) complex, e.g. the inverted model state (possibly not positive).
        target: (D,) normalised state vector or (D, D) density matrix.

    Returns:
        :class:`QuantumFidelity` with the flag ``physical``, the fidelity of the closest physical
        state and that of the top eigenvector.

    Raises:
        QtomoError: if the dimensions differ, ρ is not square, finite and of trace 1, or the
            target is not a normalised state.

    Example:
        >>> psi = np.array([1, 0], dtype=complex)
        >>> fid = quantum_fidelity(np.diag([1.1, -0.1]), psi)
        >>> round(fid.value, 12), fid.physical, round(fid.projected, 12)
        (1.1, False, 1.0)
    """
    rho = np.asarray(rho, dtype=np.complex128)
    if rho.ndim != 2 or rho.shape[0] != rho.shape[1]:
        raise QtomoError(f"ρ must be a square matrix (D, D); got shape {rho.shape}")
    check_finite(rho, "ρ")
    trace = complex(np.trace(rho))
    if abs(trace - 1) > STATE_TOL:
        raise QtomoError(f"ρ has trace {trace.real:.6g}; expected 1 (a normalised Q inverts "
                         f"to trace 1)")
    return Reconstruction(rho).fidelity(target)


def density_matrix(probabilities: np.ndarray, povm: POVM | PerQubitPOVM) -> Reconstruction:
    """ρ = Σ_a Q(a) ⊗_i Q_{a_i}, contracted one qubit at a time (:func:`invert_probabilities`).

    Args:
        probabilities: (K^L,) float, Q over all records in enumeration order (see
            :func:`qtomo.distribution.enumerate_probabilities`).
        povm: the POVM of the records.

    Returns:
        :class:`Reconstruction`.

    Raises:
        QtomoError: for a table that is not K^L long or L > ENUMERATE_MAX_L.

    Example:
        >>> from qtomo.povm import get_povm
        >>> rec = density_matrix(np.full(16, 1 / 16), get_povm("tetra"))   # uniform Q
        >>> bool(np.allclose(rec.rho, np.eye(4) / 4)), rec.is_physical
        (True, True)
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    check_enumerable(sites_from_size(probabilities.size, povm.K, "probabilities"),
                     "the exact density matrix")
    return Reconstruction(invert_probabilities(probabilities, povm))


# --------------------------------------------------------------------------- any L: Monte Carlo


@dataclass(frozen=True)
class SampledFidelity:
    """Monte Carlo F = E_Q[⟨ψ|⊗_i Q_{a_i}|ψ⟩] over ``samples`` model samples, ± one stderr.

    ``method`` is ``"monte-carlo"`` (per-sample MPS overlaps, :func:`mps_fidelity`) or
    ``"masked"`` (the GHZ fidelity from masked ancestral sampling, :mod:`qtomo.products`).
    """

    estimate: Estimate
    samples: int
    method: str = "monte-carlo"

    @property
    def reliable(self) -> bool:
        """Relative standard error at most :data:`FIDELITY_WARN_RELATIVE`."""
        return bool(self.estimate.relative_error <= FIDELITY_WARN_RELATIVE)

    def as_dict(self) -> dict:
        return {**self.estimate.as_dict(), "method": self.method, "samples": self.samples}


@dataclass(frozen=True)
class ContractedFidelity:
    """F = ⟨ψ|ρ|ψ⟩ of a physical model's state (ρ ≥ 0 by construction) to a pure target,
    contracted exactly through both tensor networks at any L
    (:func:`qtomo.states.mps.pure_state_fidelity`): no sampling error."""

    value: float

    def as_dict(self) -> dict:
        return {"value": self.value, "stderr": 0.0, "method": "contraction", "physical": True}


def pure_state_overlaps(records: np.ndarray | torch.Tensor, mps: Sequence[np.ndarray],
                        povm: POVM | PerQubitPOVM, *, batch_size: int = 8192,
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
    duals = torch.tensor(povm.site_duals(len(tensors)), dtype=torch.complex128,
                         device=device)  # (L, K, 2, 2)
    values = []
    for start in range(0, records.shape[0], batch_size):
        a = records[start:start + batch_size].to(device=device, dtype=torch.long)  # (B, L)
        env = torch.ones((a.shape[0], 1, 1), dtype=torch.complex128, device=device)  # (B, χ, χ)
        for i, B in enumerate(tensors):
            ket = torch.einsum("bxy,ysr->bxsr", env, B)  # (B, χl, 2, χr)
            ket = torch.einsum("bts,bxsr->bxtr", duals[i, a[:, i]], ket)  # (B, χl, 2, χr)
            env = torch.einsum("xtq,bxtr->bqr", B.conj(), ket)  # (B, χr, χr)
        values.append(env[:, 0, 0].real.to("cpu", torch.float64).numpy())
    return np.concatenate(values) if values else np.zeros(0)


def mps_fidelity(model: Distribution, mps: Sequence[np.ndarray], povm: POVM | PerQubitPOVM, *,
                 samples: int = 100_000,
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
    device = distribution_device(model)
    values = []
    with progress_bar(samples, "fidelity", quiet=quiet, unit="rec") as bar:
        for batch in sample_batches(model, samples, batch_size, generator):
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
