"""Local noise channels on every qubit of a prepared state (docs/simulate.md "Noisy states").

One channel acts on each qubit independently after the state is prepared, ρ → (⊗_i E)(ρ), with
E = D_p ∘ Φ_q ∘ A_γ (amplitude damping first, then dephasing, then depolarizing; D_p and Φ_q
commute, A_γ does not)::

    A_γ(ρ) = K_0 ρ K_0† + K_1 ρ K_1†,   K_0 = [[1, 0], [0, √(1−γ)]],   K_1 = [[0, √γ], [0, 0]]
    Φ_q(ρ) = (1 − q) ρ + q Z ρ Z
    D_p(ρ) = (1 − p) ρ + p Tr(ρ) 1/2 = (1 − 3p/4) ρ + (p/4)(XρX + YρY + ZρZ)

with p, q, γ in [0, 1] (``depolarizing``, ``dephasing``, ``amplitude_damping``). γ = 1 sends
every state to |0⟩⟨0|, q = 1/2 removes all coherence in Z, p = 1 gives 1/2.

**Heisenberg picture.** E(ρ) = Σ_k K_k ρ K_k† has the adjoint E†(O) = Σ_k K_k† O K_k, with
Tr[E(ρ) O] = Tr[ρ E†(O)]. For a product measurement and a product observable this moves the noise
onto the local factors:

    P(a) = Tr[(⊗E)(ρ) ⊗_i M_{a_i}] = Tr[ρ ⊗_i E†(M_{a_i})],   ⟨⊗O_i⟩_noisy = ⟨ψ|⊗_i E†(O_i)|ψ⟩,

so the noisy records of a pure MPS are the pure MPS measured with the POVM E†(M_k)
(:meth:`LocalNoise.heisenberg_povm`; no longer rank one, so the sampler takes its mixed-environment
ln P pass). The dense path applies ⊗E to ρ itself (:meth:`LocalNoise.apply`), which needs the
2^L × 2^L matrix: L ≤ :data:`NOISY_EXACT_MAX_L`.

Example:
    >>> noise = LocalNoise(depolarizing=0.2)
    >>> rho = np.array([[1, 0], [0, 0]], dtype=complex)          # |0⟩⟨0|
    >>> np.round(noise.apply(rho).real, 6).tolist()               # (1 − p)|0⟩⟨0| + p 1/2
    [[0.9, 0.0], [0.0, 0.1]]
    >>> np.round(noise.adjoint(PAULI["Z"]).real, 6).tolist()      # E†(Z) = (1 − p) Z
    [[0.8, 0.0], [0.0, -0.8]]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from qtomo.errors import QtomoError
from qtomo.povm import PAULI, POVM, PerQubitPOVM
from qtomo.states.exact import ExactState, MixedState
from qtomo.states.hamiltonians import TFIM
from qtomo.states.mps import MPSState, block_density_matrix, correlations
from qtomo.states.mps_sampler import MPSDistribution

__all__ = ["CHANNELS", "NOISY_EXACT_MAX_L", "LocalNoise", "NoisyMPSState", "noisy_reduced_state",
           "noisy_state"]

#: largest L of the dense noisy path: ρ is 2^L × 2^L complex128 (16 MiB at L = 10) and is stored
#: as /reference/rho
NOISY_EXACT_MAX_L = 10

#: channel parameters, in the order they act on a qubit (also the dataset's root attributes)
CHANNELS = ("amplitude_damping", "dephasing", "depolarizing")


@dataclass(frozen=True)
class LocalNoise:
    """The single-qubit channel E = D_p ∘ Φ_q ∘ A_γ applied to every qubit (module docstring).

    Args:
        depolarizing: p in [0, 1].
        dephasing: q in [0, 1] (Z with probability q).
        amplitude_damping: γ in [0, 1].

    Raises:
        QtomoError: for a parameter that is not a number in [0, 1] (NaN included).

    Example:
        >>> LocalNoise(dephasing=0.1).attrs
        {'amplitude_damping': 0.0, 'dephasing': 0.1, 'depolarizing': 0.0}
        >>> LocalNoise().active
        False
    """

    depolarizing: float = 0.0
    dephasing: float = 0.0
    amplitude_damping: float = 0.0
    kraus: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in CHANNELS:
            value = getattr(self, name)
            if (isinstance(value, bool) or not isinstance(value, (int, float, np.number))
                    or not math.isfinite(value) or not 0 <= value <= 1):
                raise QtomoError(f"{name} must be a probability in [0, 1]; got {value!r}")
            object.__setattr__(self, name, float(value))
        gamma, q, p = self.amplitude_damping, self.dephasing, self.depolarizing
        damping = [np.array([[1, 0], [0, math.sqrt(1 - gamma)]]),
                   np.array([[0, math.sqrt(gamma)], [0, 0]])]
        dephasing = [math.sqrt(1 - q) * PAULI["I"], math.sqrt(q) * PAULI["Z"]]
        depolarizing = [math.sqrt(1 - 3 * p / 4) * PAULI["I"],
                        *(math.sqrt(p / 4) * PAULI[letter] for letter in "XYZ")]
        # Kraus operators of the composition: D ∘ Φ ∘ A has K = K_D K_Φ K_A
        kraus = np.array([d @ f @ a for d in depolarizing for f in dephasing for a in damping],
                         dtype=np.complex128)  # (16, 2, 2)
        kraus = kraus[np.linalg.norm(kraus, axis=(1, 2)) > 0]
        kraus.flags.writeable = False
        object.__setattr__(self, "kraus", kraus)

    @classmethod
    def from_attrs(cls, attrs: dict) -> LocalNoise:
        """The channel recorded in a dataset's root attributes (absent parameters are 0)."""
        return cls(**{name: attrs.get(name, 0.0) for name in CHANNELS})

    @property
    def active(self) -> bool:
        """Whether any parameter is non-zero (all zero is the identity channel)."""
        return any(getattr(self, name) > 0 for name in CHANNELS)

    @property
    def attrs(self) -> dict[str, float]:
        """The root attributes of a dataset: every parameter when active, none otherwise."""
        return {name: getattr(self, name) for name in CHANNELS} if self.active else {}

    def __str__(self) -> str:
        terms = [f"{name} {getattr(self, name):g}" for name in CHANNELS if getattr(self, name)]
        return ", ".join(terms) or "no noise"

    def adjoint(self, op: np.ndarray) -> np.ndarray:
        """E†(O) = Σ_k K_k† O K_k for one or many single-qubit operators.

        Args:
            op: (..., 2, 2) complex.

        Returns:
            (..., 2, 2) complex128.
        """
        op = np.asarray(op, dtype=np.complex128)
        return np.einsum("kts,...tu,kuv->...sv", self.kraus.conj(), op, self.kraus)

    def apply(self, rho: np.ndarray) -> np.ndarray:
        """(⊗_i E)(ρ) for a dense ρ of L qubits, one qubit at a time.

        Args:
            rho: (2^L, 2^L) complex, qubit 0 the most significant factor.

        Returns:
            (2^L, 2^L) complex128.
        """
        rho = np.asarray(rho, dtype=np.complex128)
        D = rho.shape[0]
        L = D.bit_length() - 1
        if rho.shape != (D, D) or 2**L != D:
            raise QtomoError(f"expected a (2^L, 2^L) density matrix; got shape {rho.shape}")
        # S[s, t, u, v] = Σ_k K[s, u] conj(K[t, v]): E(ρ)_st = Σ_uv S_stuv ρ_uv on one qubit
        superoperator = np.einsum("ksu,ktv->stuv", self.kraus, self.kraus.conj())
        for site in range(L):
            left, right = 2**site, 2 ** (L - 1 - site)
            work = rho.reshape(left, 2, right, left, 2, right)
            rho = np.einsum("stuv,aubcvd->asbctd", superoperator, work).reshape(D, D)
        return rho

    def heisenberg_povm(self, povm: POVM | PerQubitPOVM) -> POVM | PerQubitPOVM:
        """The POVM E†(M_k): measuring it on ρ gives the distribution of M_k on (⊗E)(ρ).

        Its elements are positive and sum to 1 (E is trace preserving, so E† is unital) but may
        be rank two and, for strong noise, not informationally complete.

        Example:
            >>> from qtomo.povm import get_povm
            >>> noisy = LocalNoise(depolarizing=1.0).heisenberg_povm(get_povm("pauli6"))
            >>> bool(np.allclose(noisy.elements, np.eye(2) / 6))   # p = 1: outcomes uniform
            True
        """
        return povm.apply(lambda site: POVM(f"E†({site.name})", self.adjoint(site.elements),
                                            require_complete=False))


@dataclass(frozen=True)
class NoisyMPSState:
    """A pure MPS |ψ⟩ followed by a local channel on every qubit: ρ = (⊗E)(|ψ⟩⟨ψ|).

    The MPS stays the noiseless state; records and references use the Heisenberg picture
    (module docstring), so any L works at the cost of the pure state's contractions.

    Attributes:
        pure: the noiseless :class:`qtomo.states.mps.MPSState`.
        noise: the channel.
    """

    pure: MPSState
    noise: LocalNoise
    method: str = field(default="mps", init=False)

    @property
    def L(self) -> int:
        return self.pure.L

    @property
    def attrs(self) -> dict:
        return {**self.pure.attrs, **self.noise.attrs}

    @property
    def hamiltonian(self) -> TFIM | None:
        return self.pure.hamiltonian

    def references(self) -> dict[str, np.ndarray | list[np.ndarray]]:
        """⟨X_i⟩, ⟨Z_i⟩ (L,), ⟨X_iX_j⟩, ⟨Z_iZ_j⟩ (L, L), energy (TFIM, XXZ) of the noisy state, each
        ⟨ψ|⊗E†(σ_i)|ψ⟩, its purity Tr ρ² (:meth:`purity`), and ``mps``, the noiseless tensors.

        Example:
            >>> from qtomo.states.mps import ghz_mps
            >>> refs = NoisyMPSState(ghz_mps(20), LocalNoise(depolarizing=0.1)).references()
            >>> round(float(refs["ZZ"][0, 19]), 12)                # (1 − p)² ⟨Z_0 Z_19⟩
            0.81
        """
        pauli = {letter: self.noise.adjoint(PAULI[letter]) for letter in ("X", "Y", "Z")}
        operators = {letter: pauli[letter] for letter in ("X", "Z")}
        references: dict[str, np.ndarray | list[np.ndarray]] = correlations(
            self.pure.tensors, operators, self.pure.hamiltonian, pauli
        )
        references["purity"] = self.purity()
        references["mps"] = self.pure.mps
        return references

    def purity(self) -> np.float64:
        """Tr ρ² of ρ = (⊗E)(|ψ⟩⟨ψ|), contracting two copies of ψ and ψ* (O(L χ⁵), χ⁴ memory).

        Per site W[t, s, u, v] = Tr[E(|t⟩⟨s|) E(|u⟩⟨v|)], and Tr ρ² = Σ Π_i W ψ(t) ψ*(s) ψ(u) ψ*(v).

        Example:
            >>> from qtomo.states.mps import ghz_mps
            >>> state = NoisyMPSState(ghz_mps(12), LocalNoise(dephasing=0.5))
            >>> round(float(state.purity()), 12)                   # (|0…0⟩⟨0…0| + |1…1⟩⟨1…1|)/2
            0.5
        """
        basis = np.eye(4, dtype=np.complex128).reshape(2, 2, 2, 2)  # |t⟩⟨s| at [t, s]
        images = np.einsum("kab,tsbc,kdc->tsad", self.noise.kraus, basis, self.noise.kraus.conj())
        W = np.einsum("tsab,uvba->tsuv", images, images)
        F = np.ones((1, 1, 1, 1), dtype=np.complex128)  # bonds (ψ, ψ*, ψ, ψ*)
        for B in self.pure.tensors:
            F = np.einsum("abcd,atA->tbcdA", F, B, optimize=True)
            F = np.einsum("tbcdA,bsB->tscdAB", F, B.conj(), optimize=True)
            F = np.einsum("tscdAB,tsuv->uvcdAB", F, W, optimize=True)
            F = np.einsum("uvcdAB,cuC->vdABC", F, B, optimize=True)
            F = np.einsum("vdABC,dvD->ABCD", F, B.conj(), optimize=True)
        return np.float64(F.reshape(-1)[0].real)

    def distribution(self, povm: POVM, device: str | torch.device = "cpu") -> MPSDistribution:
        """P(a) = Tr[ρ ⊗ M_{a_i}] = ⟨ψ|⊗E†(M_{a_i})|ψ⟩, sampled and evaluated from the MPS.

        The sampler measures E†(M_k); its ``povm`` attribute names the physical POVM M, whose
        outcomes the records are (so the truth can stand in for a model of the dataset).
        """
        distribution = MPSDistribution(self.pure.tensors, self.noise.heisenberg_povm(povm),
                                       device=device)
        distribution.povm = povm
        return distribution


def noisy_state(state: ExactState | MPSState, noise: LocalNoise):
    """The prepared state followed by ``noise`` on every qubit, on the state's own path.

    Returns ``state`` itself when the channel is the identity (all parameters 0), a
    :class:`qtomo.states.exact.MixedState` holding (⊗E)(|ψ⟩⟨ψ|) for a dense state (L ≤
    :data:`NOISY_EXACT_MAX_L`), and a :class:`NoisyMPSState` for an MPS.

    Raises:
        QtomoError: for a dense state above :data:`NOISY_EXACT_MAX_L` qubits.
    """
    if not noise.active:
        return state
    if isinstance(state, MPSState):
        return NoisyMPSState(state, noise)
    if state.L > NOISY_EXACT_MAX_L:
        raise QtomoError(
            f"a noise channel on the exact path needs L <= {NOISY_EXACT_MAX_L} (dense 2^L × 2^L "
            f"density matrix); got L = {state.L}; use the MPS path"
        )
    rho = noise.apply(np.outer(state.psi, state.psi.conj()))
    return MixedState(rho, {**state.attrs, **noise.attrs}, state.hamiltonian)


def noisy_reduced_state(
    tensors: Sequence[np.ndarray], sites: Sequence[int], noise: LocalNoise | None = None
) -> np.ndarray:
    """The reduced state (⊗E)(Tr_rest |ψ⟩⟨ψ|) of a block of sites of a right-canonical MPS.

    Local channels commute with the partial trace over other qubits, so this is the reduced state
    of the noisy state: the target of reduced-state evaluation at any L.

    Args:
        tensors: L right-canonical MPS tensors (χ_i, 2, χ_{i+1}).
        sites: k distinct sites (any order; the result orders them increasingly, the first the
            most significant factor).
        noise: the channel, or None for the noiseless reduced state.

    Returns:
        (2^k, 2^k) complex128. Cost O(L χ³ + 4^k χ³).

    Raises:
        QtomoError: for sites outside 0..L−1 or repeated.

    Example:
        >>> from qtomo.states.mps import ghz_mps
        >>> rho = noisy_reduced_state(ghz_mps(30).tensors, [3, 17], LocalNoise(dephasing=0.5))
        >>> np.round(rho.real, 6).tolist()[0], float(np.abs(rho[0, 3]))   # coherence ∝ (1−2q)^30
        ([0.5, 0.0, 0.0, 0.0], 0.0)
    """
    rho = block_density_matrix(tensors, sites)
    return noise.apply(rho) if noise is not None else rho
