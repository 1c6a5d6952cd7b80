"""Full-state baselines ``linear`` and ``dense``: an explicit 2^L × 2^L density matrix
(docs/targets-and-baselines.md).

The standard tomography methods, as model families on the common interface, so that ``fit``,
``evaluate``, ``compare`` and the benchmarks use them unchanged::

    linear:  ρ_LI = Σ_a f(a) Q_a                    f = empirical frequencies of the records
             ρ    = SGS(ρ_LI)                       Smolin–Gambetta–Smith projection
    dense:   ρ    = T T† / Tr(T T†)                 T complex (D, r), D = 2^L, r = rank or D
             maximising Σ_n ln Tr(M_{a_n} ρ)        full-batch L-BFGS (the trainer's refinement)
    both:    Q(a) = Tr(M_a ρ), exact, from the table of all K^L values (qubit by qubit)

``linear`` counts the records of each training batch (its own ``train_step``; more epochs give
the same frequencies) and projects after every batch; ``dense`` has no stochastic stage
(``epochs = 0``) and is fitted by L-BFGS on all training rows, validated every
``refine_check`` iterations (:func:`qtomo.refine.refine`; :func:`maximum_likelihood` runs it to
convergence on given records, the plain MLE). ρ ≥ 0 by construction for both.

Memory: ρ has 4^L entries and the Born table K^L, so both families need L ≤ 10 and
K^L ≤ 2^21 (pauli4/tetra: L ≤ 10, pauli6: L ≤ 8); larger L is refused in one line.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from qtomo.distribution import record_indices, records_at
from qtomo.errors import QtomoError
from qtomo.models.base import QtomoModel, check_hyperparameter
from qtomo.povm import POVM, PerQubitPOVM, invert_probabilities, povm_elements
from qtomo.reconstruct import project_to_physical
from qtomo.refine import Refinement, refine

__all__ = ["DenseConfig", "DenseModel", "LinearConfig", "LinearModel", "MAX_L", "MAX_TABLE",
           "maximum_likelihood"]

#: largest L of the full-state families (ρ of 4^10 entries, 16 MiB)
MAX_L = 10
#: largest Born table K^L (pauli6: L ≤ 8)
MAX_TABLE = 2**21
_NOISE = 0.1  # relative size of the random part of a rank-limited start


def check_full_state_size(family: str, L: int, K: int) -> None:
    """QtomoError unless ρ (4^L entries) and the K^L table fit: L ≤ 10, K^L ≤ 2^21."""
    if L > MAX_L or K**L > MAX_TABLE:
        megabytes = 16 * (4**L + K**L) / 2**20
        raise QtomoError(f"the {family} model holds the whole 2^L x 2^L density matrix and the "
                         f"K^L table of Tr(M_a rho) (about {megabytes:,.0f} MiB at L = {L}, "
                         f"K = {K}); it needs L <= {MAX_L} and K^L <= 2^21 (use mps or lpdo)")


def born_table(rho: torch.Tensor, elements: torch.Tensor) -> torch.Tensor:
    """P(a) = Tr(M_a ρ) for all K^L records, differentiable (torch version of
    :func:`qtomo.povm.born_probabilities`).

    Args:
        rho: (D, D) complex128, D = 2^L.
        elements: (K, 2, 2) or (L, K, 2, 2) complex128 POVM elements.

    Returns:
        (K^L,) float64 in :func:`qtomo.povm.enumerate_outcomes` order.
    """
    L = int(round(np.log2(rho.shape[0])))
    work = rho.reshape(1, rho.shape[0], rho.shape[0])
    for i in range(L):
        site = elements if elements.ndim == 3 else elements[i]
        p, r = work.shape[0], work.shape[1] // 2
        work = work.reshape(p, 2, r, 2, r)
        work = torch.einsum("kts,psrtq->pkrq", site, work).reshape(p * site.shape[0], r, r)
    return work.reshape(-1).real


def sample_table(probabilities: torch.Tensor, n: int, L: int, K: int,
                 generator: torch.Generator | None) -> torch.Tensor:
    """n records drawn exactly from a table (K^L,): LongTensor (n, L)."""
    weights = probabilities.detach().clamp_min(0).to(torch.float64)
    if n == 0:  # multinomial refuses to draw nothing
        return torch.zeros(0, L, dtype=torch.long, device=weights.device)
    return records_at(torch.multinomial(weights, n, replacement=True, generator=generator), L, K)


class _FullStateModel(QtomoModel):
    """ρ held explicitly; Q(a) = Tr(M_a ρ) from the Born table (subclasses set ρ)."""

    needs_povm = True

    def __init__(self, L: int, K: int, povm: POVM | PerQubitPOVM) -> None:
        check_full_state_size(self.family, L, K)
        super().__init__(L, K)
        self.povm = povm
        self.register_buffer("povm_elements", torch.tensor(povm_elements(povm, L)))
        self._table: tuple[tuple, torch.Tensor] | None = None  # (parameter versions, table)

    def density_matrix(self) -> torch.Tensor:
        """ρ (2^L, 2^L) complex128, positive with unit trace."""
        raise NotImplementedError

    def born_table(self) -> torch.Tensor:
        """Tr(M_a ρ) for all K^L records, (K^L,) float64. Without gradients the table is kept
        until a parameter changes in place (its version counter), so the blocks of an
        enumeration do not rebuild it."""
        if torch.is_grad_enabled():
            return born_table(self.density_matrix(), self.povm_elements)
        key = tuple((p.data_ptr(), p._version) for p in self.parameters())
        if self._table is None or self._table[0] != key:
            self._table = (key, born_table(self.density_matrix(), self.povm_elements))
        return self._table[1]

    def log_prob(self, a: torch.Tensor) -> torch.Tensor:
        """ln Q(a) = ln Tr(M_a ρ) for LongTensor a (B, L): float64 (B,), exact (−inf where
        ρ gives the record probability 0)."""
        self.check_records(a)
        return self.born_table()[record_indices(a, self.K)].clamp_min(0).log()

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n records drawn exactly from Q: LongTensor (n, L)."""
        return sample_table(self.born_table(), n, self.L, self.K, generator)


@dataclass(frozen=True)
class DenseConfig:
    """Hyperparameters of the ``dense`` family.

    Args:
        rank: columns r of T in ρ = T T† / Tr(T T†); 0 = full rank (r = 2^L), 1 = a pure state.
    """

    rank: int = 0

    def __post_init__(self) -> None:
        check_hyperparameter("dense", "rank", self.rank, low=0, high=2**MAX_L)


class DenseModel(_FullStateModel):
    """The maximum-likelihood density matrix ρ = T T† / Tr(T T†) (module docstring).

    Example (a fresh full-rank model is the maximally mixed state: with pauli4,
    Tr(M_0 1/2) = 1/6 and Tr(M_3 1/2) = 1/2, so Q(0, 3) = 1/12):
        >>> from qtomo.povm import get_povm
        >>> model = DenseModel(2, 4, DenseConfig(), get_povm("pauli4"))
        >>> round(float(model.log_prob(torch.tensor([[0, 3]])).detach().exp()), 6)
        0.083333
    """

    family = "dense"
    #: no stochastic epochs: the full-batch L-BFGS of the trainer's refinement is the fit
    train_defaults: ClassVar[dict[str, Any]] = {"epochs": 0, "refine": 2000,
                                                 "refine_check": 50, "batch_size": 256}

    def __init__(self, L: int, K: int, config: DenseConfig, povm: POVM | PerQubitPOVM) -> None:
        super().__init__(L, K, povm)
        self.config = config
        D = 2**L
        rank = config.rank or D
        if rank > D:
            raise QtomoError(f"dense hyperparameter rank must be at most 2^L = {D}; got {rank}")
        # full rank: the maximally mixed state; rank r < D: r basis states plus Gaussian noise
        # of relative size 0.1 (every Tr(M_a ρ) > 0: a rank-deficient product start would give
        # some records probability 0)
        start = torch.zeros(D, rank, 2, dtype=torch.float64)
        start[..., 0] = torch.eye(D, rank, dtype=torch.float64)
        if rank < D:
            start += _NOISE * torch.randn(D, rank, 2, dtype=torch.float64)
        self.T = nn.Parameter(start / start.norm())

    def density_matrix(self) -> torch.Tensor:
        """ρ = T T† / Tr(T T†), complex128 (2^L, 2^L)."""
        T = torch.view_as_complex(self.T)
        rho = T @ T.conj().T
        return rho / rho.diagonal().real.sum()


@dataclass(frozen=True)
class LinearConfig:
    """The ``linear`` family has no hyperparameters (the estimate is fixed by the records)."""


class LinearModel(_FullStateModel):
    """Linear inversion of the training records' frequencies, then the SGS projection.

    Example (records of |0⟩ with pauli6 in the exact proportions give ρ = |0⟩⟨0|):
        >>> from qtomo.povm import get_povm
        >>> model = LinearModel(1, 6, LinearConfig(), get_povm("pauli6"))
        >>> model.add_records(torch.tensor([[0], [0], [2], [3], [4], [5]]))
        >>> zero = torch.tensor([[1, 0], [0, 0]], dtype=torch.complex128)
        >>> bool(torch.allclose(model.density_matrix(), zero, atol=1e-12))
        True
    """

    family = "linear"
    makes_own_step: ClassVar[bool] = True  # counting records: no gradient step
    #: one pass counts every training record once (more passes give the same frequencies)
    train_defaults: ClassVar[dict[str, Any]] = {"epochs": 1, "batch_size": 4096, "ema": 0.0}

    def __init__(self, L: int, K: int, config: LinearConfig, povm: POVM | PerQubitPOVM) -> None:
        super().__init__(L, K, povm)
        self.config = config
        D = 2**L
        self.register_buffer("counts", torch.zeros(K**L, dtype=torch.float64))
        mixed = torch.zeros(D, D, 2, dtype=torch.float64)
        mixed[..., 0] = torch.eye(D, dtype=torch.float64) / D  # no records: 1/D
        # a parameter that is never trained: the optimiser and the device need one
        self.rho = nn.Parameter(mixed, requires_grad=False)

    def density_matrix(self) -> torch.Tensor:
        """ρ = SGS(Σ_a f(a) Q_a), complex128 (2^L, 2^L); 1/2^L before any record."""
        return torch.view_as_complex(self.rho)

    @torch.no_grad()
    def add_records(self, a: torch.Tensor) -> None:
        """Count the records a (B, L) and set ρ to the projected inversion of all counted."""
        self.check_records(a)
        self.counts += torch.bincount(record_indices(a, self.K), minlength=self.K**self.L).to(
            self.counts)
        frequencies = (self.counts / self.counts.sum()).cpu().numpy()
        rho = project_to_physical(invert_probabilities(frequencies, self.povm))
        self.rho.copy_(torch.view_as_real(torch.from_numpy(rho)).to(self.rho))

    def train_step(self, a: torch.Tensor, optimizer: torch.optim.Optimizer,
                   clip: float) -> torch.Tensor:
        """The trainer's step: count the batch, re-project; return the batch's mean NLL under
        the new ρ. Nothing has a gradient: ``optimizer.step()`` changes nothing and is called
        only to keep the trainer's order of optimiser and schedule steps; ``clip`` is unused."""
        self.add_records(a)
        optimizer.step()
        with torch.no_grad():
            return -self.log_prob(a).mean()


def maximum_likelihood(model: DenseModel, records: np.ndarray | torch.Tensor, *,
                       max_iter: int = 2000, chunk: int = 65536) -> Refinement:
    """Fit ``model`` to the plain maximum of (1/N) Σ_n ln Tr(M_{a_n} ρ) over ``records``
    (N, L), L-BFGS to convergence (no validation rows, :func:`qtomo.refine.refine` with
    ``select=False``)."""
    records = torch.as_tensor(np.asarray(records) if not torch.is_tensor(records) else records)
    model.check_records(records)

    def batches() -> Iterator[tuple[torch.Tensor, None]]:
        return ((a, None) for a in records.long().split(chunk))

    def train_nll() -> float:
        with torch.no_grad():
            return float(sum(model.training_nll(a).sum() for a, _ in batches()) / len(records))

    return refine(model, batches, len(records), train_nll, max_iter=max_iter,
                  check_every=50, select=False)
