"""Two states compared on the same held-out rows (docs/physical-fits.md, "When the sweeps stop"
and "What a plain `qtomo fit --model mps` does").

The validation NLL of a state is a mean over a few thousand records, so two states' NLLs
differ by chance by about their standard error; the records *prefer* one state only where
the paired difference (record by record, so the noise of the records themselves cancels)

    gain = (1/N) Σ_n c_n [NLL_other(a_n) − NLL_this(a_n)],    N = Σ_n c_n

exceeds :data:`SIGNIFICANCE` standard errors s/√N (s² the weighted sample variance of the
differences). The size search keeps a larger size on that evidence, and the sweeps leave the
maximum of the likelihood for an earlier state only on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from qtomo.device import sum_over_ranks, weighted_sum

#: standard errors by which the held-out rows must prefer a state (one let a 10^3-row
#: validation set pick χ = 3 over χ = 2 on TFIM L = 10 from 10^4 records by chance, 0.9885
#: against 0.9909)
SIGNIFICANCE = 1.5


@dataclass(frozen=True)
class HeldOut:
    """The NLL of every held-out row under one state.

    Attributes:
        nll_rows: float64 (N_rank,), −ln Q(a_n) of this rank's rows.
        counts: float64 (N_rank,), how often each row occurs; None: each once.
        world: processes holding a share of the rows (torchrun); 1 otherwise.
    """

    nll_rows: torch.Tensor
    counts: torch.Tensor | None = None
    world: int = 1

    @classmethod
    @torch.no_grad()
    def of(cls, model, rows: torch.Tensor, chunk: int = 16384) -> HeldOut:
        """The rows ``rows`` (LongTensor (N, L), each once) under ``model`` (any model with
        ``log_prob`` and ``device``), read ``chunk`` rows at a time."""
        return cls(torch.cat([-model.log_prob(a.to(model.device)).cpu()
                              for a in rows.split(chunk)]).double())

    @property
    def nll(self) -> float:
        """Mean NLL over all ranks' rows."""
        return paired_gain(self.nll_rows, self.counts, self.world, stderr=False)[0]

    def gain_over(self, other: HeldOut) -> tuple[float, float]:
        """How much lower this state's NLL is than ``other``'s on the same rows (nats per
        record) and the standard error of that paired difference."""
        return paired_gain(other.nll_rows - self.nll_rows, self.counts, self.world)

    def prefers(self, other: HeldOut) -> bool:
        """Whether the rows prefer this state to ``other`` by more than :data:`SIGNIFICANCE`
        standard errors."""
        gain, stderr = self.gain_over(other)
        return gain > SIGNIFICANCE * stderr


def paired_gain(difference: torch.Tensor, counts: torch.Tensor | None = None, world: int = 1,
                *, stderr: bool = True) -> tuple[float, float]:
    """Weighted mean of ``difference`` (N_rank,) over all ranks' rows and its standard error
    s/√N (s² = Σ c (d − mean)² / (N − 1), N = Σ c; two passes, for the rounding); the error is
    nan without ``stderr`` (one reduction fewer) or with a single row."""
    totals = torch.stack([weighted_sum(difference, counts),
                          difference.new_tensor(len(difference)) if counts is None
                          else counts.sum().to(difference)])
    sum_over_ranks(totals, world=world)
    mean, n = (totals[0] / totals[1]).item(), totals[1].item()
    if not stderr or n < 2:
        return mean, math.nan
    squares = sum_over_ranks(weighted_sum((difference - mean) ** 2, counts), world=world)
    return mean, math.sqrt(squares.item() / (n - 1) / n)
