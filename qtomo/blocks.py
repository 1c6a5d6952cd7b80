"""Reduced states of contiguous blocks of sites: the quantum figure that works at any L.

For a block A = (s, …, s+k−1) of k sites, the reduced state of ρ = Σ_a Q(a) ⊗_i Q_{a_i} needs
only the marginal Q_A of the block's outcomes b = (a_s, …, a_{s+k−1}) (docs/evaluate.md
"Reduced states of blocks"; the identity sites contribute Tr Q_{a_i} = 1)::

    ρ_A = Σ_b Q_A(b) ⊗_{j<k} Q_{b_j}

- **exact** (small L): Q_A from the table of all K^L records (stderr 0);
- **from records** (model samples, the measured data, exact samples of the target): the
  dual-frame average ρ̂_A = mean_n ⊗_{i∈A} Q_{a_i^(n)} = Σ_b (c_b / N) Q_b with c_b the count of
  block outcome b. It is unbiased but not positive; it is projected onto the closest physical
  state by SGS (:func:`qtomo.reconstruct.project_to_physical`) before the fidelity and trace
  distance to the target's reduced state σ_A are taken.

Errors: the **bootstrap over records**, done on the counts (resampling N records with replacement
draws the block counts from Multinomial(N, c/N)), 200 replicates; stderr = the replicates'
standard deviation. The projection biases the fidelity low at a finite N (and the trace distance
high), by more than the bootstrap error can show, so every block figure from model samples stands
beside the same estimator applied to as many exact samples of the target (``exact_samples``): a
model is as good as the truth at this N when the two agree. The data-only column is the same
estimator on the measured records, which for simulated data are exact samples too.

The second Rényi entropy S₂ = −ln Tr ρ_A² uses the unbiased U-statistic
Tr ρ_A² ≈ Σ_{m≠n} Tr(Q_{b^(m)} Q_{b^(n)}) / (N(N−1)) (exact sums for an exact table), so S₂ is that
of the model's own ρ_A, not inflated by the sampling noise of ρ̂_A.

Example:
    >>> from qtomo.povm import get_povm
    >>> from qtomo.states.exact import ghz_state
    >>> povm, state = get_povm("pauli4"), ghz_state(4)
    >>> blocks = block_sites(4, (2,))
    >>> targets = target_reduced_states(state.references(), blocks)
    >>> table = state.distribution(povm).probabilities
    >>> states = reduced_states(blocks, povm, model=table, targets=targets)
    >>> [round(s.model.fidelity.value, 10) for s in states], round(states[0].model.renyi2.value, 10)
    ([1.0, 1.0, 1.0], 0.6931471806)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from qtomo.distribution import records_numpy
from qtomo.errors import QtomoError
from qtomo.estimate import Estimate
from qtomo.povm import POVM, PerQubitPOVM, sites_from_size
from qtomo.reconstruct import simplex_projection, uhlmann_fidelity
from qtomo.states.mps import check_mps_shapes
from qtomo.states.noise import LocalNoise, noisy_reduced_state

__all__ = [
    "BLOCK_SIZES",
    "MAX_BLOCK_SIZE",
    "MAX_BLOCKS",
    "BlockCounts",
    "BlockFigures",
    "ReducedState",
    "block_sites",
    "default_block_sizes",
    "parse_block_sizes",
    "reduced_states",
    "target_reduced_states",
]

#: default block sizes of ``qtomo evaluate --blocks``
BLOCK_SIZES = (2, 3)
#: largest block: K^k outcomes × 4^k matrix elements of the block's dual frame
MAX_BLOCK_SIZE = 4
#: block positions per size; above, a stride (docs/evaluate.md "Reduced states of blocks")
MAX_BLOCKS = 64
#: bootstrap replicates behind every standard error
REPLICATES = 200

Block = tuple[int, ...]


def default_block_sizes(L: int) -> tuple[int, ...]:
    """The sizes of :data:`BLOCK_SIZES` that fit L qubits: (2, 3) from L = 3 on, (2,) at L = 2,
    () at L = 1 (the default is never an error; a size given explicitly is checked).

    Example:
        >>> default_block_sizes(2), default_block_sizes(50)
        ((2,), (2, 3))
    """
    return tuple(k for k in BLOCK_SIZES if k <= L)


def parse_block_sizes(text: str | None, L: int) -> tuple[int, ...]:
    """Block sizes from ``--blocks``: ``"2,3"`` → (2, 3); ``"none"`` or ``""`` → (); None (not
    given) → :func:`default_block_sizes`.

    Raises:
        QtomoError: for a size that is not an integer in 1..min(L, MAX_BLOCK_SIZE).

    Example:
        >>> parse_block_sizes("3, 2,3", L=10)
        (2, 3)
        >>> parse_block_sizes("5", L=10)
        Traceback (most recent call last):
        ...
        qtomo.errors.QtomoError: block size '5' must be an integer in 1..4 (L = 10)
    """
    if text is None:
        return default_block_sizes(L)
    if text.strip().lower() in ("", "none"):
        return ()
    largest = min(L, MAX_BLOCK_SIZE)
    sizes = set()
    for item in text.split(","):
        item = item.strip()
        if not item.isdigit() or not 1 <= int(item) <= largest:
            raise QtomoError(f"block size {item!r} must be an integer in 1..{largest} (L = {L})")
        sizes.add(int(item))
    return tuple(sorted(sizes))


def block_sites(L: int, sizes: Sequence[int], max_blocks: int = MAX_BLOCKS) -> list[Block]:
    """The contiguous blocks evaluated: for each size k, every start s = 0 … L−k while there are
    at most ``max_blocks`` of them; beyond, starts 0, d, 2d, … with d = ⌈(L−k+1)/max_blocks⌉,
    and the last block (ending at site L−1) always included.

    Raises:
        QtomoError: for a size outside 1..min(L, MAX_BLOCK_SIZE).

    Example:
        >>> block_sites(4, (2, 3))
        [(0, 1), (1, 2), (2, 3), (0, 1, 2), (1, 2, 3)]
        >>> [block[0] for block in block_sites(10, (2,), max_blocks=4)]
        [0, 3, 6, 8]
    """
    blocks = []
    for k in sizes:
        if not 1 <= k <= min(L, MAX_BLOCK_SIZE):
            raise QtomoError(f"block size {k} must be an integer in 1..{min(L, MAX_BLOCK_SIZE)} "
                             f"(L = {L})")
        positions = L - k + 1
        stride = -(-positions // max_blocks)
        starts = sorted(set(range(0, positions, stride)) | {positions - 1})
        blocks += [tuple(range(s, s + k)) for s in starts]
    return blocks


# --------------------------------------------------------------------------- counts


class BlockCounts:
    """Counts c_b of every block's outcomes b over records fed chunk by chunk.

    Args:
        blocks: the blocks (tuples of sites).
        K: outcomes per site.

    Example:
        >>> counts = BlockCounts([(0, 1)], K=2)
        >>> counts.add(np.array([[0, 1], [1, 1], [0, 1]]))
        >>> counts.counts[(0, 1)].tolist(), counts.n
        ([0, 2, 0, 1], 3)
    """

    def __init__(self, blocks: Sequence[Block], K: int) -> None:
        self.K, self.n = K, 0
        self.counts = {block: np.zeros(K ** len(block), dtype=np.int64) for block in blocks}

    def add(self, records: np.ndarray | torch.Tensor) -> None:
        """Add (B, L) records in 0..K-1 (numpy or torch, any device)."""
        records = records_numpy(records)
        for block, counts in self.counts.items():
            powers = self.K ** np.arange(len(block) - 1, -1, -1)  # block site 0 most significant
            index = records[:, list(block)].astype(np.int64) @ powers  # (B,)
            counts += np.bincount(index, minlength=counts.size)
        self.n += records.shape[0]

    @classmethod
    def from_records(cls, chunks: Iterable[np.ndarray | torch.Tensor], blocks: Sequence[Block],
                     K: int) -> BlockCounts:
        """The counts over all records of an iterable of (b, L) chunks."""
        counts = cls(blocks, K)
        for chunk in chunks:
            counts.add(chunk)
        return counts


def _marginal(probabilities: np.ndarray, K: int, block: Block) -> np.ndarray:
    """Q_A(b) (K^k,) of a table over all K^L records (enumeration order)."""
    L = sites_from_size(probabilities.size, K, "probabilities")
    rest = tuple(i for i in range(L) if i not in block)
    return np.asarray(probabilities, dtype=np.float64).reshape((K,) * L).sum(axis=rest).reshape(-1)


# --------------------------------------------------------------------------- targets


def target_reduced_states(reference: Mapping, blocks: Sequence[Block],
                          noise: LocalNoise | None = None) -> dict[Block, np.ndarray]:
    """σ_A of the target for every block, from a dataset's ``reference``: ``rho`` (the noisy
    state's density matrix, partial trace), else ``psi`` (ρ_A = Σ_rest ψ ψ*), else the
    right-canonical ``mps`` (:func:`qtomo.states.noise.noisy_reduced_state`, O(L χ³) per block,
    the dense state never built), followed by the local channel ``noise`` where the MPS is the
    noiseless state of a noisy dataset (docs/simulate.md "Noisy states"); {} without any.

    Returns:
        {block: (2^k, 2^k) complex128, unit trace}.

    Example:
        >>> from qtomo.states.mps import ghz_mps
        >>> rho = target_reduced_states({"mps": ghz_mps(30).mps}, [(10, 11)])[(10, 11)]
        >>> np.round(rho.real.diagonal(), 12).tolist()
        [0.5, 0.0, 0.0, 0.5]
    """
    if not blocks:
        return {}
    if "rho" in reference:
        return {block: _partial_trace(np.asarray(reference["rho"]), block) for block in blocks}
    if "psi" in reference:
        return {block: _vector_reduced_state(np.asarray(reference["psi"]), block)
                for block in blocks}
    if "mps" in reference:
        check_mps_shapes(reference["mps"])
        channel = noise if noise is not None and noise.active else None
        return {block: noisy_reduced_state(reference["mps"], block, channel) for block in blocks}
    return {}


def _vector_reduced_state(psi: np.ndarray, block: Block) -> np.ndarray:
    L = sites_from_size(psi.size, 2, "amplitudes")
    s, k = block[0], len(block)
    psi = psi.astype(np.complex128).reshape(2**s, 2**k, 2 ** (L - s - k))
    return np.einsum("xsy,xty->st", psi, psi.conj()) / np.vdot(psi, psi).real


def _partial_trace(rho: np.ndarray, block: Block) -> np.ndarray:
    L = sites_from_size(rho.shape[0], 2, "rows of a density matrix")
    s, k = block[0], len(block)
    shape = (2**s, 2**k, 2 ** (L - s - k))
    reduced = np.einsum("xsyxty->st", rho.astype(np.complex128).reshape(shape + shape))
    return reduced / np.trace(reduced).real


# --------------------------------------------------------------------------- figures


@lru_cache(maxsize=16)
def _block_duals(povm: POVM | PerQubitPOVM, block: Block) -> tuple[np.ndarray, np.ndarray]:
    """⊗_j Q_{b_j} (K^k, 2^k, 2^k) and the Gram table Tr(Q_b Q_b') (K^k, K^k) of a k-block,
    each factor the duals of that qubit's POVM."""
    duals = np.ones((1, 1, 1), dtype=np.complex128)
    gram = np.ones((1, 1))
    for site in block:
        site_duals = povm.at(site).duals
        duals = np.einsum("bij,kst->bkisjt", duals, site_duals)
        size = duals.shape[2] * 2
        duals = duals.reshape(-1, size, size)
        gram = np.kron(gram, np.einsum("kij,lji->kl", site_duals, site_duals).real)  # Tr(Q_k Q_l)
    return duals, gram


@dataclass(frozen=True)
class BlockFigures:
    """One estimate of a block's reduced state against the target's.

    Attributes:
        fidelity: Uhlmann F(SGS(ρ̂_A), σ_A); None without a target.
        trace_distance: ½‖SGS(ρ̂_A) − σ_A‖₁; None without a target.
        min_eigenvalue: λ_min of the raw (unprojected) ρ̂_A.
        renyi2: −ln Tr ρ_A² (U-statistic from records; exact for a table).
        samples: records behind it, or None for an exact table (stderr 0).
    """

    fidelity: Estimate | None
    trace_distance: Estimate | None
    min_eigenvalue: float
    renyi2: Estimate
    samples: int | None

    def as_dict(self) -> dict:
        """``{"fidelity", "trace_distance", "renyi2"}`` as ``{"value", "stderr"}`` (or None),
        ``min_eigenvalue``, ``method`` (``exact`` or ``monte-carlo``) and ``samples``."""
        return {"fidelity": None if self.fidelity is None else self.fidelity.as_dict(),
                "trace_distance": (None if self.trace_distance is None
                                   else self.trace_distance.as_dict()),
                "min_eigenvalue": self.min_eigenvalue, "renyi2": self.renyi2.as_dict(),
                "method": "exact" if self.samples is None else "monte-carlo",
                "samples": self.samples}


def _compare(rho: np.ndarray, target: np.ndarray | None) -> tuple[np.ndarray, np.ndarray] | None:
    """Fidelity and trace distance of SGS(ρ) to the target for a batch ρ (R, d, d)."""
    if target is None:
        return None
    hermitian = 0.5 * (rho + np.swapaxes(rho, -1, -2).conj())
    weights, vectors = np.linalg.eigh(hermitian)  # (R, d), (R, d, d)
    physical = (vectors * simplex_projection(weights)[:, None, :]) @ np.swapaxes(
        vectors, -1, -2).conj()
    fidelity = np.clip(uhlmann_fidelity(physical, target), 0.0, 1.0)
    distance = 0.5 * np.abs(np.linalg.eigvalsh(physical - target)).sum(axis=-1)
    return fidelity, distance


def _from_counts(counts: np.ndarray, povm: POVM | PerQubitPOVM, block: Block,
                 target: np.ndarray | None, rng: np.random.Generator,
                 replicates: int) -> BlockFigures:
    duals, gram = _block_duals(povm, block)
    n = int(counts.sum())
    if n < 2:
        raise QtomoError(f"a block estimate needs at least 2 records; got {n}")
    tables = np.vstack([counts, rng.multinomial(n, counts / n, size=replicates)]).astype(float)
    rho = np.einsum("rb,bij->rij", tables / n, duals)  # (1 + R, d, d): estimate, replicates
    pairs = np.einsum("rb,bc,rc->r", tables, gram, tables) - tables @ np.diag(gram)
    with np.errstate(divide="ignore", invalid="ignore"):
        renyi2 = -np.log(pairs / (n * (n - 1)))  # nan where the U-statistic is ≤ 0

    def estimate(values: np.ndarray) -> Estimate:
        return Estimate(float(values[0]), float(np.std(values[1:], ddof=1)))

    compared = _compare(rho, target)
    hermitian = 0.5 * (rho[0] + rho[0].conj().T)
    return BlockFigures(
        fidelity=None if compared is None else estimate(compared[0]),
        trace_distance=None if compared is None else estimate(compared[1]),
        min_eigenvalue=float(np.linalg.eigvalsh(hermitian)[0]),
        renyi2=estimate(renyi2), samples=n)


def _from_table(marginal: np.ndarray, povm: POVM | PerQubitPOVM, block: Block,
                target: np.ndarray | None) -> BlockFigures:
    duals, _ = _block_duals(povm, block)
    return _from_density(np.einsum("b,bij->ij", marginal, duals), target)  # (d, d)


def _from_density(rho: np.ndarray, target: np.ndarray | None) -> BlockFigures:
    """Exact figures (stderr 0) of a block's ρ_A (d, d), e.g. contracted from tensors."""
    compared = _compare(rho[None], target)
    hermitian = 0.5 * (rho + rho.conj().T)
    eigenvalues = np.linalg.eigvalsh(hermitian)

    def exact(value: float) -> Estimate:
        return Estimate.exact(float(value))

    return BlockFigures(
        fidelity=None if compared is None else exact(compared[0][0]),
        trace_distance=None if compared is None else exact(compared[1][0]),
        min_eigenvalue=float(eigenvalues[0]),
        renyi2=exact(-np.log(np.sum(eigenvalues**2))), samples=None)


@dataclass(frozen=True)
class ReducedState:
    """The reduced state of one block from the model, the data alone and exact samples.

    Attributes:
        sites: the block's sites.
        model: the model's figures (exact table or model samples).
        data: the same estimator over the measured records, or None.
        exact_samples: over as many exact samples of the target as the model side used (the
            bias the projection adds at that N), or None (exact model side, or no samplable
            target).
        reference_renyi2: −ln Tr σ_A² of the target, or None without one.
    """

    sites: Block
    model: BlockFigures
    data: BlockFigures | None
    exact_samples: BlockFigures | None
    reference_renyi2: float | None

    def as_dict(self) -> dict:
        """``{"sites", "fidelity", "trace_distance", "min_eigenvalue", "renyi2", "method",
        "samples", "reference_renyi2", "data", "exact_samples"}`` (the model's figures at the
        top level; ``data`` and ``exact_samples`` the same keys or None)."""
        return {"sites": list(self.sites), **self.model.as_dict(),
                "reference_renyi2": self.reference_renyi2,
                "data": None if self.data is None else self.data.as_dict(),
                "exact_samples": None if self.exact_samples is None
                else self.exact_samples.as_dict()}


def reduced_states(blocks: Sequence[Block], povm: POVM | PerQubitPOVM, *,
                   model: BlockCounts | np.ndarray | Mapping[Block, np.ndarray],
                   data: BlockCounts | None = None, exact_samples: BlockCounts | None = None,
                   targets: Mapping[Block, np.ndarray] | None = None,
                   replicates: int = REPLICATES, seed: int = 0) -> tuple[ReducedState, ...]:
    """Reduced-state figures of every block (see the module docstring for the estimators).

    Args:
        blocks: the blocks, e.g. :func:`block_sites`.
        povm: the POVM of the records.
        model: the model's block counts over its samples, its exact table Q (K^L,) float, or
            {block: ρ_A (2^k, 2^k) complex} contracted from a physical model's tensors
            (:func:`qtomo.states.mps.block_density_matrix`).
        data: block counts over the measured records.
        exact_samples: block counts over exact samples of the target.
        targets: {block: σ_A} (:func:`target_reduced_states`); fidelities need them.
        replicates: bootstrap replicates per estimate (≥ 2).
        seed: seed of the bootstrap.

    Returns:
        one :class:`ReducedState` per block, in the order of ``blocks``.

    Raises:
        QtomoError: for a block with fewer than 2 records, or fewer than 2 replicates.
    """
    if replicates < 2:
        raise QtomoError(f"the bootstrap needs at least 2 replicates; got {replicates}")
    rng = np.random.default_rng(seed)
    targets = targets or {}
    out = []
    for block in blocks:
        target = targets.get(block)

        def from_counts(side: BlockCounts | None, block=block, target=target):
            return None if side is None else _from_counts(side.counts[block], povm, block,
                                                          target, rng, replicates)

        if isinstance(model, BlockCounts):
            model_figures = from_counts(model)
        elif isinstance(model, Mapping):
            model_figures = _from_density(np.asarray(model[block]), target)
        else:
            model_figures = _from_table(_marginal(model, povm.K, block), povm, block, target)
        reference = None
        if target is not None:
            reference = float(-np.log(np.sum(np.linalg.eigvalsh(target) ** 2)))
        out.append(ReducedState(block, model_figures, from_counts(data),
                                from_counts(exact_samples), reference))
    return tuple(out)
