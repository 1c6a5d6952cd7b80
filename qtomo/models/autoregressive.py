"""Shared machinery of the autoregressive families (``rnn``, ``gru``, ``lstm``, ``transformer``).

An autoregressive model factorises the distribution over records a ∈ {0..K-1}^L site by site::

    Q(a) = Π_i q(a_i | a_<i),      ln q(· | a_<i) = log_softmax(logits_i(a_<i))

A family implements one method, :meth:`AutoregressiveModel.logits`: the unnormalised conditional
logits of every site under teacher forcing, (B, l, K) for a (B, l) prefix of records (l ≤ L),
where row i may depend only on a_<i. Everything else is derived here once:

- :meth:`~AutoregressiveModel.conditionals` = log-softmax of the logits, normalised by
  construction (Σ_k q(k | a_<i) = 1 for every prefix, hence Σ_a Q(a) = 1);
- :meth:`~AutoregressiveModel.log_prob` gathers the observed outcomes and sums over sites, one
  teacher-forced forward pass per batch;
- :meth:`~AutoregressiveModel.sample` is exact ancestral sampling of n records at once, one
  :meth:`~AutoregressiveModel.step` per site. The default ``step`` recomputes the whole prefix
  (O(L²) work); families override it with their cache (hidden state of a recurrent network,
  keys and values of a Transformer) so that a step costs one site;
- :meth:`~AutoregressiveModel.enumerate_log_probs` gives ln Q of all K^L records (small L) by a
  walk down the tree of prefixes, one ``step`` per node, continuing a prefix's state into its K
  children with :meth:`~AutoregressiveModel.select_state` (which a family overrides with ``step``).

The input of site i is the previous outcome a_{i-1}, embedded; site 0 sees a start token, the
extra symbol K (see :func:`shift_right`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F

from qtomo.models.base import QtomoModel


def shift_right(a: torch.Tensor, K: int) -> torch.Tensor:
    """Inputs under teacher forcing: (start token K, a_0, …, a_{l-2}) for records a (B, l).

    Example:
        >>> shift_right(torch.tensor([[2, 0, 1]]), K=4)
        tensor([[4, 2, 0]])
    """
    start = torch.full_like(a[:, :1], K)  # (B, 1)
    return torch.cat([start, a[:, :-1]], dim=1)  # (B, l)


class AutoregressiveModel(QtomoModel):
    """Base class of the autoregressive families; subclasses implement :meth:`logits`.

    Example (a family of independent sites, to show the contract):
        >>> class Independent(AutoregressiveModel):
        ...     family = "independent"
        ...     def __init__(self, L, K):
        ...         super().__init__(L, K)
        ...         self.bias = torch.nn.Parameter(torch.zeros(L, K))
        ...     def logits(self, a):
        ...         return self.bias[: a.shape[1]].expand(a.shape[0], -1, -1)
        >>> model = Independent(L=3, K=4)
        >>> model.log_prob(torch.tensor([[0, 1, 2]])).exp()     # uniform: 4**-3
        tensor([0.0156], grad_fn=<ExpBackward0>)
        >>> model.sample(5, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([5, 3])
    """

    def logits(self, a: torch.Tensor) -> torch.Tensor:
        """Unnormalised conditional logits under teacher forcing.

        Args:
            a: LongTensor (B, l) of outcomes in 0..K-1, 1 ≤ l ≤ L; row i of the result may
                depend only on a[:, :i] (the value of a[:, l-1] is never read).

        Returns:
            float Tensor (B, l, K) on the model's device.
        """
        raise NotImplementedError

    def conditionals(self, a: torch.Tensor) -> torch.Tensor:
        """ln q(a_i = k | a_<i) for records a (B, L): float32 Tensor (B, L, K), logsumexp_k = 0.

        Raises:
            QtomoError: for records of the wrong shape or dtype, or outcomes out of range.
        """
        self.check_records(a)
        return F.log_softmax(self.logits(a).float(), dim=-1)  # (B, L, K)

    def log_prob(self, a: torch.Tensor) -> torch.Tensor:
        """ln Q(a) = Σ_i ln q(a_i | a_<i) for LongTensor a (B, L): float32 (B,), one forward.

        Raises:
            QtomoError: for records of the wrong shape or dtype, or outcomes out of range.
        """
        logq = self.conditionals(a)  # (B, L, K)
        return logq.gather(-1, a.unsqueeze(-1)).squeeze(-1).sum(-1)  # (B,)

    def step(self, previous: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        """Logits of the next site given the previous outcome, for ancestral sampling.

        Args:
            previous: LongTensor (n,), the outcome of the site before (the start token K at the
                first site).
            state: whatever the family carries between steps; ``None`` at the first site.

        Returns:
            ``(logits (n, K), state)``. This default keeps the outcomes drawn so far as its state
            and recomputes the whole teacher-forced pass on them, so it needs no cache and costs
            O(l) at site l; families override it with a cache that costs O(1) per site.
        """
        if state is None:  # first site: no outcomes yet
            drawn = previous.new_empty((previous.shape[0], 0))  # (n, 0)
        else:
            drawn = torch.cat([state, previous[:, None]], dim=1)  # (n, l)
        placeholder = torch.zeros_like(previous)[:, None]  # (n, 1), never read by causality
        logits = self.logits(torch.cat([drawn, placeholder], dim=1))[:, -1]  # (n, K)
        return logits, drawn

    def select_state(self, state: Any, index: torch.Tensor) -> Any:
        """The state of the batch rows ``index`` of a state returned by :meth:`step`.

        Args:
            state: a state of a batch of n prefixes, as returned by :meth:`step`.
            index: LongTensor (m,) of rows in 0..n-1; rows may repeat, so that one prefix can
                be continued by several outcomes.

        Returns:
            the state of the m prefixes ``index``, independent of ``state`` (a copy). This
            default indexes the outcomes drawn so far, (n, l), the state of the default
            :meth:`step`; families that override ``step`` override this too.
        """
        return state.index_select(0, index)  # (m, l)

    @torch.no_grad()
    def enumerate_log_probs(self, block: int = 2**14) -> Iterator[torch.Tensor]:
        """ln Q(a) of all K^L records, by a walk down the tree of prefixes.

        The prefixes a_<i are the nodes at depth i; one :meth:`step` of a batch of them gives
        ln q(· | a_<i), hence ln Q of all their K children at once, and :meth:`select_state`
        hands each child its parent's state. The walk is breadth-first within a batch of at
        most ``block`` nodes and depth-first over batches: Σ_i K^i ≈ K^L / (K − 1) one-site
        steps in all (instead of L K^(L-1) site evaluations for teacher forcing of every
        prefix), with at most ``block`` states per depth in memory.

        Args:
            block: most prefixes per step (≥ 1); the records yielded at once are ≤ K·block.

        Yields:
            float64 Tensors (b,) on the model's device, in order: concatenated, they are the
            (K^L,) ln Q(a) in :func:`qtomo.povm.enumerate_outcomes` order (index Σ_i a_i
            K^(L-1-i)).

        Example:
            >>> from qtomo.models import build
            >>> from qtomo.povm import enumerate_outcomes
            >>> model = build("gru", L=3, K=4, hidden=8)
            >>> log_q = torch.cat(list(model.enumerate_log_probs(block=5)))  # (4**3,)
            >>> round(log_q.exp().sum().item(), 6)
            1.0
            >>> a = torch.from_numpy(enumerate_outcomes(3, 4))  # (64, 3)
            >>> torch.allclose(log_q.float(), model.log_prob(a), atol=1e-6)
            True
        """
        start = torch.full((1,), self.K, dtype=torch.long, device=self.device)  # (1,)
        head = torch.zeros(1, dtype=torch.float64, device=self.device)  # ln Q of the root
        yield from self._subtree(start, None, head, 0, max(1, block))

    def _subtree(self, previous: torch.Tensor, state: Any, head: torch.Tensor, depth: int,
                 block: int) -> Iterator[torch.Tensor]:
        """ln Q of the records below b nodes at ``depth``: previous (b,), head = ln Q (b,)."""
        logits, state = self.step(previous, state)  # (b, K)
        log_q = head[:, None] + F.log_softmax(logits.float(), dim=-1).double()  # (b, K)
        if depth == self.L - 1:
            yield log_q.reshape(-1)  # (b K,)
            return
        parents = max(1, block // self.K)  # so that a batch of children holds ≤ block nodes
        outcomes = torch.arange(self.K, device=previous.device)  # (K,)
        for lo in range(0, log_q.shape[0], parents):
            rows = torch.arange(lo, min(lo + parents, log_q.shape[0]), device=previous.device)
            yield from self._subtree(outcomes.repeat(rows.numel()),  # (m K,)
                                     self.select_state(state, rows.repeat_interleave(self.K)),
                                     log_q[rows].reshape(-1), depth + 1, block)  # (m K,)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, *,
               cache: bool = True) -> torch.Tensor:
        """n independent records drawn exactly from Q by ancestral sampling, all n at once.

        Site i is drawn from q(· | a_<i) for the whole batch, one :meth:`step` per site.

        Args:
            n: number of records.
            generator: a ``torch.Generator`` on the model's device, for reproducible draws.
            cache: use the family's cached ``step`` (default); ``False`` uses the uncached
                default step, which recomputes the prefix at every site (for benchmarks).

        Returns:
            LongTensor (n, L) on the model's device.
        """
        step = self.step if cache else (lambda prev, st: AutoregressiveModel.step(self, prev, st))
        a = torch.empty((n, self.L), dtype=torch.long, device=self.device)  # (n, L)
        previous = torch.full((n,), self.K, dtype=torch.long, device=self.device)  # (n,)
        state = None
        for i in range(self.L):
            logits, state = step(previous, state)  # (n, K)
            probs = F.softmax(logits.float(), dim=-1)  # (n, K)
            previous = torch.multinomial(probs, 1, generator=generator).squeeze(1)  # (n,)
            a[:, i] = previous
        return a
