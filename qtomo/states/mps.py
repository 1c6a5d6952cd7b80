"""Matrix-product states (MPS) of L qubits: the large-L path of ``qtomo simulate``.

Conventions, written once here and used by :mod:`qtomo.states.mps_sampler`:

- tensors ``B_i``: (χ_i, 2, χ_{i+1}) complex128 with χ_0 = χ_L = 1 (legs: left bond,
  physical, right bond), qubit 0 first;
- amplitudes ψ(s_0 … s_{L-1}) = B_0^{s_0} B_1^{s_1} ⋯ B_{L-1}^{s_{L-1}} with
  B_i^s = B_i[:, s, :], physical basis |0⟩, |1⟩ the Z eigenstates (Z|0⟩ = |0⟩);
- right-canonical form: Σ_s B_i^s B_i^{s†} = 1 (χ_i × χ_i), so everything right of a bond
  contracts to the identity and ⟨ψ|ψ⟩ = 1.

Left environments G_0 = 1, G_{i+1} = Σ_s B_i^{s†} G_i B_i^s carry everything else: ⟨O_i⟩ =
Tr Σ_{st} O_st B_i^{s†} G_i B_i^t, and the eigenvalues of G_b are the squared Schmidt values
λ² across the bond between qubits b−1 and b.

The TFIM is H = −J Σ Z_i Z_{i+1} − h Σ X_i (+ −J Z_{L−1} Z_0 if periodic), solved by TeNPy's
two-site DMRG on a model built here with ``conserve=None``: TeNPy's own ``TFIChain`` is the
rotated form −J Σ σˣσˣ − g Σ σᶻ, and parity conservation would reorder the local basis. TeNPy's
``SpinHalfSite`` basis (up, down) with σᶻ = diag(1, −1) is our (|0⟩, |1⟩).

Example:
    >>> state = ghz_mps(40)
    >>> [B.shape for B in state.mps[:2]], state.mps[-1].shape
    ([(1, 2, 2), (2, 2, 2)], (2, 2, 1))
    >>> refs = state.references()
    >>> round(float(refs["ZZ"][0, 39]), 12), round(float(refs["entropy"][17]), 10)
    (1.0, 0.6931471806)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from qtomo.errors import ConvergenceError, QtomoError
from qtomo.povm import PAULI, POVM, sites_from_size
from qtomo.states.dmrg import DMRG_SECONDS, Hamiltonian, dmrg_ground_state
from qtomo.states.exact import single_qubit_state, spectrum_entropy
from qtomo.states.hamiltonians import TFIM, PauliTerm, check_chain_length
from qtomo.states.mps_sampler import MPSDistribution

__all__ = ["MPSState", "block_density_matrix", "check_mps_shapes", "correlations", "ghz_mps",
           "mps_to_vector", "pauli_expectation",
           "pauli_sum_expectation", "product_mps", "pure_state_fidelity", "right_canonical",
           "state_density_matrix", "state_references", "tfim_mps", "vector_to_mps"]

_CANONICAL_TOL = 1e-8
_PARITY_TOL = 1e-6


@dataclass(frozen=True)
class MPSState:
    """A pure state of L qubits held as a right-canonical MPS (conventions in the module doc).

    Args:
        tensors: L arrays (χ_i, 2, χ_{i+1}), right-canonical, χ_0 = χ_L = 1.
        attrs: provenance for the dataset root (``state`` and its parameters, and for DMRG
            states ``chi_max``, ``svd_min``, ``energy_tol``, ``truncation_error`` and, when the
            ordered phase's parity gap is unresolved, ``warning``).
        hamiltonian: the TFIM or XXZ chain whose ground state this is, or None.

    Raises:
        QtomoError: for tensors of the wrong shape or not in right-canonical form.
    """

    tensors: tuple[np.ndarray, ...]
    attrs: dict = field(default_factory=dict)
    hamiltonian: Hamiltonian | None = None
    method: str = field(default="mps", init=False)

    def __post_init__(self) -> None:
        tensors = tuple(np.array(B, dtype=np.complex128) for B in self.tensors)
        _check_right_canonical(tensors)
        for B in tensors:
            B.flags.writeable = False
        object.__setattr__(self, "tensors", tensors)

    @property
    def L(self) -> int:
        return len(self.tensors)

    @property
    def mps(self) -> list[np.ndarray]:
        """The tensors B_i as a list of (χ_i, 2, χ_{i+1}) complex128 arrays (copies)."""
        return [B.copy() for B in self.tensors]

    @property
    def bond_dimensions(self) -> list[int]:
        """χ_1 … χ_{L-1}, the inner bond dimensions."""
        return [B.shape[2] for B in self.tensors[:-1]]

    def expectation(self, string: dict[int, str]) -> float:
        """⟨ψ|⊗_i σ_i|ψ⟩ for a Pauli string {site: "X" | "Y" | "Z"} (real part).

        Contracted left to right, O(L χ³); sites not named carry the identity.

        Example:
            >>> round(product_mps(3, "+").expectation({0: "X", 2: "X"}), 12)
            1.0
        """
        return _expectation(self.tensors, string)

    def references(self) -> dict[str, np.ndarray | list[np.ndarray]]:
        """Reference values (docs/conventions.md "The dataset file") computed from the MPS.

        Returns:
            ``X``, ``Z``: (L,) float64 ⟨X_i⟩, ⟨Z_i⟩; ``ZZ``, ``XX``: (L, L) float64
            ⟨Z_i Z_j⟩, ⟨X_i X_j⟩ with unit diagonal; ``entropy``: (L-1,) float64,
            S_b = −Σ λ² ln λ² (nats) across bond b | b+1; ``energy``: float64 ⟨H⟩ when the state
            has a Hamiltonian; ``mps``: the tensors.

        Cost O(L² χ³) for the correlation matrices (one sweep right of each site i).
        """
        references: dict[str, np.ndarray | list[np.ndarray]] = state_references(
            self.tensors, self.hamiltonian)
        references["mps"] = self.mps
        return references

    def distribution(self, povm: POVM, device: str | torch.device = "cpu") -> MPSDistribution:
        """The POVM distribution P(a) = Tr(M_a |ψ⟩⟨ψ|), sampled and evaluated from the MPS."""
        return MPSDistribution(self.tensors, povm, device=device)


def correlations(
    tensors: Sequence[np.ndarray], operators: dict[str, np.ndarray],
    hamiltonian: Hamiltonian | None = None, pauli: Mapping[str, np.ndarray] = PAULI,
) -> dict[str, np.ndarray]:
    """⟨O_i⟩ and ⟨O_i O_j⟩ (i ≠ j; diagonal 1) of a right-canonical MPS or LPDO for each named O.

    With operators {"X": X, "Z": Z} these are the references ⟨X_i⟩, ⟨X_i X_j⟩, ⟨Z_i⟩, ⟨Z_i Z_j⟩;
    with the Heisenberg-picture operators {"X": E†(X), "Z": E†(Z)} of a local channel E they are
    the noisy state's (docs/simulate.md "Noisy states"). The diagonal is 1 because σ_i² = 1 holds in
    any state (it is not ⟨O_i O_i⟩ for O = E†(σ)). With a Hamiltonian also ``energy`` = Σ_t c_t ⟨⊗σ⟩
    over its Pauli terms (:func:`pauli_sum_expectation`, σ from ``pauli``). Cost O(L² χ³) per
    operator. Everything right of a site contracts to the identity, so the tensors must be
    right-canonical and normalised (as :func:`right_canonical` and a physical model's
    ``tensors()`` give).

    Args:
        tensors: L right-canonical tensors (χ_i, 2, χ_{i+1}), or LPDO tensors
            (χ_i, 2, κ, χ_{i+1}) of ρ = Tr_κ |X⟩⟨X| (docs/models.md "Physical model families").
        operators: name → (2, 2) complex operator.
        hamiltonian: the TFIM or XXZ chain whose energy to add, or None.
        pauli: the operators standing for X, Y, Z in the energy (E†(σ) for a noisy state).

    Returns:
        name → (L,) float64 and name*2 → (L, L) float64 (real parts), and maybe ``energy``.

    Example:
        >>> refs = correlations(ghz_mps(4).tensors, {"Z": PAULI["Z"], "X": PAULI["X"]})
        >>> [round(float(refs[name][0, 3]), 12) for name in ("ZZ", "XX")]
        [1.0, 0.0]
    """
    L = len(tensors)
    environments = _environments(tensors)
    references: dict[str, np.ndarray] = {}
    for name, op in operators.items():
        single = np.zeros(L)
        pair = np.eye(L)
        for i, (G, B) in enumerate(zip(environments, tensors, strict=True)):
            F = _transfer(G, B, op)
            single[i] = np.trace(F).real
            for j in range(i + 1, L):
                pair[i, j] = pair[j, i] = np.trace(_transfer(F, tensors[j], op)).real
                F = _transfer(F, tensors[j])
        references[name], references[name * 2] = single, pair
    if hamiltonian is not None:
        references["energy"] = np.float64(
            pauli_sum_expectation(tensors, hamiltonian.terms(), pauli, environments))
    return references


def pauli_sum_expectation(tensors: Sequence[np.ndarray], terms: Sequence[PauliTerm],
                          pauli: Mapping[str, np.ndarray] = PAULI,
                          environments: Sequence[np.ndarray] | None = None) -> float:
    """Σ_t c_t ⟨⊗_{i∈t} σ_i⟩ of a right-canonical, normalised MPS or LPDO (real part).

    Each term is contracted from the left environment of its first site to its last site only
    (everything right of it is the identity): O(range_t χ³) per term, O(L χ³) for a
    nearest-neighbour Hamiltonian.

    Args:
        tensors: L right-canonical tensors (χ_l, 2, χ_r) or (χ_l, 2, κ, χ_r).
        terms: (c_t, {site: "X" | "Y" | "Z"}) pairs.
        pauli: letter → (2, 2) operator (default the Pauli matrices).
        environments: the left environments G_0 … G_{L−1} if already computed.

    Example:
        >>> round(pauli_sum_expectation(ghz_mps(6).tensors, [(2.0, {1: "Z", 4: "Z"})]), 12)
        2.0
    """
    if environments is None:
        environments = _environments(tensors)
    total = 0.0
    for coefficient, string in terms:
        first, last = min(string), max(string)
        F = environments[first]
        for site in range(first, last + 1):
            F = _transfer(F, tensors[site], pauli[string[site]] if site in string else None)
        total += coefficient * np.trace(F).real
    return float(total)


def _environments(tensors: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Left environments G_0 = 1, G_{i+1} = Σ_{s,q} B^{s,q†} G_i B^{s,q}: G_0 … G_{L−1}."""
    environments = [np.ones((1, 1), dtype=np.complex128)]
    for B in tensors[:-1]:
        environments.append(_transfer(environments[-1], B))
    return environments


def state_references(tensors: Sequence[np.ndarray],
                     hamiltonian: Hamiltonian | None = None) -> dict[str, np.ndarray]:
    """⟨X_i⟩, ⟨Z_i⟩, ⟨X_iX_j⟩, ⟨Z_iZ_j⟩ (:func:`correlations`), bond entropies and ⟨H⟩ of a
    right-canonical, normalised MPS or LPDO, exactly.

    Args:
        tensors: L right-canonical tensors (χ_l, 2, χ_r) (pure state) or (χ_l, 2, κ, χ_r)
            (LPDO, ρ = Tr_κ |X⟩⟨X|).
        hamiltonian: the TFIM or XXZ chain whose energy to report, or None.

    Returns:
        ``X``, ``Z``: (L,) float64; ``XX``, ``ZZ``: (L, L) float64 with unit diagonal;
        ``entropy``: (L-1,) float64 S_b = −Σ λ² ln λ² (nats) across bond b | b+1, the
        eigenvalues of G_{b+1} being the squared Schmidt values (pure states only: absent for
        an LPDO, whose bond spectrum is that of the purification); ``energy``: ⟨H⟩ when a
        Hamiltonian is given. Cost O(L² χ³).

    Example:
        >>> refs = state_references(ghz_mps(4).mps)
        >>> round(float(refs["ZZ"][0, 3]), 12), round(float(refs["entropy"][1]), 10)
        (1.0, 0.6931471806)
    """
    references = correlations(tensors, {"X": PAULI["X"], "Z": PAULI["Z"]}, hamiltonian)
    if all(np.ndim(B) == 3 for B in tensors):
        references["entropy"] = np.array(
            [spectrum_entropy(np.linalg.eigvalsh(G)) for G in _environments(tensors)[1:]],
            dtype=np.float64).reshape(len(tensors) - 1)
    return references


def pauli_expectation(tensors: Sequence[np.ndarray], string: dict[int, str]) -> float:
    """⟨⊗_i σ_i⟩ = Tr(ρ ⊗_i σ_i) / Tr ρ for a Pauli string {site: "X" | "Y" | "Z"}, exactly.

    Args:
        tensors: an MPS (χ_l, 2, χ_r) or LPDO (χ_l, 2, κ, χ_r) in any gauge and norm.
        string: sites not named carry the identity.

    Example:
        >>> round(pauli_expectation(ghz_mps(5).mps, {0: "Y", 1: "Y", 2: "X", 3: "X", 4: "X"}), 12)
        -1.0
    """
    return _expectation(tensors, string) / _expectation(tensors, {})


def state_density_matrix(tensors: Sequence[np.ndarray]) -> np.ndarray:
    """ρ = Tr_κ |X⟩⟨X| / Tr(…) (2^L, 2^L) complex128 of an MPS or LPDO, qubit 0 most significant.

    Dense: for small L only (2^L × κ^L amplitudes of the purification are formed).

    Example:
        >>> rho = state_density_matrix(ghz_mps(2).mps)
        >>> rho.real.round(3).tolist()[0]
        [0.5, 0.0, 0.0, 0.5]
    """
    X = np.ones((1, 1, 1), dtype=np.complex128)  # (2^i, κ^i, χ_i)
    for B in tensors:
        B = np.asarray(B, dtype=np.complex128)
        B = B.reshape(B.shape[0], 2, -1, B.shape[-1])  # (χl, 2, κ, χr)
        X = np.einsum("pkc,csqd->pskqd", X, B)
        X = X.reshape(X.shape[0] * 2, X.shape[2] * B.shape[2], B.shape[3])
    X = X[:, :, 0]  # (2^L, κ^L)
    rho = X @ X.conj().T
    return rho / np.trace(rho).real


def block_density_matrix(tensors: Sequence[np.ndarray], sites: Sequence[int]) -> np.ndarray:
    """The reduced state ρ_A = Tr_rest ρ of a block of sites, contracted from the tensors.

    ρ = Tr_κ |X⟩⟨X| of an MPS (χ_l, 2, χ_r) or LPDO (χ_l, 2, κ, χ_r) in right-canonical form
    (Σ_{s,q} B^{s q} B^{s q †} = 1, so the environment right of the block is the identity):
    W ← Σ B^{s†} W B^t over the sites up to the block's last, the Kraus index always summed and
    the physical index summed outside the block; ρ_A = Tr W / Tr ρ.

    Args:
        tensors: L right-canonical tensors (χ_i, 2, χ_{i+1}) or (χ_i, 2, κ, χ_{i+1}).
        sites: k distinct sites in 0..L−1 (the result orders them increasingly, the first the
            most significant factor).

    Returns:
        (2^k, 2^k) complex128, unit trace. Cost O(L χ³ κ + 4^k χ³ κ).

    Raises:
        QtomoError: for sites outside 0..L−1 or repeated.

    Example:
        >>> rho = block_density_matrix(ghz_mps(20).mps, [4, 9])
        >>> np.round(rho.real.diagonal(), 12).tolist()
        [0.5, 0.0, 0.0, 0.5]
    """
    L = len(tensors)
    block = sorted(int(site) for site in sites)
    if not block or len(set(block)) != len(block) or block[0] < 0 or block[-1] >= L:
        raise QtomoError(f"sites must be distinct integers in 0..{L - 1}; got {list(sites)}")
    W = np.ones((1, 1, 1, 1), dtype=np.complex128)  # (d_ket, d_bra, χ, χ)
    for site in range(block[-1] + 1):
        B = np.asarray(tensors[site], dtype=np.complex128)
        B = B.reshape(B.shape[0], 2, -1, B.shape[-1])  # (χl, 2, κ, χr)
        if site in block:
            W = np.einsum("tsab,aSqc,bTqd->tTsScd", W, B.conj(), B)
            W = W.reshape(W.shape[0] * 2, W.shape[2] * 2, *W.shape[4:])
        else:
            W = np.einsum("tsab,aSqc,bSqd->tscd", W, B.conj(), B)
    rho = np.einsum("tscc->ts", W)
    return rho / np.trace(rho).real


def _expectation(tensors: Sequence[np.ndarray], string: dict[int, str]) -> float:
    G = np.ones((1, 1), dtype=np.complex128)
    for i, B in enumerate(tensors):
        G = _transfer(G, B, PAULI[string[i]] if i in string else None)
    return float(G[0, 0].real)


def _parity_projection(
    tensors: Sequence[np.ndarray], parity: int, svd_min: float
) -> tuple[list[np.ndarray], float]:
    """(1 + πΠ)|φ⟩ normalised, Π = ⊗X, as a right-canonical MPS; also the largest discarded λ².

    The sum φ + πΠφ is the direct sum of the two MPS (bond dimension 2χ); a left-to-right QR
    sweep and a right-to-left SVD sweep bring it back to right-canonical form, dropping Schmidt
    values while their discarded weight stays ≤ svd_min.
    """
    flipped = [B[:, ::-1, :] for B in tensors]
    flipped[0] = parity * flipped[0]
    L = len(tensors)
    summed = []
    for i, (B, F) in enumerate(zip(tensors, flipped, strict=True)):
        if i == 0:
            summed.append(np.concatenate([B, F], axis=2))
        elif i == L - 1:
            summed.append(np.concatenate([B, F], axis=0))
        else:
            block = np.zeros((2 * B.shape[0], 2, 2 * B.shape[2]), dtype=np.complex128)
            block[: B.shape[0], :, : B.shape[2]] = B
            block[B.shape[0]:, :, B.shape[2]:] = F
            summed.append(block)
    for i in range(L - 1):  # left-canonical, so the SVDs below see true Schmidt values
        chi_l, _, chi_r = summed[i].shape
        Q, R = np.linalg.qr(summed[i].reshape(2 * chi_l, chi_r))
        summed[i] = Q.reshape(chi_l, 2, -1)
        summed[i + 1] = np.einsum("ab,bsc->asc", R, summed[i + 1])
    discarded = 0.0
    for i in range(L - 1, 0, -1):
        chi_l, _, chi_r = summed[i].shape
        U, S, Vh = np.linalg.svd(summed[i].reshape(chi_l, 2 * chi_r), full_matrices=False)
        weights = S**2 / np.sum(S**2)
        tail = np.cumsum(weights[::-1])[::-1]  # tail[k] = weight of Schmidt values k, k+1, …
        keep = max(1, int(np.sum(tail > svd_min)))
        discarded = max(discarded, float(weights[keep:].sum()))
        summed[i] = Vh[:keep].reshape(keep, 2, chi_r)
        summed[i - 1] = np.einsum("asb,bc->asc", summed[i - 1], U[:, :keep] * S[:keep])
    summed[0] /= np.linalg.norm(summed[0])
    return summed, discarded


def _transfer(G: np.ndarray, B: np.ndarray, op: np.ndarray | None = None) -> np.ndarray:
    """G' = Σ_{st,q} O_st B^{s,q†} G B^{t,q}; (χ_l, χ_l) → (χ_r, χ_r); O = 1 when op is None.

    B is an MPS tensor (χ_l, 2, χ_r) or an LPDO tensor (χ_l, 2, κ, χ_r), whose Kraus leg q is
    traced."""
    B = B.reshape(B.shape[0], 2, -1, B.shape[-1])  # (χl, 2, κ, χr)
    GB = np.einsum("ac,ctqd->atqd", G, B)
    if op is not None:
        GB = np.einsum("st,atqd->asqd", op, GB)
    return np.einsum("asqb,asqd->bd", B.conj(), GB)


def right_canonical(tensors: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The same state, normalised and right-canonical: Σ_{s,q} B^{s,q} B^{s,q}† = 1 at each site.

    One right-to-left sweep of QR decompositions (B_i reshaped (χ_i, 2κχ_{i+1}) = R Q with
    orthonormal rows Q; R moves into B_{i−1}), then B_0 is divided by its norm. Works for MPS
    tensors (χ_l, 2, χ_r) and purification tensors (χ_l, 2, κ, χ_r) alike (the legs after the
    first are one block); the state, ⟨ψ|ψ⟩ = 1 aside, and every bond dimension χ_i ≤ 2κχ_{i+1}
    are kept.

    Args:
        tensors: L complex tensors in any gauge, χ_0 = χ_L = 1, ⟨ψ|ψ⟩ > 0.

    Returns:
        L complex128 arrays of the input shapes (new copies).

    Raises:
        QtomoError: when the state is zero.

    Example:
        >>> tensors = right_canonical([3 * B for B in ghz_mps(4).mps])
        >>> B = tensors[1]
        >>> np.allclose(np.einsum("asb,csb->ac", B, B.conj()), np.eye(2))
        True
    """
    out = [np.array(B, dtype=np.complex128) for B in tensors]
    for i in range(len(out) - 1, 0, -1):
        shape = out[i].shape
        Q, R = np.linalg.qr(out[i].reshape(shape[0], -1).conj().T)  # B† = Q R, so B = R† Q†
        out[i] = Q.conj().T.reshape(-1, *shape[1:])
        out[i - 1] = np.tensordot(out[i - 1], R.conj().T, axes=([-1], [0]))
    norm = np.linalg.norm(out[0])
    if not np.isfinite(norm) or norm == 0:
        raise QtomoError(f"the state has norm {norm}; cannot normalise it")
    out[0] /= norm
    return out


def truncated(tensors: Sequence[np.ndarray], chi: int) -> list[np.ndarray]:
    """The closest MPS of bond dimension ≤ χ to ψ, bond by bond: right-canonical form, then a
    left-to-right sweep of SVDs keeping the χ largest Schmidt values at each bond (the standard
    truncation; its error is at most the sum of the discarded weights), normalised.

    Args:
        tensors: L MPS tensors (χ_l, 2, χ_r), any gauge and norm.
        chi: the largest bond dimension kept, ≥ 1.

    Returns:
        L complex128 tensors (χ_l, 2, χ_r), left-canonical, ⟨ψ|ψ⟩ = 1.

    Example (GHZ has χ = 2: kept exactly at χ = 2; χ = 1 keeps one branch, F = 1/2):
        >>> ghz = ghz_mps(6).mps
        >>> round(pure_state_fidelity(ghz, truncated(ghz, 2)), 12)
        1.0
        >>> round(pure_state_fidelity(ghz, truncated(ghz, 1)), 12)
        0.5
    """
    out = right_canonical(tensors)
    for i in range(len(out) - 1):
        chi_l, _, chi_r = out[i].shape
        u, s, vh = np.linalg.svd(out[i].reshape(2 * chi_l, chi_r), full_matrices=False)
        keep = min(chi, int(np.count_nonzero(s > 1e-14 * s[0])))
        out[i] = u[:, :keep].reshape(chi_l, 2, keep)
        out[i + 1] = np.tensordot(s[:keep, None] * vh[:keep], out[i + 1], axes=([1], [0]))
    out[-1] /= np.linalg.norm(out[-1])
    return out


def pure_state_fidelity(target: Sequence[np.ndarray], state: Sequence[np.ndarray]) -> float:
    """F = ⟨ψ|ρ|ψ⟩ / (⟨ψ|ψ⟩ Tr ρ) of a pure target MPS ψ and an MPS or LPDO state, exactly.

    For an MPS φ this is |⟨ψ|φ⟩|² / (⟨ψ|ψ⟩⟨φ|φ⟩); for an LPDO ρ = Tr_κ |X⟩⟨X| it is
    Σ_q |⟨ψ|X_q⟩|² / Tr ρ. Contracted left to right with the environment
    G[c, a, c', a'] = Σ_{prefix} v(c, a) v̄(c', a'), v the partial overlap ⟨ψ|X⟩ (a positive
    matrix over (c, a)), divided by its trace at each site: O(L χ_ψ² χ² (χ_ψ + χ)) and no
    under- or overflow at any L. Tr ρ = ⟨X|X⟩ and ⟨ψ|ψ⟩ are norms, one layer each
    (:func:`_log_norm`, O(L χ³)): the doubled environment of a target with itself took minutes
    at χ_ψ = 82 (XXZ L = 16).

    Args:
        target: L tensors (χ_l, 2, χ_r), any gauge and norm (e.g. ``/reference/mps``).
        state: L tensors (χ_l, 2, χ_r) or (χ_l, 2, κ, χ_r), any gauge and norm.

    Returns:
        F in [0, 1] (float).

    Raises:
        QtomoError: when the two lists have different lengths or break the bond chain.

    Example (GHZ against |+…+⟩: ⟨GHZ|+…+⟩ = 2 · 2^(−L/2) / √2, so F = 2^(1−L)):
        >>> round(pure_state_fidelity(ghz_mps(6).mps, product_mps(6, "+").mps) * 2**5, 12)
        1.0
    """
    if len(target) != len(state):
        raise QtomoError(f"the target MPS has L = {len(target)} tensors; the state has "
                         f"L = {len(state)}")
    check_mps_shapes([np.asarray(B) for B in target])
    check_mps_shapes([_first_kraus_channel(np.asarray(B)) for B in state])
    # Tr ρ = ⟨X|X⟩ with (qubit, Kraus) as one physical leg
    flat = [np.asarray(B).reshape(B.shape[0], -1, B.shape[-1]) for B in state]
    overlap = _log_overlap(target, state)
    return float(np.exp(2 * overlap - _log_norm(target) - _log_norm(flat)))


def _log_norm(tensors: Sequence[np.ndarray]) -> float:
    """ln ⟨X|X⟩ of an MPS X (χ, d, χ), its environment E (χ, χ) divided by its trace at each
    site (no under- or overflow)."""
    E = np.ones((1, 1), dtype=np.complex128)
    log_value = 0.0
    for X in tensors:
        X = np.asarray(X, dtype=np.complex128)
        E = np.einsum("ab,asc,bsd->cd", E, X.conj(), X, optimize=True)
        trace = np.trace(E).real
        if trace <= 0:
            return -np.inf
        log_value += np.log(trace)
        E = E / trace
    return log_value


def _first_kraus_channel(B: np.ndarray) -> np.ndarray:
    """An MPS tensor (χ_l, 2, χ_r) of the shape of an MPS or purification tensor (for checks)."""
    return B if B.ndim == 3 else B[:, :, 0, :]


def _log_overlap(bra: Sequence[np.ndarray], ket: Sequence[np.ndarray]) -> float:
    """½ ln Σ_q |⟨bra|ket_q⟩|² for an MPS bra (χ, d, χ) and an MPS or purified ket (Kraus legs
    q): ket tensors (χ, d, χ) or (χ, d, κ, χ)."""
    G = np.ones((1, 1, 1, 1), dtype=np.complex128)  # G[c, a, c', a']
    log_value = 0.0
    for P, X in zip(bra, ket, strict=True):
        P = np.asarray(P, dtype=np.complex128)
        X = np.asarray(X, dtype=np.complex128)
        X = X.reshape(X.shape[0], P.shape[1], -1, X.shape[-1])  # (χl, d, κ, χr)
        # unprimed legs carry v = ⟨bra|ket_q⟩ (conj P, X), primed legs v̄ (P, conj X)
        half = np.einsum("caxy,cse,asqb->ebxyq", G, P.conj(), X, optimize=True)
        G = np.einsum("ebxyq,xtf,ytqg->ebfg", half, P, X.conj(), optimize=True)
        trace = np.einsum("ebeb->", G).real
        if trace <= 0:
            return -np.inf
        log_value += np.log(trace)
        G = G / trace
    return 0.5 * log_value


def check_mps_shapes(tensors: Sequence[np.ndarray], L: int | None = None) -> None:
    """Check that tensors chain as (1, 2, χ_1), (χ_1, 2, χ_2), …, (χ_{L−1}, 2, 1); any gauge.

    Args:
        tensors: the MPS tensors, qubit 0 first.
        L: the number of tensors expected, if known.

    Raises:
        QtomoError: naming the first tensor that breaks the chain.
    """
    if L is not None and len(tensors) != L:
        raise QtomoError(f"the MPS has {len(tensors)} tensors; expected L = {L}")
    if len(tensors) < 1:
        raise QtomoError("an MPS needs at least one tensor; got none")
    left = 1
    for i, B in enumerate(tensors):
        if B.ndim != 3 or B.shape[:2] != (left, 2):
            raise QtomoError(f"MPS tensor {i} must have shape ({left}, 2, χ); got {B.shape}")
        left = B.shape[2]
    if left != 1:
        raise QtomoError(f"the last MPS tensor must have right bond dimension 1; got {left}")


def mps_to_vector(mps: Sequence[np.ndarray]) -> np.ndarray:
    """The dense ψ (2^L,) complex128 of an MPS of tensors (χ_l, 2, χ_r), qubit 0 most significant.

    Example:
        >>> ghz = [np.array([[[1, 0], [0, 1]]]) / 2**0.5, np.array([[[1], [0]], [[0], [1]]])]
        >>> mps_to_vector(ghz).real.round(6).tolist()                 # (|00⟩ + |11⟩)/√2
        [0.707107, 0.0, 0.0, 0.707107]
    """
    psi = np.ones((1, 1), dtype=np.complex128)  # (2^i, χ)
    for tensor in mps:
        psi = (psi @ tensor.reshape(tensor.shape[0], -1)).reshape(-1, tensor.shape[2])
    return psi.reshape(-1)


def vector_to_mps(psi: np.ndarray, canonical: str = "left") -> list[np.ndarray]:
    """An exact MPS of ψ (2^L,) by successive SVDs, only zero weights dropped.

    Args:
        psi: (2^L,) complex.
        canonical: ``"left"`` (SVDs from qubit 0 on) or ``"right"`` (Σ_s B^s B^s† = 1, the
            form :class:`~qtomo.states.mps_sampler.MPSDistribution` samples from: the left form
            of the mirrored state, mirrored back).

    Returns:
        L tensors (χ_l, 2, χ_r) complex128 with χ_l = 1 first and χ_r = 1 last.

    Example:
        >>> psi = np.random.default_rng(0).normal(size=16).astype(complex)
        >>> bool(np.allclose(mps_to_vector(vector_to_mps(psi)), psi))
        True
        >>> B = vector_to_mps(psi / np.linalg.norm(psi), canonical="right")
        >>> bool(np.allclose(mps_to_vector(B), psi / np.linalg.norm(psi)))
        True
    """
    psi = np.asarray(psi, dtype=np.complex128)
    L = sites_from_size(psi.size, 2, "amplitudes")
    if canonical == "right":
        mirrored = psi.reshape((2,) * L).transpose(tuple(range(L - 1, -1, -1))).reshape(-1)
        return [B.transpose(2, 1, 0) for B in reversed(vector_to_mps(mirrored))]
    if canonical != "left":
        raise QtomoError(f"canonical form {canonical!r} must be 'left' or 'right'")
    tensors, rest = [], psi.reshape(1, -1)
    for _ in range(L - 1):
        chi = rest.shape[0]
        u, s, vh = np.linalg.svd(rest.reshape(2 * chi, -1), full_matrices=False)
        keep = s > 1e-14 * s[0]
        tensors.append(u[:, keep].reshape(chi, 2, -1))
        rest = s[keep, None] * vh[keep]
    tensors.append(rest.reshape(-1, 2, 1))
    return tensors


def _check_right_canonical(tensors: Sequence[np.ndarray]) -> None:
    check_mps_shapes(tensors)
    for i, B in enumerate(tensors):
        identity = np.einsum("asb,csb->ac", B, B.conj())
        if not np.allclose(identity, np.eye(B.shape[0]), atol=_CANONICAL_TOL):
            raise QtomoError(f"MPS tensor {i} is not right-canonical (Σ_s B^s B^s† ≠ 1)")


def ghz_mps(L: int) -> MPSState:
    """(|0…0⟩ + |1…1⟩)/√2 as its exact right-canonical MPS of bond dimension 2.

    B_0^s = e_s^T/√2, B_i^s = e_s e_s^T (0 < i < L−1), B_{L−1}^s = e_s.

    Raises:
        QtomoError: for L < 2.

    Example:
        >>> ghz_mps(5).bond_dimensions
        [2, 2, 2, 2]
    """
    L = check_chain_length(L, "a GHZ state")
    first = np.eye(2).reshape(1, 2, 2) / np.sqrt(2)
    middle = np.einsum("as,sb->asb", np.eye(2), np.eye(2))
    last = np.eye(2).reshape(2, 2, 1)
    return MPSState((first, *[middle] * (L - 2), last), {"state": "ghz"})


def product_mps(L: int, state: str | Sequence[complex] = "+") -> MPSState:
    """⊗_i |φ⟩ as an MPS of bond dimension 1; |φ⟩ a label (0, 1, +, -, +i, -i) or 2 amplitudes.

    Example:
        >>> product_mps(4, "0").references()["Z"]
        array([1., 1., 1., 1.])
    """
    L = check_chain_length(L, "a product state", minimum=1)
    phi = single_qubit_state(state)
    label = state if isinstance(state, str) else ",".join(str(complex(c)) for c in phi)
    return MPSState((phi.reshape(1, 2, 1),) * L, {"state": "product", "product_state": label})


def tfim_mps(
    L: int,
    J: float = 1.0,
    h: float = 1.0,
    boundary: str = "open",
    chi_max: int = 64,
    svd_min: float = 1e-14,
    energy_tol: float = 1e-10,
    max_seconds: float = DMRG_SECONDS,
) -> MPSState:
    """Ground state of H = −J Σ Z_i Z_{i+1} − h Σ X_i by two-site DMRG (TeNPy), as an MPS.

    H commutes with Π = ⊗X_i, and DMRG starts from |+…+⟩ (|−…−⟩ for h < 0), in the sector of
    the ground state: π = ⟨Π⟩ = +1 (for h < 0: (−1)^L, as ⊗Z_i maps h to −h). In the ordered
    phase |h| < J the open chain's two sectors are split only by ≈ 2J(1 − h²/J²)(h/J)^L, and the
    sweeps may drift to a symmetry-broken state φ of that doublet; the result is then replaced
    by (1 + πΠ)φ, normalised and recompressed, so the state returned is the ground state of
    parity π (checked to 1e-6) in every phase — for h > 0 the parity-even one.
    When that splitting (:meth:`TFIM.parity_gap`) is below the energy resolution
    energy_tol · max(|E|, 1), the choice rests on symmetry alone and ``attrs["warning"]`` says
    so (``qtomo simulate`` prints it and stores it in the file).

    Args:
        L: qubits, at least 2 (3 if periodic).
        J, h: couplings (finite).
        boundary: ``"open"`` or ``"periodic"`` (the periodic bond is a long-range MPO term).
        chi_max: largest bond dimension χ, at least 1.
        svd_min: largest discarded weight per truncation, Σ_discarded λ² ≤ svd_min (TeNPy's
            ``trunc_cut`` = √svd_min). The default 1e-14 keeps every record's ln P within 1e-5
            of the untruncated state's (measured: README, MPS path); χ = 30 at L = 50, h = J.
        energy_tol: convergence when the relative energy change per sweep is below it.
        max_seconds: wall-clock budget of the sweeps (> 0); DMRG stops at the end of the sweep
            that passes it (docs/simulate.md "Simulating data": L = 200 takes minutes).

    Returns:
        MPSState with attrs ``state, J, h, boundary, chi_max, svd_min, energy_tol,
        truncation_error`` (largest discarded weight of the last sweep or of the parity
        projection) and maybe ``warning``.

    Raises:
        QtomoError: for bad parameters.
        ConvergenceError: when DMRG has not reached energy_tol after 60 sweeps or within
            max_seconds (the message names the last relative energy change and the option to
            change), or no state of the ground-state parity results.

    Example:
        >>> state = tfim_mps(12, h=1.0)
        >>> E = float(state.references()["energy"])
        >>> bool(abs(E - TFIM(12).free_fermion_ground_energy()) < 1e-8)
        True
    """
    hamiltonian = TFIM(L, J, h, boundary)
    start = np.array([1.0, 1.0 if h >= 0 else -1.0]) / np.sqrt(2)
    tensors, energy, truncation_error = dmrg_ground_state(
        hamiltonian, [start] * L, chi_max, svd_min, energy_tol, max_seconds)
    tensors, discarded, parity = _fix_ground_parity(tensors, _ground_parity(L, h), svd_min)
    attrs = {
        "state": "tfim", "J": float(J), "h": float(h), "boundary": boundary,
        "chi_max": int(chi_max), "svd_min": float(svd_min), "energy_tol": float(energy_tol),
        "truncation_error": float(max(truncation_error, discarded)),
    }
    state = MPSState(tensors, attrs, hamiltonian)
    gap = hamiltonian.parity_gap()
    resolution = energy_tol * max(abs(energy), 1.0)
    if gap < resolution:
        attrs["warning"] = (
            f"parity gap {gap:.1e} is below the DMRG energy resolution {resolution:.1e}: "
            f"the ground state of parity ⟨ΠX⟩ = {parity:.10f} was selected by symmetry"
        )
    return state


def _fix_ground_parity(tensors: list[np.ndarray], target: int,
                       svd_min: float) -> tuple[list[np.ndarray], float, float]:
    """(tensors, discarded weight, ⟨ΠX⟩): the DMRG state, or (1 + πΠ)φ when it is not in the
    sector of parity π = ``target`` (within 1e-6).

    Near-degenerate parity sectors let the sweeps drift to a symmetry-broken state φ of the
    ground-state doublet; (1 + πΠ)φ is then the ground state of parity π. The discarded
    weight is that of recompressing it (0.0 when the state was kept).

    Raises:
        ConvergenceError: the projected state has no parity π either.
    """
    everywhere_x = dict.fromkeys(range(len(tensors)), "X")
    parity = _expectation(tensors, everywhere_x)
    if abs(parity - target) <= _PARITY_TOL:
        return tensors, 0.0, parity
    tensors, discarded = _parity_projection(tensors, target, svd_min)
    parity = _expectation(tensors, everywhere_x)
    if abs(parity - target) > _PARITY_TOL:
        raise ConvergenceError(
            f"DMRG found no ground state of parity {target:+d}: ⟨ΠX⟩ = {parity:.8f}"
        )
    return tensors, discarded, parity


def _ground_parity(L: int, h: float) -> int:
    """π = ⟨ΠX⟩ of the ground state: +1 for h ≥ 0, and (−1)^L for h < 0 (⊗Z maps h to −h)."""
    return 1 if h >= 0 or L % 2 == 0 else -1

