"""Exact (dense state-vector) states and their POVM distributions, for small L.

Conventions are those of :mod:`qtomo.states.hamiltonians`: ψ is a (2^L,) complex128 vector with
qubit 0 the most significant bit. The POVM distribution P(a) = Tr(M_a |ψ⟩⟨ψ|) is tabulated over
all K^L records by :func:`qtomo.povm.born_probabilities`, so the exact path is limited to
K^L ≤ 2^24 (L ≤ 12 for K = 4, L ≤ 9 for K = 6); :func:`exact_limit` gives the bound.

Example:
    >>> import torch
    >>> from qtomo.povm import get_povm
    >>> state = ghz_state(3)
    >>> dist = state.distribution(get_povm("pauli6"))
    >>> round(float(dist.probabilities.sum()), 12)
    1.0
    >>> a, log_p = dist.sample_with_log_prob(5, torch.Generator().manual_seed(0))
    >>> a.shape, bool(torch.allclose(log_p, dist.log_prob(a)))
    (torch.Size([5, 3]), True)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as sla
import torch

from qtomo.distribution import record_indices, records_at
from qtomo.errors import QtomoError
from qtomo.povm import PAULI, POVM, born_probabilities, check_outcomes, sites_from_size
from qtomo.states.hamiltonians import TFIM

__all__ = [
    "EXACT_MAX_L",
    "ExactDistribution",
    "ExactState",
    "MixedState",
    "SINGLE_QUBIT_STATES",
    "bond_entropies",
    "exact_limit",
    "expectation_pauli_string",
    "ghz_state",
    "product_state",
    "single_qubit_state",
    "spectrum_entropy",
    "tfim_ground_state",
]

#: largest L of any exact computation (dense ψ and ρ = |ψ⟩⟨ψ| of 4^L entries)
EXACT_MAX_L = 12
_MAX_TABLE = 2**24
_SAMPLE_CHUNK = 2**18

_S = 1 / np.sqrt(2)
#: parity sectors whose lowest energies differ by at most this are a tie (parity +1 wins)
_TIE = 1e-12
SINGLE_QUBIT_STATES: dict[str, tuple[complex, complex]] = {
    "0": (1, 0),
    "1": (0, 1),
    "+": (_S, _S),
    "-": (_S, -_S),
    "+i": (_S, 1j * _S),
    "-i": (_S, -1j * _S),
}


def exact_limit(K: int) -> int:
    """Largest L the exact path handles for a K-outcome POVM: K^L ≤ 2^24 and L ≤ 12.

    Example:
        >>> exact_limit(4), exact_limit(6)
        (12, 9)
    """
    L = 1
    while L < EXACT_MAX_L and K ** (L + 1) <= _MAX_TABLE:
        L += 1
    return L


def single_qubit_state(state: str | Sequence[complex]) -> np.ndarray:
    """A normalised single-qubit vector from a label (0, 1, +, -, +i, -i) or two amplitudes.

    Returns:
        (2,) complex128.
    """
    if isinstance(state, str):
        if state not in SINGLE_QUBIT_STATES:
            raise QtomoError(
                f"unknown single-qubit state {state!r}; expected one of "
                f"{', '.join(SINGLE_QUBIT_STATES)} or two amplitudes"
            )
        return np.array(SINGLE_QUBIT_STATES[state], dtype=np.complex128)
    vector = np.asarray(state, dtype=np.complex128)
    norm = np.linalg.norm(vector) if vector.shape == (2,) else 0.0
    if vector.shape != (2,) or not np.isfinite(norm) or norm == 0:
        raise QtomoError(f"a single-qubit state needs two finite amplitudes, not all zero; "
                         f"got {state!r}")
    return vector / norm


def _check_exact_L(L: int) -> None:
    if not 1 <= L <= EXACT_MAX_L:
        raise QtomoError(f"the exact path handles 1 <= L <= {EXACT_MAX_L}; got L = {L}")


def expectation_pauli_string(psi: np.ndarray, string: Mapping[int, str]) -> float:
    """⟨ψ|⊗_i σ_i|ψ⟩, or Tr(ρ ⊗_i σ_i) for a density matrix, for a Pauli string
    {site: "X" | "Y" | "Z"} (real part; exact for Hermitian).

    Args:
        psi: (2^L,) complex, normalised, or a (2^L, 2^L) density matrix.
        string: sites to Pauli letters; unnamed sites carry the identity.

    Example:
        >>> rho = np.diag([0.5, 0, 0, 0.5]).astype(complex)      # (|00⟩⟨00| + |11⟩⟨11|)/2
        >>> expectation_pauli_string(rho, {0: "Z", 1: "Z"})
        1.0
    """
    L = sites_from_size(psi.shape[0], 2, "amplitudes")
    phi = psi.reshape((2,) * (L * psi.ndim))  # a density matrix: ket axes first
    for site, letter in string.items():
        phi = np.moveaxis(np.tensordot(PAULI[letter], phi, axes=([1], [site])), 0, site)
    if psi.ndim == 2:
        return float(np.trace(phi.reshape(psi.shape)).real)
    return float(np.vdot(psi, phi.reshape(-1)).real)


def bond_entropies(psi: np.ndarray) -> np.ndarray:
    """Von Neumann entanglement entropy S_b = −Σ λ² ln λ² across each bond b | b+1 (nats).

    Returns:
        (L-1,) float64.
    """
    L = sites_from_size(psi.size, 2, "amplitudes")
    return np.array([spectrum_entropy(np.linalg.svd(psi.reshape(2 ** (b + 1), -1),
                                                    compute_uv=False) ** 2)
                     for b in range(L - 1)], dtype=np.float64).reshape(L - 1)


def spectrum_entropy(weights: np.ndarray) -> float:
    """Von Neumann entropy −Σ_k w_k ln w_k (nats) of a spectrum (Schmidt weights λ², or the
    eigenvalues of a density matrix); weights ≤ 1e-300 contribute 0.

    Example:
        >>> round(spectrum_entropy(np.array([0.5, 0.5, 0.0])), 12)      # ln 2
        0.69314718056
    """
    weights = np.asarray(weights, dtype=np.float64)
    weights = weights[weights > 1e-300]
    return float(-np.sum(weights * np.log(weights)))


@dataclass(frozen=True)
class ExactState:
    """A pure state of L qubits held as a dense vector.

    Attributes:
        psi: (2^L,) complex128, normalised.
        attrs: provenance written to the dataset root (``state`` and its parameters).
        hamiltonian: the TFIM the state is the ground state of, or None.
    """

    psi: np.ndarray
    attrs: dict = field(default_factory=dict)
    hamiltonian: TFIM | None = None
    method: str = field(default="exact", init=False)

    @property
    def L(self) -> int:
        return sites_from_size(self.psi.size, 2, "amplitudes")

    def references(self) -> dict[str, np.ndarray]:
        """Reference values (docs/conventions.md "The dataset file"): energy (if H), X, Z (L,), ZZ,
        XX (L, L), entropy, psi."""
        L, psi = self.L, self.psi
        # the Hadamard transform H^{⊗L} makes X diagonal: ⟨X_i X_j⟩ = Σ |ψ̃_s|² x_i x_j
        tilde = _hadamard_all(psi.reshape((2,) * L), range(L)).reshape(-1)
        references = {
            **_spin_moments(np.abs(psi) ** 2, "Z"),
            **_spin_moments(np.abs(tilde) ** 2, "X"),
            "entropy": bond_entropies(psi),
            "psi": psi.copy(),
        }
        if self.hamiltonian is not None:
            references["energy"] = np.float64(
                np.vdot(psi, self.hamiltonian.sparse_matrix() @ psi).real
            )
        return references

    def distribution(self, povm: POVM, device: str | torch.device = "cpu") -> ExactDistribution:
        """The exact POVM distribution P(a) = Tr(M_a |ψ⟩⟨ψ|) over all K^L records."""
        _check_table(self.L, povm)
        rho = np.outer(self.psi, self.psi.conj())
        return ExactDistribution(povm, born_probabilities(rho, povm))


def _hadamard_all(tensor: np.ndarray, axes) -> np.ndarray:
    """The Hadamard gate (|0⟩⟨+| + |1⟩⟨−|) applied to each listed axis of a (2, 2, …) tensor."""
    hadamard = np.array([[1, 1], [1, -1]]) * _S
    for axis in axes:
        tensor = np.moveaxis(np.tensordot(hadamard, tensor, axes=([1], [axis])), 0, axis)
    return tensor


def _spin_moments(probabilities: np.ndarray, letter: str) -> dict[str, np.ndarray]:
    """⟨σ_i⟩ (L,) and ⟨σ_i σ_j⟩ (L, L) from the distribution (D,) of σ's eigenbasis records."""
    L = int(probabilities.size).bit_length() - 1
    spins = 1 - 2 * ((np.arange(probabilities.size)[:, None] >> (L - 1 - np.arange(L))) & 1)
    return {letter: spins.T @ probabilities,  # spins: (D, L), ±1
            letter * 2: np.einsum("d,di,dj->ij", probabilities, spins, spins)}


@dataclass(frozen=True)
class MixedState:
    """A mixed state of L qubits held as a dense density matrix (the noisy exact path).

    Attributes:
        rho: (2^L, 2^L) complex128, Hermitian, unit trace, positive semidefinite.
        attrs: provenance for the dataset root (state, its parameters, the channel).
        hamiltonian: the TFIM of the state before the noise, or None.

    Example:
        >>> rho = np.diag([0.5, 0, 0, 0.5]).astype(complex)    # (|00⟩⟨00| + |11⟩⟨11|)/2
        >>> refs = MixedState(rho).references()
        >>> [float(refs[name][0, 1]) for name in ("ZZ", "XX")], float(refs["purity"])
        ([1.0, 0.0], 0.5)
    """

    rho: np.ndarray
    attrs: dict = field(default_factory=dict)
    hamiltonian: TFIM | None = None
    method: str = field(default="exact", init=False)

    @property
    def L(self) -> int:
        return sites_from_size(self.rho.shape[0], 2, "rows of a density matrix")

    def references(self) -> dict[str, np.ndarray]:
        """Energy Tr(Hρ) (if H), X, Z (L,), ZZ, XX (L, L), purity Tr ρ² and rho itself.

        ⟨Z_i Z_j⟩ needs only diag ρ; ⟨X_i X_j⟩ the diagonal of H^{⊗L} ρ H^{⊗L}. The entanglement
        entropy of a mixed state is not a block entropy, so ``entropy`` is absent.
        """
        L, rho = self.L, self.rho
        tilde = _hadamard_all(rho.reshape((2,) * (2 * L)), range(2 * L)).reshape(rho.shape)
        references = {
            **_spin_moments(np.diagonal(rho).real.copy(), "Z"),
            **_spin_moments(np.diagonal(tilde).real.copy(), "X"),
            "purity": np.float64(np.vdot(rho, rho).real),  # Σ |ρ_st|² = Tr ρ² (ρ Hermitian)
            "rho": rho.copy(),
        }
        if self.hamiltonian is not None:  # Tr(Hρ) = Σ_st H_st ρ_ts
            H = self.hamiltonian.sparse_matrix()
            references["energy"] = np.float64(H.multiply(rho.T).sum().real)
        return references

    def distribution(self, povm: POVM, device: str | torch.device = "cpu") -> ExactDistribution:
        """The exact POVM distribution P(a) = Tr(M_a ρ) over all K^L records."""
        _check_table(self.L, povm)
        return ExactDistribution(povm, born_probabilities(self.rho, povm))


def _check_table(L: int, povm: POVM) -> None:
    if L > exact_limit(povm.K):
        raise QtomoError(
            f"the exact POVM table needs L <= {exact_limit(povm.K)} for POVM {povm.name!r} "
            f"(K = {povm.K}); got L = {L}"
        )


class ExactDistribution:
    """A tabulated distribution P over all K^L records, with the model interface.

    Args:
        povm: the POVM the records belong to (sets K).
        probabilities: (K^L,) float64, indexed as :func:`qtomo.povm.enumerate_outcomes`.

    ``log_prob`` is exact (−inf for records of probability 0); ``sample`` draws by inverting the
    cumulative distribution for a whole batch at once.
    """

    family = "exact"
    exact_log_prob = True
    has_log_prob = True

    def __init__(self, povm: POVM, probabilities: np.ndarray) -> None:
        probabilities = np.clip(np.asarray(probabilities, dtype=np.float64), 0.0, None)
        L = sites_from_size(probabilities.size, povm.K, "probabilities")
        if abs(probabilities.sum() - 1) > 1e-8:
            raise QtomoError(f"expected probabilities summing to 1; got {probabilities.sum():.6g}")
        self.povm, self.L, self.K = povm, int(L), povm.K
        self.probabilities = probabilities
        with np.errstate(divide="ignore"):  # records of probability 0 get ln P = -inf
            self._log_table = torch.from_numpy(np.log(probabilities))
        self._cdf = torch.from_numpy(np.cumsum(probabilities))

    def log_prob(self, a: torch.Tensor) -> torch.Tensor:
        """ln P(a) for a LongTensor (B, L); returns (B,) float64 on a's device.

        Raises:
            QtomoError: for a wrong shape or dtype, or outcomes outside 0..K−1.
        """
        a = torch.as_tensor(a)
        check_outcomes(a, self.L, self.K, self.povm.name)
        return self._log_table[record_indices(a.cpu(), self.K)].to(a.device)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n records drawn from P; LongTensor (n, L) on the CPU."""
        return self.sample_with_log_prob(n, generator)[0]

    def sample_with_log_prob(
        self, n: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """n records from P and their exact ln P; (LongTensor (n, L), float64 (n,)), CPU."""
        chunks = []
        for start in range(0, n, _SAMPLE_CHUNK):
            u = torch.rand(min(_SAMPLE_CHUNK, n - start), generator=generator, dtype=torch.float64)
            chunks.append(torch.searchsorted(self._cdf, u * self._cdf[-1], right=True))
        index = torch.cat(chunks).clamp_(max=self._cdf.numel() - 1) if chunks else torch.zeros(
            0, dtype=torch.int64
        )
        return records_at(index, self.L, self.K), self._log_table[index]


def tfim_ground_state(
    L: int, J: float = 1.0, h: float = 1.0, boundary: str = "open"
) -> ExactState:
    """Ground state of H = −J Σ Z_i Z_{i+1} − h Σ X_i by sparse Lanczos in each parity sector.

    H commutes with Π = ⊗X_i, so it is diagonalised separately on the Π = ±1 subspaces (spanned
    by (|s⟩ ± |s̄⟩)/√2); the lower sector wins and, within 1e-12 of a tie (h = 0, or the
    ordered phase's exponentially small splitting), the parity-even state, the limit of the
    open chain's ground state as h → 0⁺. A tie is reported in ``attrs["warning"]`` (as on the
    MPS path; ``qtomo simulate`` prints it and stores it in the file).

    Raises:
        QtomoError: for bad parameters, L beyond the exact limit, or J = h = 0 (H = 0).

    Example:
        >>> state = tfim_ground_state(6, h=1.0)
        >>> bool(abs(state.references()["energy"] - TFIM(6).free_fermion_ground_energy()) < 1e-10)
        True
    """
    hamiltonian = TFIM(L, J, h, boundary)
    hamiltonian.check_ground_state_defined()
    _check_exact_L(L)
    D = 2**L
    half = np.arange(D // 2)
    candidates = []
    for parity in (+1, -1):
        basis = sp.csr_matrix(
            (_S * np.repeat([1.0, parity], D // 2),
             (np.concatenate([half, D - 1 - half]), np.concatenate([half, half]))),
            shape=(D, D // 2),
        )  # (D, D/2), columns (|s⟩ ± |s̄⟩)/√2
        sector = (basis.T @ hamiltonian.sparse_matrix() @ basis).tocsr()
        if sector.shape[0] <= 64:
            energies, vectors = np.linalg.eigh(sector.toarray())
        else:
            start = np.ones(sector.shape[0])
            energies, vectors = sla.eigsh(sector, k=1, which="SA", v0=start, tol=1e-14)
        candidates.append((energies[0] - _TIE * (parity > 0), basis @ vectors[:, 0]))
    psi = min(candidates, key=lambda pair: pair[0])[1].astype(np.complex128)
    psi /= np.linalg.norm(psi)
    attrs = {"state": "tfim", "J": float(J), "h": float(h), "boundary": boundary}
    gap = abs(candidates[0][0] + _TIE - candidates[1][0])
    if gap <= _TIE:
        parity = np.real(np.vdot(psi[::-1], psi))  # ⟨ψ|ΠX|ψ⟩: ΠX flips every bit
        attrs["warning"] = (
            f"parity gap {gap:.1e} is below the resolution {_TIE:.0e} of the exact "
            f"diagonalisation: the ground state of parity ⟨ΠX⟩ = {parity:.10f} was selected by "
            f"symmetry"
        )
    return ExactState(psi, attrs, hamiltonian)


def ghz_state(L: int) -> ExactState:
    """(|0…0⟩ + |1…1⟩)/√2 as a dense vector."""
    _check_exact_L(L)
    psi = np.zeros(2**L, dtype=np.complex128)
    psi[[0, -1]] = _S
    return ExactState(psi, {"state": "ghz"})


def product_state(L: int, state: str | Sequence[complex] = "+") -> ExactState:
    """⊗_i |φ⟩ for one single-qubit state |φ⟩ (label or amplitudes) on every site."""
    _check_exact_L(L)
    phi = single_qubit_state(state)
    psi = np.ones(1, dtype=np.complex128)
    for _ in range(L):
        psi = np.kron(psi, phi)
    label = state if isinstance(state, str) else ",".join(str(complex(c)) for c in phi)
    return ExactState(psi, {"state": "product", "product_state": label})
