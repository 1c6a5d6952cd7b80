"""The distribution interface every evaluation consumer relies on, and what is done with any one.

A *distribution* is a normalised Q(a) over POVM records a ∈ {0..K-1}^L (docs/training.md "The
model interface"): a trained network, the truth of a dataset
(:class:`qtomo.states.exact.ExactDistribution`, :class:`qtomo.states.mps_sampler.MPSDistribution`)
or a physical model family. The evaluation
annotates its arguments with :class:`Distribution` instead of probing attributes; a distribution
that can list all K^L probabilities faster than one ``log_prob`` per record (the autoregressive
tree walk) also satisfies :class:`EnumerableDistribution`; one that is the Born rule of an
explicit tensor-network state (the ``mps`` and ``lpdo`` families) satisfies
:class:`PhysicalState`, and the evaluation then contracts the state instead of sampling it.

This module holds the operations every consumer shares: ``log_prob`` of many records in batches
(:func:`log_prob_batched`), samples in batches (:func:`sample_batches`), the whole table Q(a) for
small L (:func:`enumerate_probabilities`, :func:`outcome_blocks`) and the device a distribution's
inputs live on (:func:`distribution_device`).

Example:
    >>> from qtomo.povm import get_povm
    >>> from qtomo.states.exact import ghz_state
    >>> truth = ghz_state(3).distribution(get_povm("tetra"))
    >>> isinstance(truth, Distribution), isinstance(truth, EnumerableDistribution)
    (True, False)
    >>> round(float(enumerate_probabilities(truth).sum()), 12)
    1.0
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from qtomo.errors import QtomoError
from qtomo.povm import enumerate_outcomes
from qtomo.progress import progress_bar

__all__ = [
    "ENUMERATE_MAX_L",
    "Distribution",
    "EnumerableDistribution",
    "FullState",
    "PhysicalState",
    "Autoregressive",
    "check_enumerable",
    "distribution_device",
    "enumerable",
    "enumerate_probabilities",
    "log_prob_batched",
    "outcome_blocks",
    "record_indices",
    "records_numpy",
    "records_at",
    "sample_batches",
]

#: largest L whose K^L records are enumerated (4^10 ≈ 10^6 records, a 2^10 × 2^10 ρ)
ENUMERATE_MAX_L = 10
#: most records a default (``auto``) evaluation enumerates: 4^10 (``pauli6`` stops at L = 7,
#: since 6^10 ≈ 6·10^7 records through ``log_prob`` take about an hour on a CPU)
ENUMERATE_MAX_RECORDS = 4**10
_BLOCK = 2**16


def records_numpy(records: np.ndarray | torch.Tensor) -> np.ndarray:
    """Records (B, L) as a numpy array, a torch tensor moved to the CPU first (its dtype kept)."""
    return records.cpu().numpy() if torch.is_tensor(records) else np.asarray(records)


def record_indices(a: torch.Tensor, K: int) -> torch.Tensor:
    """index = Σ_i a_i K^(L-1-i) of records a (B, L): their row in a table of all K^L records
    (:func:`qtomo.povm.enumerate_outcomes` order); LongTensor (B,) on a's device.

    Example:
        >>> record_indices(torch.tensor([[0, 1], [2, 2]]), 3).tolist()
        [1, 8]
    """
    powers = K ** torch.arange(a.shape[1] - 1, -1, -1, device=a.device, dtype=torch.long)
    return (a.long() * powers).sum(1)


def records_at(index: torch.Tensor, L: int, K: int) -> torch.Tensor:
    """The records (n, L) at rows ``index`` (n,) of that table: the inverse of
    :func:`record_indices`.

    Example:
        >>> records_at(torch.tensor([1, 8]), 2, 3).tolist()
        [[0, 1], [2, 2]]
    """
    powers = K ** torch.arange(L - 1, -1, -1, device=index.device, dtype=torch.long)
    return (index[:, None] // powers) % K


@runtime_checkable
class Distribution(Protocol):
    """A normalised distribution Q over (L,) records in 0..K-1 (docs/training.md "The model
    interface").

    ``exact_log_prob`` is False where ``log_prob`` is an estimate (flows, VAE); the evaluation
    then labels every figure computed from it as an estimate. ``has_log_prob`` is False for a
    sampler without a likelihood (``gan``). ``family`` names it in reports; ``povm`` is the
    POVM of its Born rule, or None for a model of the records alone (the networks).
    """

    L: int
    K: int
    family: str
    exact_log_prob: bool
    has_log_prob: bool
    povm: Any

    def log_prob(self, a: torch.Tensor) -> torch.Tensor:
        """ln Q(a) for a LongTensor (B, L); returns (B,) float."""
        ...

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n records drawn from Q; LongTensor (n, L)."""
        ...


@runtime_checkable
class PhysicalState(Distribution, Protocol):
    """A distribution Q(a) = Tr(M_a ρ) of a state held as tensors (docs/models.md "Physical
    model families"): fidelities, observables and entanglement come from contracting them,
    exactly."""

    def tensors(self) -> list[np.ndarray]:
        """The normalised, right-canonical state: L complex128 arrays (χ_l, 2, χ_r) (pure) or
        (χ_l, 2, κ, χ_r) (ρ = Tr_κ |X⟩⟨X|)."""
        ...


@runtime_checkable
class Autoregressive(Distribution, Protocol):
    """Q(a) = Π_i Q(a_i | a_<i), its conditionals available site by site: what masked ancestral
    sampling (:mod:`qtomo.products`) needs."""

    def step(self, previous: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        """Logits (n, K) of the next site given the previous outcomes (n,) (K: the start
        token) and the state of the walk so far (None at the start); the new state."""
        ...

    def select_state(self, state: Any, index: torch.Tensor) -> Any:
        """The walk's state of the rows ``index`` only."""
        ...

    def enumerate_log_probs(self, block: int = ...) -> Iterator[torch.Tensor]:
        """ln Q(a) of consecutive records in :func:`qtomo.povm.enumerate_outcomes` order."""
        ...


@runtime_checkable
class FullState(Distribution, Protocol):
    """Q(a) = Tr(M_a ρ) of a state held as its whole density matrix (the full-state baselines
    ``dense`` and ``linear``, whose K^L table fits by construction): every figure is an exact
    sum over the K^L records, at any K^L they allow."""

    def density_matrix(self) -> torch.Tensor:
        """ρ, (2^L, 2^L) complex128."""
        ...


@runtime_checkable
class EnumerableDistribution(Distribution, Protocol):
    """A distribution that lists ln Q of all K^L records in enumeration order, block by block."""

    def enumerate_log_probs(self, block: int = ...) -> Iterator[torch.Tensor]:
        """ln Q(a) of consecutive records in :func:`qtomo.povm.enumerate_outcomes` order."""
        ...


def distribution_device(distribution: Distribution) -> torch.device:
    """The device a distribution's inputs must live on (CPU for parameter-free distributions)."""
    try:
        return torch.device(distribution.device)
    except (AttributeError, StopIteration):
        return torch.device("cpu")


def enumerable(L: int, K: int) -> bool:
    """Whether the K^L records are few enough (≤ :data:`ENUMERATE_MAX_RECORDS`) for a default
    evaluation to sum over all of them.

    Example:
        >>> enumerable(10, 4), enumerable(10, 6), enumerable(7, 6)
        (True, False, True)
    """
    return L <= ENUMERATE_MAX_L and K**L <= ENUMERATE_MAX_RECORDS


def check_enumerable(L: int, what: str) -> None:
    """Raise QtomoError if ``what`` would have to enumerate K^L records with L > ENUMERATE_MAX_L."""
    if L > ENUMERATE_MAX_L:
        raise QtomoError(
            f"{what} enumerates all K^L records and needs L <= {ENUMERATE_MAX_L}; got L = {L} "
            f"(use the Monte Carlo estimators instead)"
        )


def log_prob_batched(distribution: Distribution, outcomes: np.ndarray | torch.Tensor, *,
                     batch_size: int = 65536) -> np.ndarray:
    """ln Q(a) of every row of ``outcomes``, evaluated in batches without gradients.

    Args:
        distribution: the model Q.
        outcomes: (N, L) integer array or tensor of records in 0..K-1.
        batch_size: rows per forward pass.

    Returns:
        (N,) float64 numpy array on the CPU.
    """
    device = distribution_device(distribution)
    outcomes = torch.as_tensor(np.asarray(outcomes) if not torch.is_tensor(outcomes) else outcomes)
    parts = []
    with torch.no_grad():
        for start in range(0, outcomes.shape[0], batch_size):
            batch = outcomes[start:start + batch_size].to(device=device, dtype=torch.long)
            parts.append(distribution.log_prob(batch).detach().to("cpu", torch.float64).numpy())
    return np.concatenate(parts) if parts else np.zeros(0)


def sample_batches(distribution: Distribution, samples: int, batch_size: int,
                   generator: torch.Generator | None) -> Iterator[torch.Tensor]:
    """``samples`` records of Q in LongTensor batches (b, L) of at most ``batch_size``."""
    with torch.no_grad():
        for start in range(0, samples, batch_size):
            yield distribution.sample(min(batch_size, samples - start), generator=generator)


def outcome_blocks(L: int, K: int, rows: int = _BLOCK) -> Iterator[tuple[int, np.ndarray]]:
    """All K^L records in :func:`qtomo.povm.enumerate_outcomes` order, in blocks.

    Each block fixes a prefix of the leading qubits and runs over all suffixes, so no more than
    max(rows, K) records are in memory at once.

    Yields:
        ``(start, outcomes)``: the index of the block's first record and an int64 (b, L) array.

    Example:
        >>> [(start, block.tolist()) for start, block in outcome_blocks(2, 2, rows=2)]
        [(0, [[0, 0], [0, 1]]), (2, [[1, 0], [1, 1]])]
    """
    suffix_len = min(L, max(1, int(np.floor(np.log(rows) / np.log(K) + 1e-9))))
    suffixes = enumerate_outcomes(suffix_len, K)  # (K^s, s)
    for index, prefix in enumerate(enumerate_outcomes(L - suffix_len, K)):
        head = np.broadcast_to(prefix, (suffixes.shape[0], prefix.size))
        yield index * suffixes.shape[0], np.hstack([head, suffixes])


def enumerate_probabilities(distribution: Distribution, *, batch_size: int = _BLOCK,
                            quiet: bool = True) -> np.ndarray:
    """Q(a) for all K^L records, evaluated in batches without gradients.

    An :class:`EnumerableDistribution` (the autoregressive families, see
    :meth:`qtomo.models.autoregressive.AutoregressiveModel.enumerate_log_probs`) is walked down
    its tree of prefixes, one cached step per prefix: Σ_i K^i ≈ K^L / (K − 1) one-site steps
    instead of L K^L site evaluations for ``log_prob`` of every record, which is used otherwise.

    Args:
        distribution: the model Q.
        batch_size: records per forward pass (per step of a tree walk, at most batch_size / K
            prefixes, each completed by K outcomes).
        quiet: no progress bar.

    Returns:
        (K^L,) float64 in :func:`qtomo.povm.enumerate_outcomes` order. Σ Q = 1 up to the
        model's float precision (an estimate where ``exact_log_prob`` is False).

    Raises:
        QtomoError: for L > :data:`ENUMERATE_MAX_L`.
    """
    L, K = distribution.L, distribution.K
    check_enumerable(L, "the exact model distribution")
    probabilities = np.empty(K**L)
    with progress_bar(probabilities.size, "enumerate", quiet=quiet, unit="rec") as bar:
        if isinstance(distribution, EnumerableDistribution):
            start = 0
            for log_q in distribution.enumerate_log_probs(block=max(1, batch_size // K)):  # (b,)
                probabilities[start:start + log_q.numel()] = log_q.exp().cpu().numpy()
                start += log_q.numel()
                bar.update(log_q.numel())
        else:
            for start, block in outcome_blocks(L, K, batch_size):
                log_q = log_prob_batched(distribution, block, batch_size=batch_size)
                probabilities[start:start + block.shape[0]] = np.exp(log_q)
                bar.update(block.shape[0])
    return probabilities
